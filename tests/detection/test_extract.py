"""Extraction of texts from whole messages: encodings, nesting, attachments, limits."""

from __future__ import annotations

import base64
import io
import zipfile
from email.message import EmailMessage
from email.policy import SMTP

import pytest

from postveil.config.detection import DetectionSection
from postveil.detection import Detector
from postveil.detection.extract import Limits, extract_message
from tests.detection.corpus_gen import make_docx, make_pdf, make_xlsx

PHI = "Patient: Maria Garcia\nDOB: 03/14/1962\nDiagnosis: type 2 diabetes (E11.9)"


def message(body: str = "Hello", subject: str = "Test") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "a@example.org"
    msg["To"] = "b@example.net"
    msg["Subject"] = subject
    msg.set_content(body)
    return msg


def raw_message(headers: str, body: bytes) -> bytes:
    return headers.replace("\n", "\r\n").encode() + b"\r\n" + body


def test_subject_is_scanned(detector: Detector) -> None:
    verdict = detector.scan_message(message("hi", subject="SSN 536-22-1234").as_bytes(policy=SMTP))
    assert verdict.categories.get("ssn") == 1


def test_encoded_word_subject_is_decoded(detector: Detector) -> None:
    encoded = base64.b64encode(b"SSN 536-22-1234").decode()
    raw = raw_message(f"Subject: =?utf-8?b?{encoded}?=\nMIME-Version: 1.0\n", b"hello\r\n")
    assert detector.scan_message(raw).categories.get("ssn") == 1


@pytest.mark.parametrize("cte", ["base64", "quoted-printable", "8bit", "7bit"])
def test_transfer_encodings(detector: Detector, cte: str) -> None:
    msg = EmailMessage()
    msg["Subject"] = "x"
    msg.set_content(PHI, cte=cte)
    assert detector.scan_message(msg.as_bytes(policy=SMTP)).sensitive


@pytest.mark.parametrize("charset", ["utf-8", "iso-8859-1", "windows-1252", "utf-16", "shift_jis"])
def test_charsets(detector: Detector, charset: str) -> None:
    prefix = "患者メモ. " if charset == "shift_jis" else "Résumé note. "
    body = (prefix + PHI).encode(charset)
    raw = raw_message(
        f"Subject: x\nMIME-Version: 1.0\nContent-Type: text/plain; charset={charset}\n"
        "Content-Transfer-Encoding: base64\n",
        base64.encodebytes(body),
    )
    assert detector.scan_message(raw).sensitive


def test_unknown_charset_falls_back(detector: Detector) -> None:
    raw = raw_message(
        "Subject: x\nMIME-Version: 1.0\nContent-Type: text/plain; charset=x-no-such-charset\n",
        PHI.encode(),
    )
    assert detector.scan_message(raw).sensitive


def test_html_is_read_as_text(detector: Detector) -> None:
    msg = message("see html")
    html = (
        "<html><head><style>.x{}</style></head><body><p>Patient: <b>Maria Garcia</b></p>"
        "<p>DOB:&nbsp;03/14/1962</p><p>Dx E11.9</p><script>var ssn='1'</script></body></html>"
    )
    msg.add_alternative(html, subtype="html")
    verdict = detector.scan_message(msg.as_bytes(policy=SMTP))
    assert verdict.sensitive
    assert verdict.categories.get("date_of_birth") == 1


def test_html_table_cells_do_not_join() -> None:
    msg = message("x")
    msg.add_alternative("<table><tr><td>4111</td><td>1111</td></tr></table>", subtype="html")
    texts = extract_message(msg.as_bytes(policy=SMTP)).texts
    assert not any("41111111" in text for text in texts)


def test_html_table_row_is_one_line() -> None:
    msg = message("x")
    msg.add_alternative(
        "<table><tr><th>Bed</th><th>Patient</th></tr>"
        "<tr><td>6W-11</td><td>Lockridge, Amos</td><td>67 M</td></tr></table>",
        subtype="html",
    )
    texts = extract_message(msg.as_bytes(policy=SMTP)).texts
    assert any("6W-11 \tLockridge, Amos \t67 M " in text for text in texts)
    assert any("Bed \tPatient " in text for text in texts)


def test_html_census_table_is_sensitive(detector: Detector) -> None:
    msg = message("x")
    rows = "".join(
        f"<tr><td>6W-{bed}</td><td>{name}</td><td>{age}</td><td>{dx}</td></tr>"
        for bed, name, age, dx in (
            (11, "Lockridge, Amos", "67 M", "Sepsis, UTI source"),
            (12, "Fenwick-Arles, Mina", "45 F", "C. difficile colitis"),
        )
    )
    msg.add_alternative(f"<table>{rows}</table>", subtype="html")
    verdict = detector.scan_message(msg.as_bytes(policy=SMTP))
    assert verdict.sensitive
    assert verdict.categories.get("patient_name") == 2


def test_nested_rfc822(detector: Detector) -> None:
    inner = message(PHI, subject="Original")
    outer = message("FYI, see below.", subject="Fwd: Original")
    outer.add_attachment(inner)
    verdict = detector.scan_message(outer.as_bytes(policy=SMTP))
    assert verdict.sensitive
    assert verdict.rule == "identifier_with_health"


def test_csv_cells_never_join(detector: Detector) -> None:
    # Two neighbouring cells that would form a valid card number if joined.
    msg = message("list attached")
    csv_text = "card,part\r\n4111 1111,1111 1111\r\n"
    msg.add_attachment(csv_text.encode(), maintype="text", subtype="csv", filename="a.csv")
    verdict = detector.scan_message(msg.as_bytes(policy=SMTP))
    assert "payment_card" not in verdict.categories


def test_csv_header_gives_context(detector: Detector) -> None:
    msg = message("list attached")
    csv_text = 'MRN,Name,DOB,Diagnosis\r\n00482913,"Garcia, Maria",03/14/1962,asthma\r\n'
    msg.add_attachment(csv_text.encode(), maintype="text", subtype="csv", filename="a.csv")
    verdict = detector.scan_message(msg.as_bytes(policy=SMTP))
    assert verdict.categories.get("mrn") == 1
    assert verdict.categories.get("date_of_birth") == 1
    assert verdict.sensitive


def test_tsv_attachment(detector: Detector) -> None:
    msg = message("list attached")
    tsv = "SSN\tName\r\n536221234\tAnn Lee\r\n"
    msg.add_attachment(
        tsv.encode(), maintype="text", subtype="tab-separated-values", filename="a.tsv"
    )
    assert detector.scan_message(msg.as_bytes(policy=SMTP)).categories.get("ssn") == 1


def test_pdf_text_layer(detector: Detector) -> None:
    msg = message("scan attached")
    msg.add_attachment(
        make_pdf(PHI.split("\n")), maintype="application", subtype="pdf", filename="s.pdf"
    )
    verdict = detector.scan_message(msg.as_bytes(policy=SMTP))
    assert verdict.sensitive
    assert verdict.unscanned_parts == []


def test_pdf_sent_as_octet_stream(detector: Detector) -> None:
    msg = message("scan attached")
    msg.add_attachment(
        make_pdf(PHI.split("\n")), maintype="application", subtype="octet-stream", filename="s.bin"
    )
    assert detector.scan_message(msg.as_bytes(policy=SMTP)).sensitive


def test_docx(detector: Detector) -> None:
    msg = message("letter attached")
    msg.add_attachment(
        make_docx(PHI.split("\n")),
        maintype="application",
        subtype="vnd.openxmlformats-officedocument.wordprocessingml.document",
        filename="l.docx",
    )
    assert detector.scan_message(msg.as_bytes(policy=SMTP)).sensitive


def test_docx_sent_as_text_type(detector: Detector) -> None:
    # Some clients label any attachment text/plain; the magic bytes and the name win.
    msg = message("letter attached")
    msg.add_attachment(
        make_docx(PHI.split("\n")), maintype="text", subtype="plain", filename="l.docx"
    )
    extraction = extract_message(msg.as_bytes(policy=SMTP))
    assert extraction.unscanned == []
    assert detector.scan_message(msg.as_bytes(policy=SMTP)).sensitive


def test_xlsx(detector: Detector) -> None:
    msg = message("sheet attached")
    data = make_xlsx(["MRN", "DOB", "Diagnosis"], [["00482913", "03/14/1962", "asthma"]])
    msg.add_attachment(
        data,
        maintype="application",
        subtype="vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        filename="x.xlsx",
    )
    verdict = detector.scan_message(msg.as_bytes(policy=SMTP))
    assert verdict.sensitive
    assert verdict.categories.get("mrn") == 1


def test_unsupported_attachment_is_reported(detector: Detector) -> None:
    msg = message("zip attached")
    msg.add_attachment(
        b"PK\x03\x04junk", maintype="application", subtype="zip", filename="Garcia.zip"
    )
    verdict = detector.scan_message(msg.as_bytes(policy=SMTP))
    assert verdict.unscanned_parts == ["part 3 (application/zip): unsupported type"]
    assert verdict.sensitive
    assert verdict.rule == "unscanned_part"


def test_unscanned_policy_can_be_relaxed() -> None:
    relaxed = Detector(DetectionSection(treat_unscanned_as_sensitive=False))
    msg = message("zip attached")
    msg.add_attachment(b"PK\x03\x04junk", maintype="application", subtype="zip", filename="a.zip")
    verdict = relaxed.scan_message(msg.as_bytes(policy=SMTP))
    assert not verdict.sensitive
    assert len(verdict.unscanned_parts) == 1


def test_corrupt_pdf_is_reported(detector: Detector) -> None:
    msg = message("scan attached")
    msg.add_attachment(b"%PDF-1.4 garbage", maintype="application", subtype="pdf", filename="s.pdf")
    verdict = detector.scan_message(msg.as_bytes(policy=SMTP))
    assert len(verdict.unscanned_parts) == 1
    assert "application/pdf" in verdict.unscanned_parts[0]


def test_encrypted_part_is_reported(detector: Detector) -> None:
    msg = message("x")
    msg.add_attachment(
        b"\x30\x80", maintype="application", subtype="pkcs7-mime", filename="smime.p7m"
    )
    assert "encrypted" in detector.scan_message(msg.as_bytes(policy=SMTP)).unscanned_parts[0]


def test_inline_logo_is_not_reported(detector: Detector) -> None:
    msg = message("x")
    msg.add_alternative("<p>hi</p><img src='cid:logo'>", subtype="html")
    msg.get_payload()[1].add_related(b"\x89PNG....", maintype="image", subtype="png", cid="<logo>")
    assert detector.scan_message(msg.as_bytes(policy=SMTP)).unscanned_parts == []


def test_part_size_cap_reports_truncation() -> None:
    raw = message("x" * 5000 + " SSN 536-22-1234").as_bytes(policy=SMTP)
    extraction = extract_message(raw, Limits(max_part_size=1000))
    assert any("only the first 1000 bytes" in item for item in extraction.unscanned)
    assert not any("536-22-1234" in text for text in extraction.texts)


def test_attachment_size_cap() -> None:
    msg = message("x")
    msg.add_attachment(
        make_pdf(["hello"] * 50), maintype="application", subtype="pdf", filename="a.pdf"
    )
    extraction = extract_message(msg.as_bytes(policy=SMTP), Limits(max_attachment_size=100))
    assert any("attachment limit" in item for item in extraction.unscanned)


def test_part_count_cap() -> None:
    msg = message("x")
    for index in range(5):
        msg.add_attachment(
            f"note {index}".encode(), maintype="text", subtype="plain", filename=f"{index}.txt"
        )
    extraction = extract_message(msg.as_bytes(policy=SMTP), Limits(max_parts=3))
    assert any("more parts than" in item for item in extraction.unscanned)


def test_depth_cap() -> None:
    inner = message(PHI)
    for _ in range(4):
        outer = message("fwd")
        outer.add_attachment(inner)
        inner = outer
    extraction = extract_message(inner.as_bytes(policy=SMTP), Limits(max_depth=3))
    assert any("nested deeper" in item for item in extraction.unscanned)


def test_unscanned_descriptions_hold_no_file_name(detector: Detector) -> None:
    msg = message("x")
    msg.add_attachment(
        b"data", maintype="application", subtype="x-thing", filename="Maria Garcia labs.bin"
    )
    descriptions = " ".join(detector.scan_message(msg.as_bytes(policy=SMTP)).unscanned_parts)
    assert "Garcia" not in descriptions


def test_csv_sent_as_excel_type(detector: Detector) -> None:
    msg = message("list attached")
    csv_text = "MRN,Diagnosis\r\n00482913,asthma\r\n"
    msg.add_attachment(
        csv_text.encode(), maintype="application", subtype="vnd.ms-excel", filename="list.csv"
    )
    verdict = detector.scan_message(msg.as_bytes(policy=SMTP))
    assert verdict.categories.get("mrn") == 1
    assert verdict.unscanned_parts == []


def test_calendar_attachment_is_read(detector: Detector) -> None:
    msg = message("invite")
    ics = "BEGIN:VCALENDAR\r\nSUMMARY:Budget review\r\nEND:VCALENDAR\r\n"
    msg.add_attachment(ics.encode(), maintype="application", subtype="ics", filename="invite.ics")
    assert detector.scan_message(msg.as_bytes(policy=SMTP)).unscanned_parts == []


def test_zip_bomb_docx_is_not_opened() -> None:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bomb:
        bomb.writestr("word/document.xml", b"0" * 2_000_000)
    msg = message("x")
    msg.add_attachment(
        archive.getvalue(),
        maintype="application",
        subtype="vnd.openxmlformats-officedocument.wordprocessingml.document",
        filename="a.docx",
    )
    extraction = extract_message(msg.as_bytes(policy=SMTP), Limits(max_attachment_size=100_000))
    assert any("expands beyond" in item for item in extraction.unscanned)


def test_pathological_nesting_falls_back_to_raw_text(detector: Detector) -> None:
    levels = "".join(
        f'Content-Type: multipart/mixed; boundary="b{index}"\r\n\r\n--b{index}\r\n'
        for index in range(3000)
    )
    raw = (
        "Subject: deep\r\nMIME-Version: 1.0\r\n"
        + levels
        + "Content-Type: text/plain\r\n\r\nSSN 536-22-1234\r\n"
    ).encode()
    verdict = detector.scan_message(raw)
    assert verdict.sensitive
    assert verdict.unscanned_parts


def test_many_parts_are_capped(detector: Detector) -> None:
    parts = "".join("--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n" for _ in range(2000))
    raw = (
        'Subject: many\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        + parts
        + "--b--\r\n"
    ).encode()
    verdict = detector.scan_message(raw)
    assert verdict.unscanned_parts == [
        "part 501 (text/plain): more parts than the configured maximum"
    ]
