"""``postveil scan``: output format, configuration, and that values are never printed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from postveil.cli import scan_cmd
from postveil.cli.main import main as cli_main
from tests import planted

PHI_MESSAGE = (
    b"Subject: intake\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n"
    b"Patient: Maria Garcia\r\nSSN 536-22-1234\r\nMRN: 00482913\r\nUnit no. QX-77123 asthma\r\n"
)
# A site's own identifier, high risk after its keyword.
UNIT_NUMBER_CONFIG = (
    "detection:\n"
    "  custom_identifiers:\n"
    "    - name: unit_number\n"
    "      pattern: 'QX-[0-9]{5}'\n"
    "      kind: high_risk\n"
    "      keywords: [unit no]\n"
)
INVALID_CONFIG = "detection:\n  weights:\n    no_such_category: 1\n"


@pytest.fixture(autouse=True)
def _message_store(tmp_path: Path) -> None:
    planted.mark_message_store(tmp_path, "test input messages")


@pytest.fixture(autouse=True)
def _no_installed_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Without --config, scan reads $POSTVEIL_CONFIG or an installed configuration; the
    # tests decide which, whatever the machine has.
    monkeypatch.delenv("POSTVEIL_CONFIG", raising=False)
    monkeypatch.setattr(scan_cmd, "DEFAULT_CONFIG_PATH", str(tmp_path / "not-installed.yaml"))


def test_scan_detects_planted_values(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    body = (
        f"Patient: {planted.PATIENT_NAME}\nDOB: {planted.DATE_OF_BIRTH}\n{planted.MRN}\n"
        f"Medicare MBI {planted.MEDICARE_MBI}\nSSN {planted.SSN}\ncard number {planted.CARD_NUMBER}\n"
        f"NPI {planted.NPI}\n{planted.DIAGNOSIS_CODE}\n"
    )
    path = tmp_path / "planted.eml"
    path.write_bytes(b"Subject: planted\r\n\r\n" + body.encode())
    assert cli_main(["scan", "--json", str(path)]) == 0
    output = capsys.readouterr().out
    record = json.loads(output)
    for category in (
        "patient_name",
        "date_of_birth",
        "mrn",
        "mbi",
        "ssn",
        "payment_card",
        "clinician_id",
        "diagnosis_code",
    ):
        assert record["categories"].get(category, 0) >= 1, category
    assert planted.find_values(output) == []


def test_scan_json_never_prints_values(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "a.eml"
    path.write_bytes(PHI_MESSAGE)
    assert cli_main(["scan", "--json", str(path)]) == 0
    output = capsys.readouterr().out
    record = json.loads(output)
    assert record["sensitive"] is True
    assert record["rule"] == "high_risk_identifier"
    for value in ("536-22-1234", "00482913", "Garcia"):
        assert value not in output


def test_scan_text_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "a.eml"
    path.write_bytes(PHI_MESSAGE)
    assert cli_main(["scan", str(path)]) == 0
    output = capsys.readouterr().out
    assert "SENSITIVE" in output
    assert "536-22-1234" not in output


def test_scan_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["scan", str(tmp_path / "missing.eml")]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_scan_with_custom_identifier(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "postveil.yaml"
    config.write_text(UNIT_NUMBER_CONFIG)
    path = tmp_path / "a.eml"
    path.write_bytes(PHI_MESSAGE)
    assert cli_main(["scan", "--config", str(config), "--json", str(path)]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["categories"]["unit_number"] == 1


def test_scan_invalid_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "postveil.yaml"
    config.write_text(INVALID_CONFIG)
    path = tmp_path / "a.eml"
    path.write_bytes(PHI_MESSAGE)
    assert cli_main(["scan", "--config", str(config), str(path)]) == 2
    assert "no_such_category" in capsys.readouterr().err


def test_scan_reads_config_from_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A site's own identifiers apply on its gateway without --config.
    config = tmp_path / "postveil.yaml"
    config.write_text(UNIT_NUMBER_CONFIG)
    monkeypatch.setenv("POSTVEIL_CONFIG", str(config))
    path = tmp_path / "a.eml"
    path.write_bytes(PHI_MESSAGE)
    assert cli_main(["scan", "--json", str(path)]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["categories"]["unit_number"] == 1


def test_scan_invalid_config_from_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "postveil.yaml"
    config.write_text(INVALID_CONFIG)
    monkeypatch.setenv("POSTVEIL_CONFIG", str(config))
    path = tmp_path / "a.eml"
    path.write_bytes(PHI_MESSAGE)
    assert cli_main(["scan", str(path)]) == 2
    assert f"{config}: invalid configuration" in capsys.readouterr().err


def test_scan_reads_installed_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "installed.yaml"
    config.write_text(INVALID_CONFIG)
    monkeypatch.setattr(scan_cmd, "DEFAULT_CONFIG_PATH", str(config))
    path = tmp_path / "a.eml"
    path.write_bytes(PHI_MESSAGE)
    assert cli_main(["scan", str(path)]) == 2
    assert f"{config}: invalid configuration" in capsys.readouterr().err


def test_scan_missing_config_unreadable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nosuch.yaml"
    path = tmp_path / "a.eml"
    path.write_bytes(PHI_MESSAGE)
    assert cli_main(["scan", "--config", str(missing), str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{missing}: failed to read configuration: No such file or directory" in err
    assert "invalid configuration" not in err
