"""``seal`` joins the line from two serialised halves; it must equal the plain form."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from postveil.audit.chain import AuditKey, canonical_json, seal, signed_body

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
