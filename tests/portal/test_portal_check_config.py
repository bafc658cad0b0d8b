"""`postveil check-config` on the built-in portal's files."""

from __future__ import annotations

from pathlib import Path

import pytest

from postveil.cli.main import main as cli_main


def write_config(path: Path, portal: str) -> Path:
    path.write_text("portal:\n" + portal)
    return path


def test_missing_portal_files_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(
        tmp_path / "p.yaml",
        f"  intake_address: intake@portal.test\n"
        f"  seal_key_file: {tmp_path / 'seal.key'}\n"
        f"  key_file: {tmp_path / 'portal.key'}\n"
        f"  store_directory: {tmp_path / 'store'}\n",
    )
    assert cli_main(["check-config", str(config)]) == 0
    err = capsys.readouterr().err
    assert f"portal.seal_key_file {tmp_path / 'seal.key'} does not exist on this host" in err
    assert "postveil-milter would not start here" in err
    assert "portal.base_url is not set" in err
    assert f"portal.key_file {tmp_path / 'portal.key'} does not exist" in err
    assert f"portal.store_directory {tmp_path / 'store'} does not exist" in err
    assert "postveil portal init" in err


def test_external_portal_needs_no_portal_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path / "p.yaml", "  intake_address: intake@portal.test\n")
    assert cli_main(["check-config", str(config)]) == 0
    assert "portal." not in capsys.readouterr().err


def test_open_key_modes_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from postveil.portal.store import generate_master_key

    generate_master_key(tmp_path / "portal.key", mode=0o644)
    generate_master_key(tmp_path / "seal.key", mode=0o644)
    (tmp_path / "store").mkdir()
    config = write_config(
        tmp_path / "p.yaml",
        f"  intake_address: intake@portal.test\n"
        f"  seal_key_file: {tmp_path / 'seal.key'}\n"
        f"  key_file: {tmp_path / 'portal.key'}\n"
        f"  store_directory: {tmp_path / 'store'}\n"
        f"  base_url: https://secure.example.org\n",
    )
    assert cli_main(["check-config", str(config)]) == 0
    err = capsys.readouterr().err
    assert f"chmod 600 {tmp_path / 'portal.key'}" in err
    assert f"chmod 640 {tmp_path / 'seal.key'}" in err


def test_invalid_client_limit_keys_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(
        tmp_path / "p.yaml",
        "  trusted_proxies: [10.0.0.1/8]\n  client_codes_per_hour: 0\n  notify_sender: yes\n",
    )
    assert cli_main(["check-config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "3 error(s)" in err
    assert "portal.trusted_proxies" in err
    assert "has host bits set" in err
    assert "portal.client_codes_per_hour" in err
    assert "portal.notify_sender" in err


def test_previous_key_files_are_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from postveil.portal.store import generate_master_key

    generate_master_key(tmp_path / "portal.key")
    generate_master_key(tmp_path / "seal.key", mode=0o640)
    generate_master_key(tmp_path / "open-old.key", mode=0o644)
    (tmp_path / "store").mkdir()
    config = write_config(
        tmp_path / "p.yaml",
        f"  intake_address: intake@portal.test\n"
        f"  seal_key_file: {tmp_path / 'seal.key'}\n"
        f"  key_file: {tmp_path / 'portal.key'}\n"
        f"  previous_key_files: [{tmp_path / 'missing-old.key'}, {tmp_path / 'open-old.key'}]\n"
        f"  store_directory: {tmp_path / 'store'}\n"
        f"  base_url: https://secure.example.org\n",
    )
    assert cli_main(["check-config", str(config)]) == 0
    err = capsys.readouterr().err
    assert f"portal.previous_key_files {tmp_path / 'missing-old.key'} does not exist" in err
    assert "restore the old key file" in err
    assert f"chmod 600 {tmp_path / 'open-old.key'}" in err
    assert "portal.key_file" not in err
