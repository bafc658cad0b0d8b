"""Postfix maps that rewrite recipients after the milter, read with real postconf and postmap."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from postveil.cli.main import main as cli_main
from postveil.postfix_rewrites import (
    PostconfError,
    RecipientRewrites,
    RewriteLookupError,
    RewriteMapsWatcher,
    split_table_list,
)

REPO = Path(__file__).resolve().parents[1]


def postfix_config(directory: Path, main_cf: str) -> str:
    directory.mkdir(exist_ok=True)
    (directory / "main.cf").write_text(main_cf)
    # postconf warns about a missing master.cf even when it reads only main.cf.
    (directory / "master.cf").write_text("")
    return str(directory)


def rewrites(tmp_path: Path, main_cf: str) -> RecipientRewrites:
    return RecipientRewrites.from_postfix(postfix_config(tmp_path, main_cf))


def moved_by(parameter: str) -> str:
    return f"Postfix's {parameter} may move the recipient to another domain"


def test_no_rewrite_maps(tmp_path: Path) -> None:
    assert rewrites(tmp_path, "myhostname = mx.example\n").maps == {}


def test_rewrite_maps_named(tmp_path: Path) -> None:
    directory = postfix_config(
        tmp_path,
        "virtual_alias_maps = inline:{a@x.example=b@y.example}\n"
        "recipient_canonical_maps = hash:/etc/postfix/recipient_canonical\n",
    )
    assert RecipientRewrites.from_postfix(directory).maps == {
        "recipient_canonical_maps": ("hash:/etc/postfix/recipient_canonical",),
        "virtual_alias_maps": ("inline:{a@x.example=b@y.example}",),
    }


def test_rewrite_map_through_parameter(tmp_path: Path) -> None:
    # postconf -x expands the old name that virtual_alias_maps defaults to.
    directory = postfix_config(tmp_path, "virtual_maps = inline:{a@x.example=b@y.example}\n")
    assert list(RecipientRewrites.from_postfix(directory).maps) == ["virtual_alias_maps"]


def test_missing_config_directory(tmp_path: Path) -> None:
    with pytest.raises(PostconfError, match="main.cf"):
        RecipientRewrites.from_postfix(str(tmp_path / "missing"))


def test_table_list_split_outside_braces() -> None:
    value = "hash:/etc/postfix/virtual, inline:{a@x=b@y, c@x=d@y}  regexp:/etc/postfix/re"
    assert split_table_list(value) == [
        "hash:/etc/postfix/virtual",
        "inline:{a@x=b@y, c@x=d@y}",
        "regexp:/etc/postfix/re",
    ]


# (case, main.cf, recipients, expected moved recipient -> parameter)
MOVED_CASES = [
    ("no maps", "", ["a@x.example"], {}),
    (
        "alias to other domain",
        "virtual_alias_maps = inline:{a@x.example=a@y.example}\n",
        ["a@x.example", "b@x.example"],
        {"a@x.example": "virtual_alias_maps"},
    ),
    (
        "alias within domain",
        "virtual_alias_maps = inline:{a@x.example=b@x.example}\n",
        ["a@x.example"],
        {},
    ),
    (
        "alias to itself",
        "virtual_alias_maps = inline:{a@x.example=a@x.example}\n",
        ["a@x.example"],
        {},
    ),
    (
        "chain within domain then out",
        "virtual_alias_maps = inline:{a@x.example=b@x.example, b@x.example=b@y.example}\n",
        ["a@x.example"],
        {"a@x.example": "virtual_alias_maps"},
    ),
    (
        "one of several targets elsewhere",
        "virtual_alias_maps = inline:{{a@x.example=a@x.example, a@y.example}}\n",
        ["a@x.example"],
        {"a@x.example": "virtual_alias_maps"},
    ),
    (
        "address extension stripped",
        "recipient_delimiter = +\nvirtual_alias_maps = inline:{a@x.example=a@y.example}\n",
        ["a+tag@x.example"],
        {"a+tag@x.example": "virtual_alias_maps"},
    ),
    (
        "catch-all of the domain",
        "virtual_alias_maps = inline:{@x.example=desk@y.example}\n",
        ["anyone@x.example"],
        {"anyone@x.example": "virtual_alias_maps"},
    ),
    (
        "canonical domain rewrite",
        "recipient_canonical_maps = inline:{@x.example=@y.example}\n",
        ["a@x.example"],
        {"a@x.example": "recipient_canonical_maps"},
    ),
    (
        "to a local user",
        "canonical_maps = inline:{a@x.example=alice}\n",
        ["a@x.example"],
        {"a@x.example": "canonical_maps"},
    ),
    (
        "upper-case recipient",
        "virtual_alias_maps = inline:{a@x.example=a@y.example}\n",
        ["A@X.example"],
        {"A@X.example": "virtual_alias_maps"},
    ),
    (
        "loop within domain",
        "virtual_alias_maps = inline:{a@x.example=b@x.example, b@x.example=a@x.example}\n",
        ["a@x.example"],
        {},
    ),
]


@pytest.mark.parametrize(("case", "main_cf", "recipients", "expected"), MOVED_CASES, ids=[c[0] for c in MOVED_CASES])
def test_moved_recipients(
    tmp_path: Path, case: str, main_cf: str, recipients: list[str], expected: dict[str, str]
) -> None:
    reasons = {recipient: moved_by(parameter) for recipient, parameter in expected.items()}
    assert rewrites(tmp_path, main_cf).moved(recipients) == reasons


def test_long_chain_counts_as_moved(tmp_path: Path) -> None:
    entries = ", ".join(f"a{index}@x.example=a{index + 1}@x.example" for index in range(20))
    found = rewrites(tmp_path, f"virtual_alias_maps = inline:{{{entries}}}\n").moved(["a0@x.example"])
    assert found == {"a0@x.example": moved_by("virtual_alias_maps")}


def test_unreadable_table_is_temporary_failure(tmp_path: Path) -> None:
    checker = rewrites(tmp_path, f"virtual_alias_maps = hash:{tmp_path / 'missing'}\n")
    with pytest.raises(RewriteLookupError, match="missing"):
        checker.moved(["a@x.example"])


def test_watcher_reads_changed_main_cf(tmp_path: Path) -> None:
    directory = postfix_config(tmp_path, "myhostname = mx.example\n")
    watcher = RewriteMapsWatcher(directory)
    assert watcher.moved(["a@x.example"]) == {}

    # A different size makes the change visible even within one mtime tick.
    time.sleep(0.01)
    (tmp_path / "main.cf").write_text("virtual_alias_maps = inline:{a@x.example=a@y.example}\n")
    assert watcher.moved(["a@x.example"]) == {"a@x.example": moved_by("virtual_alias_maps")}


def test_watcher_fails_when_main_cf_breaks(tmp_path: Path) -> None:
    directory = postfix_config(tmp_path, "myhostname = mx.example\n")
    watcher = RewriteMapsWatcher(directory)
    (tmp_path / "main.cf").unlink()
    with pytest.raises(RewriteLookupError, match="main.cf"):
        watcher.moved(["a@x.example"])


def test_check_config_accepts_readable_maps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = postfix_config(tmp_path / "postfix", "canonical_maps = inline:{a@x.example=b@y.example}\n")
    config = str(REPO / "conf" / "postveil.yaml")

    assert cli_main(["check-config", config, "--postfix-config", directory]) == 0

    assert "rewrite" not in capsys.readouterr().err


def test_check_config_warns_on_unreadable_map(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "virtual"
    directory = postfix_config(tmp_path / "postfix", f"virtual_alias_maps = hash:{missing}\n")
    config = str(REPO / "conf" / "postveil.yaml")

    assert cli_main(["check-config", config, "--postfix-config", directory]) == 0

    err = capsys.readouterr().err
    assert f"warning: recipient rewrite lookup in hash:{missing} failed" in err
    assert "postveil-milter would defer (451) every message it routes by tls" in err


def test_check_config_warns_without_policy_map(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = postfix_config(tmp_path / "postfix", "myhostname = mx.example\n")
    config = str(REPO / "conf" / "postveil.yaml")

    assert cli_main(["check-config", config, "--postfix-config", directory]) == 0

    err = capsys.readouterr().err
    assert "smtp_tls_policy_maps (empty) does not query postveil-policyd" in err
    assert "postveil-milter routes no message by tls" in err


def test_check_config_reports_unreadable_postfix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = str(REPO / "conf" / "postveil.yaml")

    assert cli_main(["check-config", config, "--postfix-config", str(tmp_path / "missing")]) == 0

    err = capsys.readouterr().err
    assert f"warning: cannot read Postfix's configuration in {tmp_path / 'missing'}" in err


def test_watcher_defers_until_postfix_readable(tmp_path: Path) -> None:
    directory = tmp_path / "postfix"
    watcher = RewriteMapsWatcher(str(directory))
    assert watcher.problem is not None
    with pytest.raises(RewriteLookupError, match="main.cf"):
        watcher.moved(["a@x.example"])

    postfix_config(directory, "virtual_alias_maps = inline:{a@x.example=a@y.example}\n")
    assert watcher.moved(["a@x.example"]) == {"a@x.example": moved_by("virtual_alias_maps")}
    assert watcher.problem is None
