"""The classifier section's checks, and the host warnings of ``check-config``."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml

from postveil.cli.main import main as cli_main
from postveil.config import parse_config
from postveil.errors import ConfigError


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text.encode(), "test.yaml")
    return caught.value.problems


def test_defaults() -> None:
    section = parse_config(b"", "test.yaml").classifier
    assert section.enabled is False
    assert section.socket == "/run/postveil-classifier/classifier.sock"
    assert section.ask == "health"
    assert section.on_failure == "tempfail"
    assert section.threshold is None


@pytest.mark.parametrize(
    ("setting", "problem"),
    [
        ("socket: relative.sock", "expected an absolute path"),
        ("socket: /tmp/" + "a" * 100 + ".sock", "may have at most 107"),
        ("threshold: 1.5", "expected a probability between 0 and 1 (exclusive), or null"),
        ("threshold: 0", "expected a probability between 0 and 1"),
        ('threshold: "0.5"', "expected a probability between 0 and 1"),
        ("weights: weights.json", "expected an absolute path"),
        ('weights: "/tmp/x\\0y"', "expected an absolute path"),
        ('socket: "/tmp/c\\0.sock"', "expected an absolute path"),
        ("workers: 17", "less than or equal to 16"),
        ("on_failure: drop", "'tempfail' or 'rules'"),
        ("ask: sometimes", "'health' or 'always'"),
        ("timeout: 5", "expected a number with a unit"),
        ("socket_mode: 660", "quoted octal string"),
    ],
)
def test_invalid_settings(setting: str, problem: str) -> None:
    problems = problems_of(f"classifier:\n  {setting}\n")
    assert len(problems) == 1
    assert problem in problems[0]


def test_check_config_names_what_would_stop_the_daemon(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "postveil.yaml"
    settings = {
        "enabled": True,
        "socket": str(tmp_path / "missing" / "classifier.sock"),
        "socket_group": "no-such-group-here",
        "weights": str(tmp_path / "absent.json"),
    }
    config.write_text(yaml.safe_dump({"classifier": settings}))

    assert cli_main(["check-config", str(config)]) == 0
    err = capsys.readouterr().err
    assert "classifier.weights" in err
    assert "classifier.socket_group 'no-such-group-here' does not exist" in err
    assert f"directory {tmp_path / 'missing'} does not exist" in err
    assert "postveil-milter defers (451)" in err


def test_check_config_finds_a_stale_socket(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "classifier.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()
    config = tmp_path / "postveil.yaml"
    config.write_text(
        yaml.safe_dump(
            {"classifier": {"enabled": True, "socket": str(path), "on_failure": "rules"}}
        )
    )

    assert cli_main(["check-config", str(config)]) == 0
    err = capsys.readouterr().err
    assert "no process accepts connections on it" in err
    assert "postveil-milter uses the rules' verdict alone" in err
    # Disabled, the classifier's socket is not checked.
    config.write_text(yaml.safe_dump({"classifier": {"enabled": False, "socket": str(path)}}))
    assert cli_main(["check-config", str(config)]) == 0
    assert "classifier" not in capsys.readouterr().err
