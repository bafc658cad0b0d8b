"""postveil configuration: one YAML file parsed once into immutable typed objects.

``load_config(path)`` returns a frozen :class:`Config` or raises
:class:`~postveil.errors.ConfigError` listing every problem with its YAML path and
line. A reload builds a new object and swaps it in; nothing mutates a loaded config.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from pydantic import Field, ValidationError

from postveil.config.audit import AuditSection
from postveil.config.classifier import ClassifierSection
from postveil.config.detection import DetectionSection
from postveil.config.dns import DnsSection
from postveil.config.loader import YamlProblems, format_validation_errors, load_yaml
from postveil.config.logging import LoggingSection
from postveil.config.milter import MilterSection
from postveil.config.pgp import PgpSection
from postveil.config.policyd import PolicydSection
from postveil.config.portal import PortalSection
from postveil.config.routing import RoutingSection
from postveil.config.smime import SmimeSection
from postveil.config.types import Section
from postveil.errors import ConfigError

DEFAULT_CONFIG_PATH = "/etc/postveil/postveil.yaml"
CONFIG_ENV = "POSTVEIL_CONFIG"


class Config(Section):
    milter: MilterSection = MilterSection()
    policyd: PolicydSection = PolicydSection()
    detection: DetectionSection = DetectionSection()
    classifier: ClassifierSection = ClassifierSection()
    routing: RoutingSection = RoutingSection()
    smime: SmimeSection = SmimeSection()
    pgp: PgpSection = PgpSection()
    portal: PortalSection = PortalSection()
    audit: AuditSection = AuditSection()
    dns: DnsSection = DnsSection()
    logging: LoggingSection = LoggingSection()

    source: str = Field(default="<defaults>", exclude=True)
    """Path the configuration was read from (not a YAML key)."""

    version: str = Field(default="", exclude=True)
    """First 16 hex digits of the file's SHA-256, recorded with every decision."""

    @property
    def uses_only_defaults(self) -> bool:
        """True when the file set no key at all (empty, only comments, or ``{}``)."""
        return not (self.model_fields_set - {"source", "version"})


def default_config_path() -> str:
    """Return $POSTVEIL_CONFIG, or DEFAULT_CONFIG_PATH when it is unset or empty (as
    ``POSTVEIL_CONFIG=`` in a systemd environment file leaves it)."""
    return os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read and validate the configuration file at ``path``.

    Raises ConfigError naming every invalid, missing-but-required or unknown key.
    """
    source = str(path) if path is not None else default_config_path()
    try:
        raw = Path(source).read_bytes()
    except OSError as exc:
        raise ConfigError(
            source, [f"{source}: failed to read configuration: {exc.strerror}"], unreadable=True
        ) from exc
    return parse_config(raw, source)


def parse_config(raw: bytes, source: str = "<string>") -> Config:
    """Validate configuration bytes; ``source`` names them in error messages."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(source, [_describe_bad_utf8(raw, exc, source)]) from exc
    try:
        data, positions = load_yaml(text, source)
    except YamlProblems as exc:
        raise ConfigError(source, exc.problems) from exc
    lines = positions.lines
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, [f"{source}:1: (top level): expected a mapping of sections"])
    for reserved in ("source", "version"):
        if reserved in data:
            raise ConfigError(source, [f"{source}:{lines.get((reserved,), 1)}: {reserved}: unknown key"])
    version = hashlib.sha256(raw).hexdigest()[:16]
    try:
        return Config.model_validate({**data, "source": source, "version": version})
    except ValidationError as exc:
        raise ConfigError(source, format_validation_errors(exc, source, positions, Config)) from exc


def _describe_bad_utf8(raw: bytes, exc: UnicodeDecodeError, source: str) -> str:
    # The bytes before the first invalid one decode, so the column counts characters.
    before = raw[: exc.start]
    line = before.count(b"\n") + 1
    column = len(before[before.rfind(b"\n") + 1 :].decode("utf-8")) + 1
    return (
        f"{source}:{line}: not valid UTF-8 at column {column} (byte 0x{raw[exc.start]:02x}); "
        "save the file as UTF-8"
    )
