"""PGP key lookup (exact address, expiry, revocation, capability) and gpg failures."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
from crypto_fixtures import GpgWorld, gpg, gpg_decrypt

from postveil.crypto import PgpFailure, PgpKeyring


@pytest.mark.parametrize(
    ("address", "key", "reason_part"),
    [
        ("alice@example.org", "alice", "valid"),
        ("Alice@EXAMPLE.org", "alice", "valid"),
        ("bob@example.org", "bob", "valid"),
        ("erin@example.org", "erin", "valid"),
        ("erin.old@example.org", None, "revoked or expired"),
        ("dave@example.org", None, "revoked"),
        ("oldpgp@example.org", None, "expired"),
        ("sig@example.org", None, "no usable encryption subkey"),
        ("nobody@example.org", None, "no PGP key"),
        ("alice@example.org.evil", None, "no PGP key"),
        ("lice@example.org", None, "no PGP key"),
    ],
)
def test_lookup_table(gpg_world: GpgWorld, address: str, key: str | None, reason_part: str) -> None:
    status = PgpKeyring(str(gpg_world.postveil_home)).lookup(address)

    expected = gpg_world.fingerprints[key] if key else None
    assert status.fingerprint == expected
    assert reason_part in status.reason


def test_lookup_uses_clock_for_expiry(gpg_world: GpgWorld, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    gpg(home, "--quick-gen-key", "Soon <soon@example.org>", "future-default", "default", "2d")
    keyring = PgpKeyring(str(home), clock=lambda: time.time() + 3 * 86400)
    try:
        assert keyring.lookup("soon@example.org").reason == "PGP key expired"
        assert PgpKeyring(str(home)).lookup("soon@example.org").usable
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False)


def test_encrypt_to_two_keys(gpg_world: GpgWorld) -> None:
    keyring = PgpKeyring(str(gpg_world.postveil_home))
    armored = keyring.encrypt(b"secret\r\n", [gpg_world.fingerprints["alice"], gpg_world.fingerprints["bob"]])

    assert armored.startswith(b"-----BEGIN PGP MESSAGE-----")
    assert gpg_decrypt(gpg_world, armored) == b"secret\r\n"


def test_encrypt_to_one_key_names_only_that_key(gpg_world: GpgWorld) -> None:
    keyring = PgpKeyring(str(gpg_world.postveil_home))
    armored = keyring.encrypt(b"x", [gpg_world.fingerprints["alice"]])

    packets = gpg(gpg_world.recipient_home, "--list-packets", input=armored, check=False).stdout.decode()
    key_ids = [line.split("keyid ")[1].split()[0] for line in packets.splitlines() if "pubkey enc packet" in line]
    assert len(key_ids) == 1


def test_missing_home_fails(tmp_path: Path) -> None:
    keyring = PgpKeyring(str(tmp_path / "absent"))

    with pytest.raises(PgpFailure, match="missing or not a directory"):
        keyring.lookup("alice@example.org")
    assert not (tmp_path / "absent").exists()


def test_corrupt_keyring_fails(gpg_world: GpgWorld, tmp_path: Path) -> None:
    home = tmp_path / "broken"
    home.mkdir(mode=0o700)
    (home / "pubring.kbx").write_bytes(b"this is not a keybox")
    keyring = PgpKeyring(str(home))

    with pytest.raises(PgpFailure, match="failed to list keys"):
        keyring.lookup("alice@example.org")


def test_home_removed_after_use_fails(gpg_world: GpgWorld, tmp_path: Path) -> None:
    home = tmp_path / "copy"
    shutil.copytree(gpg_world.postveil_home, home, ignore=shutil.ignore_patterns("S.*"))
    keyring = PgpKeyring(str(home))
    fingerprint = keyring.lookup("alice@example.org").fingerprint
    assert fingerprint is not None

    shutil.rmtree(home)

    with pytest.raises(PgpFailure):
        keyring.encrypt(b"x", [fingerprint])


def test_encrypt_unknown_key_fails(gpg_world: GpgWorld) -> None:
    keyring = PgpKeyring(str(gpg_world.postveil_home))

    with pytest.raises(PgpFailure, match="encryption failed"):
        keyring.encrypt(b"x", ["0" * 40])


def test_missing_gpg_binary_fails(gpg_world: GpgWorld) -> None:
    keyring = PgpKeyring(str(gpg_world.postveil_home), gpg_binary="/nonexistent/gpg")

    with pytest.raises(PgpFailure, match="cannot run gpg"):
        keyring.lookup("alice@example.org")


def test_import_refuses_secret_key(gpg_world: GpgWorld, tmp_path: Path) -> None:
    secret = gpg(gpg_world.recipient_home, "--armor", "--export-secret-keys", gpg_world.fingerprints["bob"]).stdout
    keyring = PgpKeyring(str(gpg_world.postveil_home))

    with pytest.raises(PgpFailure, match="secret key"):
        keyring.import_keys(secret)


def test_import_and_remove(gpg_world: GpgWorld, tmp_path: Path) -> None:
    home = tmp_path / "fresh"
    home.mkdir(mode=0o700)
    keyring = PgpKeyring(str(home))
    public = gpg(gpg_world.recipient_home, "--armor", "--export", gpg_world.fingerprints["bob"]).stdout
    try:
        assert keyring.import_keys(public) == [gpg_world.fingerprints["bob"]]
        assert keyring.lookup("bob@example.org").usable

        keyring.remove(gpg_world.fingerprints["bob"])

        assert not keyring.lookup("bob@example.org").usable
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False)


def test_import_garbage_fails(tmp_path: Path) -> None:
    home = tmp_path / "fresh"
    home.mkdir(mode=0o700)

    with pytest.raises(PgpFailure, match="imported no key"):
        PgpKeyring(str(home)).import_keys(b"not a key")


def test_hung_gpg_times_out(gpg_world: GpgWorld, tmp_path: Path) -> None:
    # A wrapper around the real gpg that hangs on --encrypt stands in for a gpg stuck on
    # a lock or a dead agent, which cannot be produced on demand.
    wrapper = tmp_path / "slow-gpg"
    wrapper.write_text(
        "#!/bin/sh\n"
        'for arg in "$@"; do [ "$arg" = "--encrypt" ] && exec sleep 30; done\n'
        'exec gpg "$@"\n'
    )
    wrapper.chmod(0o755)
    keyring = PgpKeyring(str(gpg_world.postveil_home), gpg_binary=str(wrapper), timeout=0.5)
    fingerprint = keyring.lookup("alice@example.org").fingerprint
    assert fingerprint is not None

    started = time.monotonic()
    with pytest.raises(PgpFailure, match="timed out after 0.5 s"):
        keyring.encrypt(b"x", [fingerprint])

    assert time.monotonic() - started < 5
    assert keyring.lookup("alice@example.org").usable
