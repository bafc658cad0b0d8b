"""Postfix address maps that rewrite recipients after postveil-milter has routed them.

The milter routes each recipient as the client sent it at RCPT TO. Postfix's cleanup
service applies these maps later, so a recipient that a map moves to another domain
is delivered under that domain's TLS policy, and a message routed by ``tls`` can
leave in plaintext. ``postveil check-config`` and postveil-milter's start warn when
the local Postfix sets any of them.
"""

from __future__ import annotations

import subprocess

REWRITE_PARAMETERS = ("canonical_maps", "recipient_canonical_maps", "virtual_alias_maps")
"""Postfix parameters whose maps rewrite envelope recipients in cleanup."""

POSTCONF_TIMEOUT = 10.0


class PostconfError(Exception):
    """postconf could not be run or did not print the parameters."""


def recipient_rewrite_parameters(config_directory: str | None = None) -> list[str]:
    """Return the names of the ``REWRITE_PARAMETERS`` that Postfix sets to a map.

    Reads Postfix's configuration with ``postconf -x`` (from ``config_directory``, else
    postconf's default). Raises PostconfError when postconf is missing, fails or prints
    something else than the parameters.
    """
    command = ["postconf"]
    if config_directory is not None:
        command += ["-c", config_directory]
    command += ["-x", *REWRITE_PARAMETERS]
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=POSTCONF_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PostconfError(f"cannot run postconf: {exc}") from exc
    if result.returncode != 0:
        # postconf's last line names the cause ("fatal: open /etc/postfix/main.cf: ...").
        lines = result.stderr.strip().splitlines() or [f"exit status {result.returncode}"]
        raise PostconfError(f"postconf failed: {lines[-1]}")
    values: dict[str, str] = {}
    for line in result.stdout.splitlines():
        name, separator, value = line.partition(" = ")
        if not separator:
            # postconf prints "name =" for an empty value.
            name, value = line.rstrip(" ="), ""
        values[name.strip()] = value.strip()
    missing = [name for name in REWRITE_PARAMETERS if name not in values]
    if missing:
        raise PostconfError(f"postconf did not print {', '.join(missing)}")
    return [name for name in REWRITE_PARAMETERS if values[name]]


def rewrite_warning(parameters: list[str]) -> str:
    """Return the warning for a Postfix that sets ``parameters`` (non-empty)."""
    return (
        f"Postfix sets {', '.join(parameters)}, which can rewrite recipients after "
        "postveil-milter has routed them. A recipient that a map moves to another domain "
        "is delivered under that domain's TLS policy, so a message routed by tls can leave "
        "in plaintext. Keep rewrites of recipients to other domains out of the path of "
        "inspected mail (docs/tls-policy.md)."
    )
