"""Configuration parsing: typed values, unknown keys, and error reports with paths and lines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from postveil.cli.main import main as cli_main
from postveil.config import load_config, parse_config
from postveil.config.types import parse_duration, parse_host_port, parse_size
from postveil.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30.0), ("5m", 300.0), ("1.5h", 5400.0), ("1d", 86400.0), ("2w", 1209600.0), ("250ms", 0.25)],
)
def test_duration_units(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["30", 30, "5 minutes", "1y", "", "-1s", True, None])
def test_duration_rejects(text: object) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [("25MB", 25_000_000), ("512KiB", 524_288), ("1GiB", 1_073_741_824), (4096, 4096), ("10b", 10), ("1.5kb", 1500)],
)
def test_size_units(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["25 TB", "-5", -5, "MB", True, "twelve"])
def test_size_rejects(text: object) -> None:
    with pytest.raises(ValueError, match="invalid size"):
        parse_size(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1", ("127.0.0.1", 53)),
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        ("[::1]", ("::1", 53)),
        ("[::1]:5353", ("::1", 5353)),
    ],
)
def test_host_port(text: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(text, 53) == expected


@pytest.mark.parametrize("text", ["127.0.0.1:0", "127.0.0.1:70000", "[::1]x", "", "h:p"])
def test_host_port_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_host_port(text, 53)


def test_example_config_is_valid() -> None:
    config = load_config(REPO / "conf" / "postveil.yaml")

    assert config.milter.shutdown_timeout == 8.0
    assert config.milter.max_message_size == 50_000_000
    assert config.source.endswith("postveil.yaml")
    assert len(config.version) == 16


def test_empty_file_gives_defaults() -> None:
    config = parse_config(b"")

    assert config.logging.level == "INFO"


def test_config_is_immutable() -> None:
    config = parse_config(b"")

    with pytest.raises(Exception):
        config.logging.level = "DEBUG"  # type: ignore[misc]


BAD = b"""\
milter:
  timeout: 10s
  colour: blue
dns:
  lifetime: soon
  nameservers: ["127.0.0.1:99999"]
logging:
  level: 3
"""


def test_every_error_names_path_and_line() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(BAD, "bad.yaml")

    problems = caught.value.problems
    assert len(problems) == 4
    assert problems[0].startswith("bad.yaml:3: milter.colour: unknown key")
    assert problems[1].startswith("bad.yaml:5: dns.lifetime: invalid duration 'soon'")
    assert problems[2].startswith("bad.yaml:6: dns.nameservers[0]: invalid port in '127.0.0.1:99999'")
    assert problems[3].startswith("bad.yaml:8: logging.level:")
    assert "got 3" in problems[3]


def test_unknown_section_is_rejected() -> None:
    with pytest.raises(ConfigError, match="mliter: unknown key"):
        parse_config(b"mliter:\n  socket: unix:/x\n", "typo.yaml")


def test_yaml_syntax_error_names_line() -> None:
    with pytest.raises(ConfigError, match=r"broken.yaml:2: invalid YAML"):
        parse_config(b"milter:\n  socket: a: b\n", "broken.yaml")


def test_top_level_must_be_mapping() -> None:
    with pytest.raises(ConfigError, match="expected a mapping of sections"):
        parse_config(b"- a\n- b\n", "list.yaml")


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="failed to read configuration"):
        load_config(tmp_path / "absent.yaml")


def test_check_config_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["check-config", str(REPO / "conf" / "postveil.yaml")]) == 0
    assert "ok" in capsys.readouterr().out


def test_check_config_lists_three_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("milter:\n  sockett: unix:/x\n  timeout: 5\ndns:\n  lifetime: 1 hour\n")

    result = subprocess.run(
        [sys.executable, "-m", "postveil.cli.main", "check-config", str(path)],
        capture_output=True,
        text=True,
    )

    assert result.returncode == 1
    assert "milter.sockett: unknown key" in result.stderr
    assert "milter.timeout: invalid duration 5" in result.stderr
    assert "dns.lifetime: invalid duration '1 hour'" in result.stderr
    assert "3 error(s)" in result.stderr
