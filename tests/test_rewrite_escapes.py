"""Recipients that Postfix 3.7's cleanup moves to another domain in ways a first
version of RecipientRewrites.moved missed: bare user keys, case-sensitive regexp
tables, quoting, source routes, trailing dots, extensions carried over to an alias,
control characters and master.cf overrides. The bare-user cases follow the search
order in virtual(5) and canonical(5)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from postveil.postfix_rewrites import RecipientRewrites


def postfix_config(directory: Path, main_cf: str) -> str:
    (directory / "main.cf").write_text(main_cf.replace("DIR", str(directory)))
    (directory / "master.cf").write_text("")
    return str(directory)


def moved_in(tmp_path: Path, main_cf: str, files: dict[str, str], recipient: str) -> dict[str, str]:
    """Write the Postfix configuration and its table files, then check ``recipient``."""
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    rewrites = RecipientRewrites.from_postfix(postfix_config(tmp_path, main_cf))
    return rewrites.moved([recipient])


# (case, main.cf, extra files, recipient as sent at RCPT TO)
ESCAPES = [
    (
        "bare user key for myorigin",
        "myorigin = x.example\nvirtual_alias_maps = inline:{bob=bob@y.example}\n",
        {},
        "bob@x.example",
    ),
    (
        "bare user key for mydestination",
        "mydestination = x.example\ncanonical_maps = inline:{bob=bob@y.example}\n",
        {},
        "bob@x.example",
    ),
    (
        "bare user+ext key for mydestination",
        "mydestination = x.example\nrecipient_delimiter = +\nvirtual_alias_maps = inline:{bob+ext=bob@y.example}\n",
        {},
        "bob+ext@x.example",
    ),
    (
        "case-sensitive regexp",
        "virtual_alias_maps = regexp:DIR/escape.regexp\n",
        {"escape.regexp": "/^Bob@x\\.example$/i bob@y.example\n"},
        "Bob@x.example",
    ),
    (
        "quoted local part",
        "virtual_alias_maps = inline:{bob@x.example=bob@y.example}\n",
        {},
        '"bob"@x.example',
    ),
    (
        "backslash in local part",
        "virtual_alias_maps = inline:{bob@x.example=bob@y.example}\n",
        {},
        "b\\ob@x.example",
    ),
    (
        "source route",
        "virtual_alias_maps = inline:{bob@x.example=bob@y.example}\n",
        {},
        "@relay.example:bob@x.example",
    ),
    (
        "trailing dot",
        "virtual_alias_maps = inline:{bob@x.example=bob@y.example}\n",
        {},
        "bob@x.example.",
    ),
    (
        "extension kept on same-domain alias",
        "recipient_delimiter = +\n"
        "virtual_alias_maps = inline:{bob@x.example=desk@x.example, desk+lab@x.example=desk@y.example}\n",
        {},
        "bob+lab@x.example",
    ),
    (
        "tab in quoted local part",
        "virtual_alias_maps = regexp:DIR/escape.regexp\n",
        {"escape.regexp": '/^"b.ob"@x\\.example$/ bob@y.example\n'},
        '"b\tob"@x.example',
    ),
]


@pytest.mark.parametrize(("case", "main_cf", "files", "recipient"), ESCAPES, ids=[c[0] for c in ESCAPES])
def test_moved_recipient_detected(
    tmp_path: Path, case: str, main_cf: str, files: dict[str, str], recipient: str
) -> None:
    assert recipient in moved_in(tmp_path, main_cf, files, recipient), case


def test_cleanup_override_in_master_cf_read(tmp_path: Path) -> None:
    postfix_config(tmp_path, "myhostname = mx.example\n")
    (tmp_path / "master.cf").write_text(
        "cleanup   unix  n       -       n       -       0       cleanup\n"
        "  -o virtual_alias_maps=inline:{bob@x.example=bob@y.example}\n"
    )
    rewrites = RecipientRewrites.from_postfix(str(tmp_path))

    assert "bob@x.example" in rewrites.moved(["bob@x.example"])


def test_routing_characters_count_as_moved(tmp_path: Path) -> None:
    # With the domain in mydestination, Postfix routes "bob%y.example@x.example" by
    # its local part, with or without a map.
    rewrites = RecipientRewrites.from_postfix(postfix_config(tmp_path, "myhostname = mx.example\n"))

    found = rewrites.moved(["bob%y.example@x.example", '"bob@y.example"@x.example', "bob@x.example"])

    assert set(found) == {"bob%y.example@x.example", '"bob@y.example"@x.example'}


# (case, main.cf, extra files, recipient) found by a second review: results that
# Postfix looks up again in another form than the first fix did.
RESULT_ESCAPES = [
    (
        "random pick",
        "virtual_alias_maps = randmap:{bob@x.example, bob@y.example}\n",
        {},
        "bob@x.example",
    ),
    (
        "result case kept for regexp",
        "virtual_alias_maps = inline:{carol@x.example=Dave@x.example}, regexp:DIR/escape.regexp\n",
        {"escape.regexp": "/^Dave@x\\.example$/i dave@y.example\n"},
        "carol@x.example",
    ),
    (
        "quoted result",
        "virtual_alias_maps = regexp:DIR/escape.regexp\n",
        {"escape.regexp": '/^alice@x\\.example$/ "bob"@x.example\n/^bob@x\\.example$/ bob@y.example\n'},
        "alice@x.example",
    ),
    (
        "extension added to result with one",
        "recipient_delimiter = +\n"
        "virtual_alias_maps = inline:{erin@x.example=frank+x@x.example, frank+x+y@x.example=frank@y.example}\n",
        {},
        "erin+y@x.example",
    ),
    (
        "percent in result",
        "virtual_alias_maps = regexp:DIR/escape.regexp\n",
        {"escape.regexp": "/^bob@x\\.example$/ bob%y.example@x.example\n"},
        "bob@x.example",
    ),
]


@pytest.mark.parametrize(
    ("case", "main_cf", "files", "recipient"), RESULT_ESCAPES, ids=[c[0] for c in RESULT_ESCAPES]
)
def test_moved_through_result_detected(
    tmp_path: Path, case: str, main_cf: str, files: dict[str, str], recipient: str
) -> None:
    assert recipient in moved_in(tmp_path, main_cf, files, recipient), case


def test_delimiter_override_in_master_cf_read(tmp_path: Path) -> None:
    postfix_config(
        tmp_path, "recipient_delimiter = +\nvirtual_alias_maps = inline:{alice@x.example=alice@y.example}\n"
    )
    (tmp_path / "master.cf").write_text(
        "cleanup   unix  n       -       n       -       0       cleanup\n"
        "  -o recipient_delimiter=-\n"
    )
    rewrites = RecipientRewrites.from_postfix(str(tmp_path))

    assert "alice-x@x.example" in rewrites.moved(["alice-x@x.example"])


def test_quoted_key_searched(tmp_path: Path) -> None:
    (tmp_path / "quoted").write_text('"a b"@x.example ab@y.example\n')
    subprocess.run(["postmap", "-c", postfix_config(tmp_path, ""), f"hash:{tmp_path / 'quoted'}"], check=True)
    rewrites = RecipientRewrites.from_postfix(
        postfix_config(tmp_path, f"virtual_alias_maps = hash:{tmp_path / 'quoted'}\n")
    )

    assert '"a b"@x.example' in rewrites.moved(['"a b"@x.example'])
