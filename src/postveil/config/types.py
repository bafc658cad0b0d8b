"""Typed scalar values used in the configuration: durations, sizes, host:port pairs."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|KiB|MiB|GiB)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
}


MAX_DURATION = 366 * 86400.0
"""Maximum duration any key accepts, in seconds (366 days). Larger values are typing
errors, and some would overflow the C integers that libraries take (libmilter's timeout)."""

_COMPOUND_DURATION_RE = re.compile(r"^\s*(?:\d+(?:\.\d+)?\s*(?:ms|s|m|h|d|w)\s*){2,}$")
_DURATION_PART_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")
_DURATION_EXPECTED = "expected a number with a unit (ms, s, m, h, d or w), for example '30s' or '1d'"


def parse_duration(value: Any) -> float:
    """Convert ``30s``, ``5m``, ``1.5h``, ``1d``, ``250ms`` or ``2w`` to seconds.

    A bare number is rejected because its unit would be a guess. Values above
    :data:`MAX_DURATION` are rejected. A combination such as ``1h30m`` is rejected
    with the single-unit spelling (``90m``) in the message.
    """
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(f"invalid duration {value!r}: {_DURATION_EXPECTED}")
    match = _DURATION_RE.match(value)
    if match is None:
        if _COMPOUND_DURATION_RE.match(value):
            raise ValueError(
                f"invalid duration {value!r}: use a single unit, for example "
                f"'{_single_unit_spelling(value)}'"
            )
        raise ValueError(f"invalid duration {value!r}: {_DURATION_EXPECTED}")
    seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if seconds > MAX_DURATION:
        raise ValueError(f"invalid duration {value!r}: the maximum is 366d")
    return seconds


def _single_unit_spelling(value: str) -> str:
    """Spell a compound duration such as ``1h30m`` in the largest whole unit (``90m``)."""
    milliseconds = round(
        sum(float(number) * _DURATION_UNITS[unit] * 1000 for number, unit in _DURATION_PART_RE.findall(value))
    )
    for unit in ("w", "d", "h", "m", "s"):
        unit_ms = round(_DURATION_UNITS[unit] * 1000)
        if milliseconds % unit_ms == 0:
            return f"{milliseconds // unit_ms}{unit}"
    return f"{milliseconds}ms"


def parse_size(value: Any) -> int:
    """Convert ``25MB``, ``512KiB`` or a plain integer (bytes) to bytes.

    KB, MB and GB are decimal (1000); KiB, MiB and GiB are binary (1024).
    """
    if isinstance(value, bool):
        raise ValueError(f"invalid size {value!r}: expected bytes or a number with a unit")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"invalid size {value!r}: must not be negative")
        return value
    if not isinstance(value, str) or (match := _SIZE_RE.match(value)) is None:
        raise ValueError(
            f"invalid size {value!r}: expected bytes or a number with a unit "
            "(B, KB, MB, GB, KiB, MiB, GiB), for example '25MB'"
        )
    unit = (match.group(2) or "b").lower()
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def parse_host_port(value: Any, default_port: int) -> tuple[str, int]:
    """Split ``host``, ``host:port``, ``[v6]`` or ``[v6]:port`` into a (host, port) pair."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"invalid address {value!r}: expected 'host' or 'host:port'")
    text = value.strip()
    if text.startswith("["):
        host, closed, rest = text[1:].partition("]")
        if not closed:
            raise ValueError(f"invalid address {value!r}: missing ']' after the IPv6 address")
        port_text = rest[1:] if rest.startswith(":") else ""
        if rest and not rest.startswith(":"):
            raise ValueError(f"invalid address {value!r}: expected '[v6]' or '[v6]:port'")
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host, port_text = text, ""
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"invalid port in {value!r}: expected 1-65535")
    return host, int(port_text)


Duration = Annotated[float, BeforeValidator(parse_duration)]
"""Seconds, written in the YAML file with a unit (``30s``, ``1d``)."""

Size = Annotated[int, BeforeValidator(parse_size)]
"""Bytes, written in the YAML file as ``25MB`` or a plain integer."""


def _require_positive_duration(seconds: float) -> float:
    if seconds <= 0:
        raise ValueError(f"invalid duration {seconds:g}s: must be greater than 0, for example '30s'")
    return seconds


def _require_positive_size(size: int) -> int:
    if size <= 0:
        raise ValueError(f"invalid size {size}: must be greater than 0, for example '25MB'")
    return size


PositiveDuration = Annotated[float, BeforeValidator(parse_duration), AfterValidator(_require_positive_duration)]
"""A :data:`Duration` that must be greater than zero."""

PositiveSize = Annotated[int, BeforeValidator(parse_size), AfterValidator(_require_positive_size)]
"""A :data:`Size` that must be greater than zero."""


class Section(BaseModel):
    """Base for every configuration section: immutable, and unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def check_socket_mode(value: object) -> object:
    """Validate a unix socket's permissions, written as a quoted octal string ("0660")."""
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError(
            f"invalid socket_mode {value}: expected the mode as a quoted octal string "
            'such as "0660", not a number'
        )
    if not isinstance(value, str):
        raise ValueError(f"invalid socket_mode {value!r}: expected an octal string like '0660'")
    try:
        mode = int(value, 8)
    except (TypeError, ValueError):
        raise ValueError(f"invalid socket_mode {value!r}: expected an octal string like '0660'") from None
    if not 0 <= mode <= 0o777:
        raise ValueError(f"invalid socket_mode {value!r}: expected 0000-0777")
    return value
