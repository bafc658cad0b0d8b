"""A configuration for a MessageProcessor with no Postfix and no daemons around it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from postveil.audit import generate_key_file


def write_processor_config(directory: Path, **sections: dict[str, Any]) -> Path:
    """Write ``directory``/postveil.yaml with its state (audit key and trail, GnuPG home,
    certificates, facts cache) under ``directory``, no live TLS lookups and no Postfix
    rewrite maps to read; ``sections`` are added to it."""
    for name in ("audit", "smime"):
        (directory / name).mkdir()
    (directory / "gnupg").mkdir(mode=0o700)
    generate_key_file(directory / "audit.key")
    config: dict[str, Any] = {
        "milter": {
            "socket": f"unix:{directory / 'milter.sock'}",
            "tls_lookup_timeout": "0s",
            "check_recipient_rewrites": False,
            "reinject_store": str(directory / "reinjected.sqlite3"),
        },
        "policyd": {"cache_path": str(directory / "tlsfacts.sqlite3")},
        "pgp": {"gnupg_home": str(directory / "gnupg")},
        "smime": {"certificate_dir": str(directory / "smime")},
        "audit": {"directory": str(directory / "audit"), "key_file": str(directory / "audit.key")},
        **sections,
    }
    path = directory / "postveil.yaml"
    path.write_text(yaml.safe_dump(config))
    return path
