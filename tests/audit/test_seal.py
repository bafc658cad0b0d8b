"""``seal``, ``head_line`` and ``canonical_json`` build their bytes by shortcuts. Each
must equal its plain definition, because the verifier checks records against it."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from postveil.audit.chain import (
    FORMAT_VERSION,
    HEAD_SIZE,
    AuditKey,
    Head,
    canonical_json,
    head_line,
    parse_head,
    seal,
    signed_body,
)

KEY = AuditKey.from_secret(b"s" * 32)

VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


def sealed_plainly(body: dict[str, Any]) -> bytes:
    """The definition: add key_id, sign the canonical JSON, add hmac, serialise again."""
    fields = {**body, "key_id": KEY.key_id}
    fields.pop("hmac", None)
    fields["hmac"] = KEY.sign(canonical_json(fields))
    return canonical_json(fields)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(st.text(), VALUES, max_size=8))
def test_seal_equals_its_definition(body: dict[str, Any]) -> None:
    assert seal(body, KEY) == sealed_plainly(body)


def test_seal_with_keys_on_either_side_of_hmac() -> None:
    for body in ({}, {"a": 1}, {"z": 1}, {"hmac": "stale", "a": [1], "zz": {"hmac": 2}}):
        line = seal(body, KEY)
        assert line == sealed_plainly(body)
        signed, mac = signed_body(json.loads(line))
        assert KEY.matches(signed, mac)


@settings(max_examples=500, deadline=None)
@given(VALUES | st.dictionaries(st.text(), VALUES, max_size=8))
def test_canonical_json_equals_json_dumps(value: Any) -> None:
    expected = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical_json(value) == expected.encode("utf-8")


def head_plainly(head: Head, time: str) -> bytes:
    """The definition: seal the head fields, then pad with spaces to HEAD_SIZE bytes."""
    body = {
        "seq": head.seq,
        "hash": head.hash,
        "file": head.file,
        "time": time,
        "v": FORMAT_VERSION,
    }
    line = seal(body, KEY)
    return line + b" " * (HEAD_SIZE - 1 - len(line)) + b"\n"


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=2**63), st.text(max_size=80), st.text(max_size=60))
def test_head_line_equals_its_definition(seq: int, file_name: str, time: str) -> None:
    head = Head(seq=seq, hash="0f" * 32, file=file_name)
    assert head_line(head, time, KEY) == head_plainly(head, time)


def test_head_line_odd_types_match_definition() -> None:
    class Name(str):
        pass

    for head in (
        Head(seq=True, hash="ab" * 32, file="audit.jsonl"),
        Head(seq=3, hash="ab" * 32, file=Name("x")),
    ):
        assert head_line(head, "2026-01-02T03:04:05.000006Z", KEY) == head_plainly(
            head, "2026-01-02T03:04:05.000006Z"
        )


def test_head_line_parses_back() -> None:
    head = Head(seq=42, hash="ab" * 32, file="audit.jsonl")
    raw = head_line(head, "2026-01-02T03:04:05.000006Z", KEY)
    assert len(raw) == HEAD_SIZE
    assert parse_head(raw, "audit.head", {KEY.key_id: KEY}) == head
