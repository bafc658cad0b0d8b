"""The routing, smime, pgp and portal configuration sections."""

from __future__ import annotations

from pathlib import Path

import pytest

from postveil.config import load_config, parse_config
from postveil.errors import ConfigError

CONF = Path(__file__).resolve().parents[2] / "conf" / "postveil.yaml"


def test_shipped_file_matches_defaults() -> None:
    config = load_config(CONF)
    defaults = parse_config(b"")

    for section in ("routing", "smime", "pgp", "portal"):
        assert getattr(config, section) == getattr(defaults, section)


@pytest.mark.parametrize(
    ("yaml_text", "message_part"),
    [
        (b"routing: {methods: {bulk: [drop, tls]}}", "put it last"),
        (b"routing: {methods: {clean: []}}", "list is empty"),
        (b"routing: {methods: {sensitive: [tls, plain]}}", "'plain' would deliver"),
        (b"routing: {methods: {bulk: [plain]}}", "'plain' would deliver"),
        (b"routing: {methods: {sensitive: [tls, tls]}}", "twice"),
        (b"routing: {methods: {sensitive: [tls, email]}}", "routing.methods.sensitive"),
        (b"routing: {trigger_header: 'X Bad'}", "invalid header name"),
        (b"routing: {bulk_senders: [news]}", "invalid bulk sender"),
        (b"routing: {no_method_action: bounce}", "no_method_action"),
        (b"routing: {method_tags: {'[x]': tls}}", "routing.method_tags"),
        (b"routing: {outer_subject: 'Vertraulich \xc3\xa4'}", "outer_subject"),
        (b"routing: {notice_next_step: \"Call IT\\nnow\"}", "invalid notice_next_step"),
        (b"routing: {notice_next_step: '  '}", "invalid notice_next_step"),
        (b"smime: {sign: true}", "signing_certificate"),
        (b"portal: {intake_address: nobody}", "invalid intake_address"),
        (b"pgp: {home: /tmp}", "unknown key"),
    ],
)
def test_invalid_values_rejected(yaml_text: bytes, message_part: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(yaml_text)

    assert message_part in str(caught.value)


def test_custom_lists_accepted() -> None:
    config = parse_config(b"routing: {methods: {escalated: [smime, pgp]}, no_method_action: remove_and_notify}")

    assert config.routing.methods.escalated == ["smime", "pgp"]
    assert config.routing.no_method_action == "remove_and_notify"


def test_notice_next_step_accepted() -> None:
    config = parse_config("routing: {notice_next_step: ' Call Jürgen in IT on 4321. '}".encode())

    assert config.routing.notice_next_step == "Call Jürgen in IT on 4321."
