"""Finding the Postfix maps that rewrite recipients after the milter, with real postconf."""

from __future__ import annotations

from pathlib import Path

import pytest

from postveil.cli.main import main as cli_main
from postveil.postfix_rewrites import PostconfError, recipient_rewrite_parameters

REPO = Path(__file__).resolve().parents[1]


def postfix_config(directory: Path, main_cf: str) -> str:
    directory.mkdir(exist_ok=True)
    (directory / "main.cf").write_text(main_cf)
    # postconf warns about a missing master.cf even when it reads only main.cf.
    (directory / "master.cf").write_text("")
    return str(directory)


def test_no_rewrite_maps(tmp_path: Path) -> None:
    assert recipient_rewrite_parameters(postfix_config(tmp_path, "myhostname = mx.example\n")) == []


def test_rewrite_maps_named(tmp_path: Path) -> None:
    directory = postfix_config(
        tmp_path,
        "virtual_alias_maps = inline:{a@x.example=b@y.example}\n"
        "recipient_canonical_maps = hash:/etc/postfix/recipient_canonical\n",
    )
    assert recipient_rewrite_parameters(directory) == ["recipient_canonical_maps", "virtual_alias_maps"]


def test_rewrite_map_through_parameter(tmp_path: Path) -> None:
    # postconf -x expands the old name that virtual_alias_maps defaults to.
    directory = postfix_config(tmp_path, "virtual_maps = inline:{a@x.example=b@y.example}\n")
    assert recipient_rewrite_parameters(directory) == ["virtual_alias_maps"]


def test_missing_config_directory(tmp_path: Path) -> None:
    with pytest.raises(PostconfError, match="main.cf"):
        recipient_rewrite_parameters(str(tmp_path / "missing"))


def test_check_config_warns_on_rewrites(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = postfix_config(tmp_path / "postfix", "canonical_maps = inline:{a@x.example=b@y.example}\n")
    config = str(REPO / "conf" / "postveil.yaml")

    assert cli_main(["check-config", config, "--postfix-config", directory]) == 0

    err = capsys.readouterr().err
    assert "warning: Postfix sets canonical_maps, which can rewrite recipients" in err
    assert "a message routed by tls can leave in plaintext" in err


def test_check_config_reports_unreadable_postfix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = str(REPO / "conf" / "postveil.yaml")

    assert cli_main(["check-config", config, "--postfix-config", str(tmp_path / "missing")]) == 0

    err = capsys.readouterr().err
    assert f"warning: cannot check Postfix's recipient rewrites in {tmp_path / 'missing'}" in err
