"""The private protocol between postveil-classifierd and its clients.

On a unix socket, each request and each reply is a frame: a 4-byte big-endian length
and that many bytes of UTF-8 JSON. A request is ``{"text": ...}``. The reply is
``{"probability": P, "threshold": T}`` (T is the threshold the weights were trained
with) or ``{"error": ...}``. A connection may carry several requests in turn.
"""

from __future__ import annotations

import json
import struct
from typing import Any

FRAME_HEADER = struct.Struct("!I")
MAX_FRAME = 1 << 20
"""Largest frame either side accepts (1 MiB)."""


def encode_frame(payload: dict[str, Any]) -> bytes:
    """Return ``payload`` as a frame; raises ValueError when it exceeds MAX_FRAME."""
    data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    if len(data) > MAX_FRAME:
        raise ValueError(f"frame of {len(data)} bytes exceeds {MAX_FRAME}")
    return FRAME_HEADER.pack(len(data)) + data


def decode_frame_body(data: bytes) -> dict[str, Any]:
    """Parse a frame's body; raises ValueError when it is not a JSON object."""
    try:
        value = json.loads(data.decode("utf-8"))
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    if not isinstance(value, dict):
        raise ValueError("expected a JSON object")
    return value
