"""The ``logging`` section."""

from __future__ import annotations

from typing import Literal

from postveil.config.types import Section

Level = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class LoggingSection(Section):
    level: Level = "INFO"
    target: Literal["stderr", "syslog"] = "stderr"
    """stderr is collected by journald under systemd; syslog writes to ``syslog_socket``."""

    syslog_socket: str = "/dev/log"
    syslog_facility: Literal[
        "mail", "daemon", "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7"
    ] = "mail"
    levels: dict[str, Level] = {}
    """Per-logger overrides, for example ``{postveil.policyd: DEBUG}``."""
