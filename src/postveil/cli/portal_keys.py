"""``postveil portal create-key``, ``rekey`` and the key table of ``status``: rotation
of the built-in portal's master key (docs/portal.md, "Rotating the master key").

Key ids (first 16 hex digits of the key's SHA-256) are printed and recorded; the keys
themselves never are.
"""

from __future__ import annotations

import os
import sys

from postveil.cli.admin_audit import AdminAuditError, AdminChangeLog
from postveil.config import Config
from postveil.portal.keys import master_key_id
from postveil.portal.rekey import pending_count, rekey_lock, rewrap_all
from postveil.portal.store import (
    PortalError,
    PortalStore,
    RetiredKeyError,
    generate_master_key,
    load_master_key,
)

REKEY_ACTION = "portal-rekey"
"""``action`` of the ``admin_override`` record that ``rekey`` writes."""

ABANDON_ACTION = "portal-rekey-abandon"
"""``action`` of the ``admin_override`` record that ``rekey --abandon`` writes."""


def create_key(path: str) -> int:
    """Write a new master key file with mode 0600; never overwrite one."""
    try:
        generate_master_key(path, 0o600)
    except FileExistsError:
        print(
            f"postveil portal create-key: {path} exists and was left unchanged; "
            "choose a new file name for the new key",
            file=sys.stderr,
        )
        return 1
    except OSError as exc:
        print(f"postveil portal create-key: cannot create {path}: {exc.strerror}", file=sys.stderr)
        return 1
    key_id = master_key_id(load_master_key(path))
    print(f"created {path} (master key id {key_id}, mode 0600)")
    print(
        "Give it to the user of postveil-portal and the intake, for example\n"
        f"  chown postveil:postveil {path}\n"
        'then follow docs/portal.md, "Rotating the master key".'
    )
    return 0


def rekey(config: Config, reason: str, config_path: str | None, *, abandon: bool = False) -> int:
    """Encrypt every data key again with ``portal.key_file``; see docs/portal.md.

    Exit status 0 when every data key is under the current key, 1 otherwise (a data
    key that no configured key decrypts, a missing or open key file, a locked store,
    an audit trail that cannot be written). With ``abandon``, undo the record of the
    last rotation instead (:func:`abandon_rotation`).
    """
    section = config.portal
    if not os.path.isdir(section.store_directory):
        print(
            f"postveil portal rekey: portal.store_directory {section.store_directory} does not "
            f"exist or is not a directory; check portal.store_directory in {config.source}",
            file=sys.stderr,
        )
        return 1
    try:
        store = PortalStore.open(
            section.store_directory, section.key_file, section.previous_key_files
        )
    except PortalError as exc:
        print(f"postveil portal rekey: {exc}", file=sys.stderr)
        return 1
    try:
        with rekey_lock(section.store_directory):
            if abandon:
                return abandon_rotation(config, store, reason, config_path)
            return _rekey_locked(config, store, reason, config_path)
    except PortalError as exc:
        print(f"postveil portal rekey: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()


def _rekey_locked(config: Config, store: PortalStore, reason: str, config_path: str | None) -> int:
    current = store.keyring.current.key_id
    rotated = store.rotated_key_id()
    if rotated is not None and rotated not in store.keyring:
        print(
            f"postveil portal rekey: the store was rotated to master key id {rotated}, which "
            f"is neither portal.key_file nor in portal.previous_key_files of "
            f"{config.source}, so nothing was changed. If this configuration predates "
            f"that rotation, run rekey with the current one. Otherwise add the file of key "
            f"id {rotated} to portal.previous_key_files and run rekey again. If that file "
            "is lost and no message needs it, give up the rotation with 'postveil portal "
            "rekey --abandon' and this configuration.",
            file=sys.stderr,
        )
        return 1
    try:
        store.check_current_key()
    except RetiredKeyError as exc:
        print(f"postveil portal rekey: {exc}; nothing was changed", file=sys.stderr)
        return 1
    pending = pending_count(store)
    if pending == 0 and rotated == current:
        # A store that an older postveil rotated has no retired keys recorded yet.
        print_retired(store.declare_current_key())
        print(f"every data key is encrypted with master key id {current}; nothing to do")
        print_key_counts(store)
        return 0

    command = "postveil portal rekey" + (f" -c {config_path}" if config_path else "")
    changes = AdminChangeLog(config.audit, "postveil portal rekey", command, reason)
    try:
        changes.record(REKEY_ACTION, [config.portal.store_directory], current)
    except AdminAuditError as exc:
        print(f"postveil portal rekey: {exc}; nothing was changed", file=sys.stderr)
        return 1
    finally:
        changes.close()

    print(f"encrypting {pending} data key(s) again with master key id {current}")
    result = rewrap_all(store)
    print_retired(list(result.retired))
    print(f"encrypted {result.rewrapped} data key(s) again")
    for failure in result.failures:
        print(f"postveil portal rekey: left unchanged: {failure.reason}", file=sys.stderr)
    print_key_counts(store)
    if result.failures:
        print(
            f"postveil portal rekey: {len(result.failures)} data key(s) could not be decrypted "
            "and were left unchanged. Add the master key file that encrypted them to "
            "portal.previous_key_files and run this again, or revoke those messages "
            "('postveil portal revoke ID'). Keep the old key files until then.",
            file=sys.stderr,
        )
        return 1
    return 0


def abandon_rotation(
    config: Config, store: PortalStore, reason: str, config_path: str | None
) -> int:
    """Undo the record of the last rotation when no stored message needs its key,
    after writing an ``admin_override`` record; see docs/portal.md."""
    rotated = store.rotated_key_id()
    if rotated is not None and rotated == store.keyring.current.key_id:
        # Giving up the rotation to the key this configuration uses leaves the intake
        # storing new messages under a key that no recorded rotation leads to. It is
        # also what a second --abandon in a row with an unchanged configuration does.
        print(
            f"postveil portal rekey: the store's last rotation is to master key id {rotated}, "
            f"which portal.key_file in {config.source} names, so nothing was changed. To "
            "give up that rotation, point portal.key_file at the key that was current "
            "before it and run 'postveil portal rekey --abandon' again. After an --abandon "
            "that succeeded, keep this configuration: the rotation it gave up is already "
            "undone.",
            file=sys.stderr,
        )
        return 1
    command = "postveil portal rekey --abandon" + (f" -c {config_path}" if config_path else "")
    changes = AdminChangeLog(config.audit, "postveil portal rekey", command, reason)

    def record(key_id: str) -> None:
        changes.record(ABANDON_ACTION, [config.portal.store_directory], key_id)

    try:
        abandoned = store.abandon_rotation(record)
    except AdminAuditError as exc:
        print(f"postveil portal rekey: {exc}; nothing was changed", file=sys.stderr)
        return 1
    finally:
        changes.close()

    if abandoned is None:
        print("no rotation is recorded in the store; nothing to do")
        return 0
    print(f"abandoned the rotation to master key id {abandoned.key_id}")
    if abandoned.restored is None:
        print("no rotation is recorded in the store any more")
    else:
        print(
            f"the store is back at master key id {abandoned.restored}, the key of the "
            "rotation before"
        )
    for key_id in abandoned.unretired:
        print(f"master key id {key_id} is no longer retired")
    print_key_counts(store)
    return 0


def print_retired(key_ids: list[str]) -> None:
    if key_ids:
        print(
            "retired master key id(s) "
            + ", ".join(key_ids)
            + ": portal.key_file may no longer name them"
        )


def print_key_counts(store: PortalStore) -> None:
    """Print the stored messages by master key id, and which previous key files no
    message needs any more (the table of ``status`` and ``rekey``)."""
    keyring = store.keyring
    counts = store.key_counts()

    print("messages by master key id:")
    for key in keyring.keys:
        role = "current" if key is keyring.current else "previous"
        print(f"  {key.key_id}  {counts.pop(key.key_id, 0):6d}  {role}: {key.source}")
    unrecorded = counts.pop(None, 0)
    missing = sorted(key_id for key_id in counts if key_id is not None)
    for key_id in missing:
        print(f"  {key_id}  {counts[key_id]:6d}  no configured key file has this key")
    if unrecorded:
        print(f"  {'(none)':16}  {unrecorded:6d}  no key id recorded")

    if missing:
        print(
            "No configured key file opens the messages under key id "
            + ", ".join(missing)
            + ": add the file with that key to portal.previous_key_files ('postveil portal "
            "create-key' printed each key's id), or revoke those messages. Keep every "
            "previous key file until then."
        )
        return
    if keyring.current.key_id in store.retired_key_ids():
        print(
            f"portal.key_file has master key id {keyring.current.key_id}, which a rotation "
            "retired: point portal.key_file at the newest key. Until then the intake "
            "defers every message, postveil-portal does not start and rekey changes "
            "nothing."
        )
        return
    if not keyring.previous:
        return
    if store.rotated_key_id() != keyring.current.key_id:
        print(
            "Run 'postveil portal rekey' before removing a file from portal.previous_key_files: "
            "until then the intake may still store messages under an old key."
        )
        return
    # A row without a key id may need any of the keys.
    if unrecorded:
        return
    needed = store.key_counts()
    unneeded = [key.path for key in keyring.previous if key.key_id not in needed]
    if unneeded:
        print(
            "No message needs these previous key files any more. Remove them from "
            "portal.previous_key_files, restart postveil-portal, then delete them: "
            + ", ".join(unneeded)
        )
