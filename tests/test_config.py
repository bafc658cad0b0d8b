"""Configuration parsing: typed values, unknown keys, and error reports with paths and lines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pydantic
import pytest

from postveil.cli.main import main as cli_main
from postveil.config import DEFAULT_CONFIG_PATH, default_config_path, load_config, parse_config
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

    with pytest.raises(pydantic.ValidationError):
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
    with pytest.raises(ConfigError, match=r"broken.yaml:2: invalid YAML at column 12: mapping values"):
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


def problems_of(text: bytes, source: str = "test.yaml") -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source)
    return caught.value.problems


@pytest.mark.parametrize(
    "socket",
    ["unix:/var/spool/postfix/postveil/milter.sock", "local:/run/m.sock", "inet:8899@127.0.0.1", "inet6:8899@::1"],
)
def test_milter_socket_accepts(socket: str) -> None:
    assert parse_config(f'milter:\n  socket: "{socket}"\n'.encode()).milter.socket == socket


@pytest.mark.parametrize(
    ("socket", "expected"),
    [
        ("unix:", "expected an absolute file path after 'unix:'"),
        ("local:", "expected an absolute file path after 'local:'"),
        ("unix:milter.sock", "expected an absolute file path"),
        ("unix:/run/postveil/", "expected an absolute file path"),
        ("unix:/" + "d" * 120, "at most 107 bytes"),
        ("inet:abc@", "expected PORT@HOST after 'inet:'"),
        ("inet:8899", "expected PORT@HOST after 'inet:'"),
        ("inet:8899@", "expected PORT@HOST after 'inet:'"),
        ("inet6:@::1", "PORT 1-65535"),
        ("inet:abc@127.0.0.1", "PORT 1-65535"),
        ("inet:0@127.0.0.1", "PORT 1-65535"),
        ("inet:65536@127.0.0.1", "PORT 1-65535"),
        ("tcp:8899@127.0.0.1", "expected 'unix:/absolute/path'"),
        ("/run/milter.sock", "expected 'unix:/absolute/path'"),
    ],
)
def test_milter_socket_rejects(socket: str, expected: str) -> None:
    problems = problems_of(f'milter:\n  socket: "{socket}"\n'.encode())

    assert len(problems) == 1
    assert problems[0].startswith("test.yaml:2: milter.socket: invalid ")
    assert expected in problems[0]


def test_duration_maximum_is_366_days() -> None:
    assert parse_duration("366d") == 366 * 86400.0
    with pytest.raises(ValueError, match="the maximum is 366d"):
        parse_duration("367d")
    with pytest.raises(ValueError, match="the maximum is 366d"):
        parse_duration("99999999999999999999w")


@pytest.mark.parametrize(
    ("text", "suggestion"),
    [("1h30m", "'90m'"), ("1m30s", "'90s'"), ("1d12h", "'36h'"), ("1s500ms", "'1500ms'"), ("2h 60m", "'3h'")],
)
def test_compound_duration_suggests_one_unit(text: str, suggestion: str) -> None:
    with pytest.raises(ValueError, match="use a single unit") as caught:
        parse_duration(text)

    assert f"for example {suggestion}" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b"milter:\n  timeout: 0s\n", "test.yaml:2: milter.timeout: invalid duration 0s: must be greater than 0"),
        (b"milter:\n  timeout: 500ms\n", "test.yaml:2: milter.timeout: invalid milter timeout 0.5s"),
        (b"milter:\n  shutdown_timeout: 0ms\n", "test.yaml:2: milter.shutdown_timeout: invalid duration 0s"),
        (b"milter:\n  max_message_size: 0\n", "test.yaml:2: milter.max_message_size: invalid size 0"),
        (b"dns:\n  timeout: 0s\n", "test.yaml:2: dns.timeout: invalid duration 0s"),
        (b"dns:\n  timeout: 5s\n  lifetime: 0s\n", "test.yaml:3: dns.lifetime: invalid duration 0s"),
        (b"dns:\n  timeout: 5s\n  lifetime: 2s\n", "test.yaml:1: dns: dns.lifetime (2s) is shorter than dns.timeout (5s)"),
        (b"dns:\n  timeout: 30s\n", "test.yaml:1: dns: dns.lifetime (10s) is shorter than dns.timeout (30s)"),
    ],
)
def test_value_checks(text: bytes, expected: str) -> None:
    problems = problems_of(text)

    assert len(problems) == 1
    assert problems[0].startswith(expected)


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("dns.example", "invalid nameserver 'dns.example': expected an IP address"),
        ("not an address", "invalid nameserver 'not an address': expected an IP address"),
        ("dns.example:53", "invalid nameserver 'dns.example:53': expected an IP address"),
        ("[::1", "invalid address '[::1': missing ']'"),
        ("[dns.example]:53", "invalid nameserver '[dns.example]:53'"),
    ],
)
def test_nameserver_rejects(entry: str, expected: str) -> None:
    problems = problems_of(f'dns:\n  nameservers: ["{entry}"]\n'.encode())

    assert len(problems) == 1
    assert problems[0].startswith(f"test.yaml:2: dns.nameservers[0]: {expected}")


def test_nameserver_accepts_addresses() -> None:
    config = parse_config(b'dns:\n  nameservers: ["127.0.0.1", "127.0.0.1:5353", "::1", "[::1]:5353"]\n')

    assert config.dns.nameserver_addresses == [
        ("127.0.0.1", 53),
        ("127.0.0.1", 5353),
        ("::1", 53),
        ("::1", 5353),
    ]


DUPLICATES = b"""\
milter:
  timeout: 5s
logging:
  level: INFO
milter:
  timeout: 6s
  timeout: 7s
"""


def test_duplicate_section_and_key_name_both_lines() -> None:
    problems = problems_of(DUPLICATES)

    assert len(problems) == 2
    assert problems[0].startswith("test.yaml:5: milter: duplicate section, first at line 1;")
    assert "merge the keys of both into one" in problems[0]
    assert problems[1].startswith("test.yaml:7: milter.timeout: duplicate key, first at line 6;")
    assert "keep only the one you mean" in problems[1]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            b"milter:\n  socket_mode: 0660\n",
            'test.yaml:2: milter.socket_mode: invalid socket_mode 432: expected the mode as a quoted '
            'octal string such as "0660", not a number; YAML read the unquoted 0660 as the number 432, '
            'so write it in quotes: socket_mode: "0660"',
        ),
        (
            b"audit:\nlogging:\n  level: INFO\n",
            "test.yaml:1: audit: section is empty; indent its keys under it",
        ),
        (
            b"milter:\n\tsocket: unix:/x\n",
            "test.yaml:2: invalid YAML at column 1: found character '\\t' that cannot start any token; "
            "YAML indentation uses spaces, not tabs",
        ),
        (
            b"milter:\n  socket:unix:/x\n  timeout: 5s\n",
            "test.yaml:3: invalid YAML at column 10: mapping values are not allowed here; "
            "check for a missing space after ':'",
        ),
        (
            b"shutdown_timeout: 5s\n",
            "test.yaml:1: shutdown_timeout: unknown key; keys belong under their section: "
            "did you mean milter.shutdown_timeout?",
        ),
        (
            b"timeout: 5s\n",
            "test.yaml:1: timeout: unknown key; keys belong under their section, "
            "and this one exists as milter.timeout, ",
        ),
        (b"milter:\n  sockett: unix:/x\n", "test.yaml:2: milter.sockett: unknown key; did you mean 'socket'?"),
        (b"mliter:\n  socket: unix:/x\n", "test.yaml:1: mliter: unknown key; did you mean 'milter'?"),
        (
            b"milter:\n  nameservers: []\n",
            "test.yaml:2: milter.nameservers: unknown key; keys belong under their section: "
            "did you mean dns.nameservers?",
        ),
        (
            b"logging:\n  level: INFO\n  target: \xe9\n",
            "test.yaml:3: not valid UTF-8 at column 11 (byte 0xe9); save the file as UTF-8",
        ),
        (
            b"milter:\n  timeout: 5s\n---\nlogging:\n  level: INFO\n",
            "test.yaml:3: invalid YAML at column 1: more than one YAML document (---)",
        ),
        (
            b"milter:\n    socket: unix:/x\n  timeout: 5s\n",
            "test.yaml:3: invalid YAML at column 3: expected <block end>, but found '<block mapping start>'; "
            "keys at the same level must start in the same column",
        ),
        (
            b'milter:\n  socket: "unix:/x\n',
            "test.yaml:3: invalid YAML at column 1: found unexpected end of stream "
            "(while scanning a quoted scalar at line 2, column 11)",
        ),
        (
            b"milter:\n  timeout: 1:30\n",
            "test.yaml:2: milter.timeout: invalid duration 90: expected a number with a unit "
            "(ms, s, m, h, d or w), for example '30s' or '1d'; YAML read the unquoted 1:30 as the number 90",
        ),
        (
            b"milter:\n  timeout: 1h30m\n",
            "test.yaml:2: milter.timeout: invalid duration '1h30m': use a single unit, for example '90m'",
        ),
    ],
)
def test_error_message_says_what_to_do(text: bytes, expected: str) -> None:
    problems = problems_of(text)

    assert problems[0].startswith(expected), problems


def test_key_in_several_sections_lists_each() -> None:
    (problem,) = problems_of(b"timeout: 5s\n")

    assert "milter.timeout" in problem
    assert "dns.timeout" in problem
    assert "did you mean" not in problem


def test_keys_not_indented_under_section() -> None:
    problems = problems_of(b"milter:\ntls_hold: 5d\n")

    assert len(problems) == 2
    assert problems[0].startswith("test.yaml:1: milter: section is empty")
    assert problems[1].startswith(
        "test.yaml:2: tls_hold: unknown key; keys belong under their section: "
        "did you mean milter.tls_hold?"
    )


def test_key_of_several_sections_names_them_all() -> None:
    problems = problems_of(b"milter:\nsocket: unix:/x\n")

    assert problems[1].startswith(
        "test.yaml:2: socket: unknown key; keys belong under their section, and this one "
        "exists as milter.socket, classifier.socket"
    )


def test_check_config_warns_on_empty_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing set yet\n")

    assert cli_main(["check-config", str(path)]) == 0
    output = capsys.readouterr()
    assert f"{path}: ok" in output.out
    assert "warning: the file sets no key, so every default applies" in output.err


@pytest.mark.parametrize(("value", "expected"), [("", DEFAULT_CONFIG_PATH), ("/srv/p.yaml", "/srv/p.yaml")])
def test_default_config_path_env(monkeypatch: pytest.MonkeyPatch, value: str, expected: str) -> None:
    monkeypatch.setenv("POSTVEIL_CONFIG", value)

    assert default_config_path() == expected


def test_check_config_help_names_fallback() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "postveil.cli.main", "check-config", "--help"],
        capture_output=True,
        text=True,
        env={"POSTVEIL_CONFIG": "/elsewhere/p.yaml", "COLUMNS": "200"},
    )

    assert result.returncode == 0
    assert "default: $POSTVEIL_CONFIG, else /etc/postveil/postveil.yaml" in result.stdout
    assert "/elsewhere/p.yaml" not in result.stdout


def test_check_config_warns_on_missing_group(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "group.yaml"
    path.write_text("milter:\n  socket_group: nosuchgroup\n")

    assert cli_main(["check-config", str(path)]) == 0
    assert "milter.socket_group 'nosuchgroup' does not exist on this host" in capsys.readouterr().err


def ready_host_config(root: Path) -> Path:
    """Write a configuration whose every host path exists under ``root``."""
    from postveil.audit import generate_key_file

    for directory in ("run", "audit", "gnupg", "smime", "cache", "state"):
        (root / directory).mkdir()
    generate_key_file(root / "audit.key")
    (root / "trust.pem").write_text("placeholder: check-config tests existence only\n")
    path = root / "ready.yaml"
    path.write_text(
        f"milter:\n  socket: unix:{root / 'run' / 'milter.sock'}\n  socket_group: null\n"
        f"  reinject_store: {root / 'state' / 'reinjected.sqlite3'}\n"
        f"policyd:\n  cache_path: {root / 'cache' / 'facts.sqlite3'}\n"
        f"pgp:\n  gnupg_home: {root / 'gnupg'}\n"
        f"smime:\n  certificate_dir: {root / 'smime'}\n  trust_store: {root / 'trust.pem'}\n"
        f"audit:\n  key_file: {root / 'audit.key'}\n  directory: {root / 'audit'}\n"
    )
    return path


def test_check_config_ready_host_strict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = ready_host_config(tmp_path)

    code = cli_main(["check-config", "--strict", str(path)])

    captured = capsys.readouterr()
    assert code == 0
    assert captured.err == ""
    assert "no host warning" in captured.out


@pytest.mark.parametrize(
    ("removed", "key"),
    [
        ("audit.key", "audit.key_file"),
        ("audit", "audit.directory"),
        ("gnupg", "pgp.gnupg_home"),
        ("smime", "smime.certificate_dir"),
        ("trust.pem", "smime.trust_store"),
        ("cache", "policyd.cache_path"),
        ("run", "milter.socket"),
        ("state", "milter.reinject_store"),
    ],
)
def test_check_config_warns_missing_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], removed: str, key: str
) -> None:
    path = ready_host_config(tmp_path)
    target = tmp_path / removed
    if target.is_dir():
        target.rmdir()
    else:
        target.unlink()

    lenient = cli_main(["check-config", str(path)])
    lenient_output = capsys.readouterr()
    strict = cli_main(["check-config", "--strict", str(path)])
    strict_output = capsys.readouterr()

    assert lenient == 0
    assert f"warning: {key}" in lenient_output.err
    assert str(target) in lenient_output.err
    assert "1 host warning(s)" in lenient_output.out
    assert strict == 1
    assert f"warning: {key}" in strict_output.err
    assert "not ready on this host: 1 host warning(s) (--strict)" in strict_output.err
    assert strict_output.out == ""


def test_check_config_missing_gnupg_effect(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = ready_host_config(tmp_path)
    (tmp_path / "gnupg").rmdir()

    assert cli_main(["check-config", str(path)]) == 0
    error = capsys.readouterr().err
    assert "every message whose route reaches pgp would be deferred (451)" in error
    assert "even one that a later method such as the portal would take" in error
    assert "sensitive, escalated, forced_pgp" in error


def test_check_config_warns_file_not_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = ready_host_config(tmp_path)
    (tmp_path / "gnupg").rmdir()
    (tmp_path / "gnupg").write_text("a file where a directory belongs\n")

    assert cli_main(["check-config", "--strict", str(path)]) == 1
    assert f"pgp.gnupg_home {tmp_path / 'gnupg'} is not a directory" in capsys.readouterr().err


def test_check_config_warns_reinject_store_under_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A file where the store's directory belongs: the milter could not create the store.
    path = ready_host_config(tmp_path)
    (tmp_path / "state").rmdir()
    (tmp_path / "state").write_text("a file where a directory belongs\n")

    assert cli_main(["check-config", "--strict", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"milter.reinject_store: {tmp_path / 'state'} is not a directory" in err
    assert "every message with copies to re-inject" in err


def test_check_config_warns_missing_signing_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = ready_host_config(tmp_path)
    text = path.read_text().replace(
        "smime:\n",
        f"smime:\n  sign: true\n  signing_certificate: {tmp_path / 'sign.pem'}\n"
        f"  signing_key: {tmp_path / 'sign.key'}\n",
    )
    path.write_text(text)
    (tmp_path / "sign.pem").write_text("placeholder\n")

    assert cli_main(["check-config", "--strict", str(path)]) == 1
    err = capsys.readouterr().err
    assert "smime.signing_key" in err
    assert "smime.signing_certificate" not in err


def test_check_config_warns_missing_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = ready_host_config(tmp_path)
    (tmp_path / "audit.key").unlink()

    code = cli_main(["check-config", str(path)])

    captured = capsys.readouterr()
    assert code == 0
    assert "audit.key_file" in captured.err
    assert "would not start here" in captured.err
    assert f"postveil audit keygen {tmp_path / 'audit.key'}" in captured.err


def test_outer_headers_allowed_accepts_names() -> None:
    config = parse_config(b"routing:\n  outer_headers_allowed: [Feedback-ID, X-Mailer]\n")

    assert config.routing.outer_headers_allowed == ["Feedback-ID", "X-Mailer"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('["Feedback ID"]', "routing.outer_headers_allowed: invalid header name 'Feedback ID'"),
        ('["Feedback-ID:"]', "routing.outer_headers_allowed: invalid header name 'Feedback-ID:'"),
        ('[""]', "routing.outer_headers_allowed: invalid header name ''"),
        ("[content-type]", "'content-type' describes the original content"),
        ("[Content-Disposition]", "'Content-Disposition' describes the original content"),
        ("[MIME-Version]", "'MIME-Version' describes the original content"),
        ("[thread-topic]", "'thread-topic' repeats the Subject"),
        ("[Bcc]", "'Bcc' would show blind copy recipients"),
        ("[resent-bcc]", "'resent-bcc' would show blind copy recipients"),
        ("[x-postveil-protect]", "'X-Postveil-Protect' is the trigger header"),
        ("Feedback-ID", "routing.outer_headers_allowed: Input should be a valid list"),
    ],
)
def test_outer_headers_allowed_rejects(value: str, expected: str) -> None:
    problems = problems_of(f"routing:\n  outer_headers_allowed: {value}\n".encode())

    assert len(problems) == 1
    assert expected in problems[0]
