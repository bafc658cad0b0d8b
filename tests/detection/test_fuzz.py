"""Malformed MIME never raises out of the scanner."""

from __future__ import annotations

import base64

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from postveil.detection import Detector, Verdict, extract
from postveil.detection.extract import Extraction
from tests.detection.corpus_gen import generate

HEADER_LINES = st.sampled_from(
    [
        b'Content-Type: multipart/mixed; boundary="b"',
        b"Content-Type: multipart/mixed",
        b"Content-Type: multipart/alternative; boundary=",
        b"Content-Type: message/rfc822",
        b'Content-Type: text/plain; charset="utf-7"',
        b"Content-Type: text/plain; charset=bogus-charset",
        b"Content-Type: text/html",
        b"Content-Type: text/csv",
        b"Content-Type: application/pdf",
        b"Content-Type: application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        b"Content-Type: application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        b"Content-Type: application/octet-stream; name*=utf-8''%E9%ZZ.csv",
        b"Content-Transfer-Encoding: base64",
        b"Content-Transfer-Encoding: quoted-printable",
        b"Content-Transfer-Encoding: x-uuencode",
        b'Content-Disposition: attachment; filename="a.docx"',
        b"Subject: =?utf-8?b?!!!?= =?x-unknown?q?SSN_536-22-1234?=",
        b"MIME-Version: 1.0",
        b"\t folded continuation",
        b"Broken header without colon",
    ]
)
BODY_CHUNKS = st.sampled_from(
    [
        b"--b",
        b"--b--",
        b"--b\r\nContent-Type: message/rfc822\r\n\r\n",
        b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj",
        b"PK\x03\x04\x14\x00",
        b"=E9=\r\n=ZZ",
        b"SSN 536-22-1234",
        b"<html><td>4111</td><script>",
        b"\xff\xfe\x00",
        b'MRN,DOB\r\n"unterminated,1962',
        b"",
    ]
)


@st.composite
def malformed_messages(draw: st.DrawFn) -> bytes:
    headers = draw(st.lists(HEADER_LINES, max_size=8))
    chunks = draw(st.lists(st.one_of(BODY_CHUNKS, st.binary(max_size=64)), max_size=12))
    separator = draw(st.sampled_from([b"\r\n", b"\n", b"\r"]))
    return separator.join(headers) + separator * 2 + separator.join(chunks)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=malformed_messages())
def test_malformed_mime_never_raises(detector: Detector, raw: bytes) -> None:
    verdict = detector.scan_message(raw)
    assert isinstance(verdict, Verdict)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=st.binary(max_size=2048))
def test_random_bytes_never_raise(detector: Detector, raw: bytes) -> None:
    assert isinstance(detector.scan_message(raw), Verdict)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.text(max_size=400))
def test_random_text_never_raises(detector: Detector, text: str) -> None:
    assert isinstance(detector.scan_text(text), Verdict)


# Pieces of the sentence step's input: people, pronouns, health words (tied ones
# too), verbs of care, room cues, titles, punctuation and line ends.
SENTENCE_PIECES = st.sampled_from(
    [
        "Tom",
        "Edith Moss",
        "Mrs. Okafor",
        "Mr",
        "René",
        "Łukasz",
        "O\u2019Neil",
        "my mum",
        "your dad",
        "he",
        "she's",
        "she\u2019s",
        "his",
        "her",
        "hes",
        "I",
        "I'm",
        "my",
        "this is",
        "Today",
        "diabetes",
        "metformin",
        "warfarin 5 mg",
        "had a fall",
        "stroke",
        "the flu",
        "rehab",
        "MRI",
        "chest pains",
        "has",
        "had",
        "takes",
        "refused",
        "diagnosed with",
        "recovering from",
        "for",
        "on",
        "bed 4",
        "(Harlan)",
        "rm 12 -",
        "rm 5 Gomez -",
        "still in",
        "concussion protocol",
        "tore his ACL",
        "NPO after MN",
        "Dr.",
        "at 12.",
        ".",
        ",",
        "!",
        "?",
        ":",
        " - ",
        "\n",
        "\r\n",
        "\n\n",
        "\u2022 ",
        "1. ",
        "'s",
        "\u2019s",
        "Thanks,\nGabi",
        "",
        " ",
    ]
)


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(pieces=st.lists(SENTENCE_PIECES, max_size=60))
def test_sentence_step_inputs_never_raise(detector: Detector, pieces: list[str]) -> None:
    text = " ".join(pieces)
    for finding in detector.find(text):
        assert 0 <= finding.start <= finding.end <= len(text)


# Labels that make the scanner read the number after them, and numbers of lengths that
# each validator takes, or far longer ones ("MRN: 2020-1-9999999999999" once raised
# OverflowError in the date check).
LABELLED_NUMBER_PIECES = st.one_of(
    st.sampled_from(
        [
            "MRN:",
            "DOB:",
            "born",
            "Member ID",
            "Account No.:",
            "DL:",
            "NHS number:",
            "Medicare card:",
            "OHIP",
            "SSN",
            "card",
            "NPI",
            "DEA",
            "NDC",
            "CPT",
            "dx",
            "Hospital No:",
            "rm",
            "bed",
            "INR",
            "eGFR",
            "mg",
            "Patient:",
            "y/o",
            "-",
            "/",
            ".",
            ":",
            " ",
            "\n",
        ]
    ),
    st.text(alphabet="0123456789", min_size=1, max_size=40),
    st.from_regex(r"[0-9]{1,4}[-/.][0-9]{1,20}[-/.][0-9]{1,20}", fullmatch=True),
    # Dates whose year reads first and whose other parts overflow a C int.
    st.from_regex(r"[0-9]{4}-[0-9]{1,12}-[0-9]{1,14}", fullmatch=True),
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(pieces=st.lists(LABELLED_NUMBER_PIECES, max_size=40))
@example(pieces=["MRN:", " ", "2020-1-9999999999999"])
def test_labelled_number_inputs_never_raise(detector: Detector, pieces: list[str]) -> None:
    text = "".join(pieces)
    for finding in detector.find(text):
        assert 0 <= finding.start <= finding.end <= len(text)


def _full_parse(raw: bytes) -> Extraction:
    """Extraction with the single-part shortcut turned off."""
    original = extract._parse_single_part
    extract._parse_single_part = lambda raw: None
    try:
        return extract.extract_message(raw)
    finally:
        extract._parse_single_part = original


@settings(max_examples=400, deadline=None)
@given(raw=malformed_messages())
def test_single_part_shortcut_reads_what_the_parser_reads(raw: bytes) -> None:
    assert extract.extract_message(raw) == _full_parse(raw)


SSN_TABLE = base64.b64encode(b"name,ssn\r\nA. Patient,536-22-1234\r\n").decode()


@pytest.mark.parametrize("separator", ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028"])
def test_single_part_shortcut_splits_on_crlf_only(detector: Detector, separator: str) -> None:
    """str.splitlines also breaks lines at these characters; the parser does not. A
    header that hides a second Content-Type behind one must not make a multipart
    message look like a single text part."""
    raw = (
        f"From: a@example.org\r\nX-Tag: z{separator}Content-Type: text/plain\r\n"
        "Subject: update\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nsee the table\r\n"
        "--b\r\nContent-Type: text/csv\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        f"{SSN_TABLE}\r\n--b--\r\n"
    ).encode("utf-8", "surrogateescape")
    assert extract.extract_message(raw) == _full_parse(raw)
    assert detector.scan_message(raw).sensitive


def test_single_part_shortcut_on_the_corpus() -> None:
    shortcuts = 0
    for _, raw, _ in generate(2026, 200):
        crlf = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        for message in (raw, crlf):
            shortcuts += extract._parse_single_part(message) is not None
            assert extract.extract_message(message) == _full_parse(message)
    assert shortcuts > 100
