"""The ``classifier`` section: whether and how the milter queries postveil-classifierd."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from postveil.config.types import PositiveDuration, Section, check_socket_mode

MAX_SOCKET_PATH = 107
"""Maximum bytes of a unix socket path on Linux: sun_path has 108, one of them the
final NUL."""


class ClassifierSection(Section):
    """A second opinion from a trained model on mail the rules pass (docs/classifier.md)."""

    enabled: bool = False
    """Ask postveil-classifierd about messages the rules do not report. Off by default:
    the daemon needs PyTorch (the ``classifier`` extra) and about 0.6 GB of memory."""

    socket: str = "/run/postveil-classifier/classifier.sock"
    """Absolute path of postveil-classifierd's unix socket."""

    socket_mode: str = "0660"
    """Permissions of the socket, octal. The milter's user must be able to connect."""

    socket_group: str | None = None
    """Group that owns the socket; null keeps the daemon's own group."""

    timeout: PositiveDuration = 5.0
    """Time budget for one reply, connecting included. When the daemon is busy, a
    message waits behind the ones before it."""

    ask: Literal["health", "always"] = "health"
    """Choice of the messages, among those the rules pass, that are sent. ``health``
    sends only those with a condition, drug, procedure, test result or code, clinical
    shorthand or a recipient-health phrase, because each costs tens of milliseconds of
    CPU. ``always`` sends every one."""

    threshold: float | None = None
    """Probability from which the model makes a message sensitive. Null uses the
    threshold chosen when the weights were trained."""

    on_failure: Literal["tempfail", "rules"] = "tempfail"
    """When the daemon does not reply in time: ``tempfail`` defers the message (451) so
    Postfix retries; ``rules`` keeps the rules' verdict and logs a warning."""

    workers: int = Field(default=1, ge=1, le=16)
    """Messages the daemon embeds at once, one CPU core each."""

    weights: str | None = None
    """Path of a weights file written by scripts/train_classifier.py. Null uses the
    weights shipped with postveil."""

    @field_validator("socket")
    @classmethod
    def _check_socket(cls, value: str) -> str:
        if not value.startswith("/") or "\x00" in value:
            raise ValueError(
                f"invalid socket {value!r}: expected an absolute path such as "
                "/run/postveil-classifier/classifier.sock"
            )
        size = len(value.encode("utf-8"))
        if size > MAX_SOCKET_PATH:
            raise ValueError(
                f"invalid socket {value!r}: the path is {size} bytes, and a unix socket's "
                f"path may have at most {MAX_SOCKET_PATH}"
            )
        return value

    @field_validator("threshold", mode="before")
    @classmethod
    def _check_threshold(cls, value: object) -> object:
        if value is None:
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
            raise ValueError(
                f"invalid threshold {value!r}: expected a probability between 0 and 1 "
                "(exclusive), or null for the threshold the weights were trained with"
            )
        return value

    @field_validator("weights")
    @classmethod
    def _check_weights(cls, value: str | None) -> str | None:
        if value is not None and (not value.startswith("/") or "\x00" in value):
            raise ValueError(
                f"invalid weights {value!r}: expected an absolute path (the daemon's "
                "working directory is / under systemd), or null for the shipped weights"
            )
        return value

    _check_mode = field_validator("socket_mode", mode="before")(check_socket_mode)
