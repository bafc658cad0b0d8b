"""Postfix settings that send a recipient to another next hop, read with real postconf and postmap."""

from __future__ import annotations

from pathlib import Path

import pytest

from postveil.postfix_nexthops import NextHopRoutes
from postveil.postfix_rewrites import RewriteLookupError, RewriteMapsWatcher


def routes(tmp_path: Path, main_cf: str, master_cf: str = "") -> NextHopRoutes:
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "main.cf").write_text(main_cf)
    (tmp_path / "master.cf").write_text(master_cf)
    return NextHopRoutes.from_postfix(str(tmp_path))


def test_default_settings_reroute_nothing(tmp_path: Path) -> None:
    found = routes(tmp_path, "myhostname = mx.example\n")
    assert found.maps == {}
    assert found.rerouted(["a@x.example"]) == {}


# (case, main.cf, recipient, whether it leaves its own domain's next hop)
CASES = [
    ("relayhost", "relayhost = [relay.example]:587\n", "a@x.example", True),
    ("relayhost list", "relayhost = x.example, [relay.example]\n", "a@x.example", True),
    ("fallback relay", "smtp_fallback_relay = [relay.example]\n", "a@x.example", True),
    ("fallback relay by its old name", "fallback_relay = [relay.example]\n", "a@x.example", True),
    ("default transport with next hop", "default_transport = smtp:[relay.example]\n", "a@x.example", True),
    ("sender-dependent relayhost", "sender_dependent_relayhost_maps = inline:{a@b.example=[r.example]}\n",
     "a@x.example", True),
    ("domain to a host", "transport_maps = inline:{x.example=smtp:[mx.other.example]}\n", "a@x.example", True),
    ("domain to itself with a port", "transport_maps = inline:{x.example=smtp:x.example:2525}\n",
     "a@x.example", False),
    ("domain to itself in brackets", "transport_maps = inline:{x.example=smtp:[x.example]}\n", "a@x.example", False),
    ("domain to itself with a service", "transport_maps = inline:{x.example=smtp:[x.example]:smtp}\n", "a@x.example",
     False),
    ("address literal", "transport_maps = inline:{x.example=smtp:[192.0.2.1]}\n", "a@x.example", True),
    ("empty next hop", "transport_maps = inline:{x.example=smtp:}\n", "a@x.example", False),
    ("parent domain", "transport_maps = inline:{.example=smtp:[relay.example]}\n", "a@x.example", True),
    ("catch-all", "transport_maps = inline:{*=smtp:[relay.example]}\n", "a@x.example", True),
    ("other domain only", "transport_maps = inline:{y.example=smtp:[relay.example]}\n", "a@x.example", False),
    ("upper-case recipient", "transport_maps = inline:{x.example=smtp:[relay.example]}\n", "A@X.Example.", True),
    ("address with extension", "recipient_delimiter = +\ntransport_maps = inline:{a@x.example=smtp:[r.example]}\n",
     "a+tag@x.example", True),
    ("other address", "transport_maps = inline:{a@x.example=smtp:[relay.example]}\n", "b@x.example", False),
    ("other transport", "transport_maps = inline:{x.example=tlsrelay:}\n", "a@x.example", True),
]


@pytest.mark.parametrize(("case", "main_cf", "recipient", "rerouted"), CASES, ids=[c[0] for c in CASES])
def test_rerouted_recipients(tmp_path: Path, case: str, main_cf: str, recipient: str, rerouted: bool) -> None:
    found = routes(tmp_path, main_cf).rerouted([recipient])
    assert (recipient in found) is rerouted, found


def test_reason_names_setting_and_next_hop(tmp_path: Path) -> None:
    found = routes(tmp_path, "transport_maps = inline:{x.example=smtp:[relay.example]}\n").rerouted(["a@x.example"])
    assert found == {"a@x.example": "Postfix's transport_maps entry x.example sends the recipient to next hop "
                                    "[relay.example]"}


def test_master_cf_override_counts(tmp_path: Path) -> None:
    master_cf = "smtp      unix  -       -       n       -       -       smtp\n  -o relayhost=[relay.example]\n"
    found = routes(tmp_path, "myhostname = mx.example\n", master_cf)
    assert found.maps == {"relayhost": ("[relay.example]",)}
    assert "a@x.example" in found.rerouted(["a@x.example"])


def test_unreadable_transport_table_is_temporary_failure(tmp_path: Path) -> None:
    found = routes(tmp_path, f"transport_maps = hash:{tmp_path / 'missing'}\n")
    with pytest.raises(RewriteLookupError, match="missing"):
        found.rerouted(["a@x.example"])


def test_watcher_reads_changed_routes(tmp_path: Path) -> None:
    routes(tmp_path, "myhostname = mx.example\n")
    watcher = RewriteMapsWatcher(str(tmp_path), reader=NextHopRoutes.from_postfix, description="routing settings")
    assert watcher.moved(["a@x.example"]) == {}
    (tmp_path / "main.cf").write_text("myhostname = mx.example\nrelayhost = [relay.example]\n# changed size\n")
    assert "a@x.example" in watcher.moved(["a@x.example"])


LISTEN = "inet:127.0.0.1:10461"
POSTVEIL_TABLE = f"socketmap:{LISTEN}:postveil"


def policy_routes(tmp_path: Path, main_cf: str, master_cf: str = "") -> NextHopRoutes:
    routes(tmp_path, main_cf, master_cf)
    return NextHopRoutes.from_postfix(str(tmp_path), socketmap_listen=LISTEN)


def test_policy_maps_without_postveil(tmp_path: Path) -> None:
    found = policy_routes(tmp_path, "myhostname = mx.example\n").rerouted(["a@x.example"])
    assert found == {
        "a@x.example": f"Postfix's smtp_tls_policy_maps (empty) does not query postveil-policyd at {LISTEN}"
    }


def test_policy_maps_with_postveil(tmp_path: Path) -> None:
    found = policy_routes(tmp_path, f"smtp_tls_policy_maps = {POSTVEIL_TABLE}\n")
    assert found.rerouted(["a@x.example"]) == {}


def test_policy_table_before_postveil(tmp_path: Path) -> None:
    main_cf = f"smtp_tls_policy_maps = inline:{{x.example=may}}, {POSTVEIL_TABLE}\n"
    found = policy_routes(tmp_path, main_cf).rerouted(["a@X.example", "a@y.example"])
    assert list(found) == ["a@X.example"]
    assert "inline:{x.example=may} has its own policy for x.example" in found["a@X.example"]


def test_policy_maps_override_without_postveil(tmp_path: Path) -> None:
    master_cf = "smtp      unix  -       -       n       -       -       smtp\n  -o smtp_tls_policy_maps=\n"
    found = policy_routes(tmp_path, f"smtp_tls_policy_maps = {POSTVEIL_TABLE}\n", master_cf)
    assert "a@x.example" in found.rerouted(["a@x.example"])
