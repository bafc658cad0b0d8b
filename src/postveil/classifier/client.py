"""The client of postveil-classifierd (protocol in :mod:`postveil.classifier.protocol`),
and what its reply does to a verdict."""

from __future__ import annotations

import dataclasses
import logging
import math
import socket
import time
from typing import Any

from postveil.classifier.protocol import FRAME_HEADER, MAX_FRAME, decode_frame_body, encode_frame
from postveil.config.classifier import ClassifierSection
from postveil.detection.categories import CLINICAL_CONTEXT, HEALTH, RECIPIENT
from postveil.detection.engine import Detector, Verdict
from postveil.errors import TemporaryFailure

log = logging.getLogger("postveil.classifier")

MAX_TEXT_CHARS = 100_000
"""Characters of a message's text sent. The daemon reads only its first words
(``max_words`` of the weights, 510 for the shipped ones), which fit well within. JSON
writes a control character in 6 bytes, so even a text of nothing else fits a frame."""

ASK_CATEGORIES = (
    (HEALTH - {"treatment", "clinician_id", "care_setting"}) | RECIPIENT | CLINICAL_CONTEXT
)
"""Categories that make a message worth sending when ``classifier.ask`` is ``health``:
a condition, drug, procedure, test result or code, clinical shorthand, or a
recipient-health phrase. Treatment words, clinician ids and care settings alone are
left out, as they weigh little in the rules: the model reported providers' directory
updates (a clinic, an NPI and "referrals") as sensitive."""

RULE = "classifier"
"""The verdict's rule when the model's probability made the message sensitive."""


class ClassifierUnavailable(TemporaryFailure):
    """postveil-classifierd did not reply in time, or replied with an error."""


def _probability_value(value: Any) -> float | None:
    """Return ``value`` as a float when it is a finite JSON number (not a boolean)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


class ClassifierClient:
    """A blocking client with one time budget per request. Threads may share it,
    because each request opens its own connection."""

    def __init__(self, path: str, timeout: float) -> None:
        self.path = path
        self.timeout = timeout

    def probability(self, text: str) -> tuple[float, float]:
        """Return the model's probability that ``text`` is sensitive, and the trained
        threshold. Raises ClassifierUnavailable with the reason."""
        # Lone surrogates (undecodable bytes kept by the extractor) cannot be UTF-8.
        text = text[:MAX_TEXT_CHARS].encode("utf-8", "replace").decode("utf-8")
        reply = self._exchange(text)
        if "error" in reply:
            raise ClassifierUnavailable(f"postveil-classifierd failed: {str(reply['error'])[:200]}")

        probability = _probability_value(reply.get("probability"))
        threshold = _probability_value(reply.get("threshold"))
        if probability is None or threshold is None:
            raise ClassifierUnavailable(
                "invalid reply from postveil-classifierd: no probability and threshold numbers"
            )
        if not (0 <= probability <= 1 and 0 < threshold < 1):
            raise ClassifierUnavailable(
                "invalid reply from postveil-classifierd: value out of range"
            )
        return probability, threshold

    def _exchange(self, text: str) -> dict[str, Any]:
        """Send one request and return the reply, all within ``timeout``."""
        deadline = time.monotonic() + self.timeout
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
                connection.settimeout(self.timeout)
                connection.connect(self.path)
                connection.sendall(encode_frame({"text": text}))
                return decode_frame_body(self._read_frame(connection, deadline))
        except TimeoutError:
            raise ClassifierUnavailable(
                f"no reply from postveil-classifierd within {self.timeout:g}s"
            ) from None
        except OSError as exc:
            raise ClassifierUnavailable(
                f"cannot reach postveil-classifierd at {self.path}: {exc.strerror or exc}"
            ) from exc
        except ValueError as exc:
            raise ClassifierUnavailable(f"invalid reply from postveil-classifierd: {exc}") from exc

    @staticmethod
    def _read_frame(connection: socket.socket, deadline: float) -> bytes:
        header = _read_exactly(connection, FRAME_HEADER.size, deadline)
        (length,) = FRAME_HEADER.unpack(header)
        if length > MAX_FRAME:
            raise ValueError(f"frame of {length} bytes exceeds {MAX_FRAME}")
        return _read_exactly(connection, length, deadline)


def _read_exactly(connection: socket.socket, size: int, deadline: float) -> bytes:
    chunks = []
    while size > 0:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        connection.settimeout(remaining)
        chunk = connection.recv(min(size, 65536))
        if not chunk:
            raise ValueError("connection closed before the reply was complete")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


class SecondOpinion:
    """Ask the classifier about messages the rules pass, as ``classifier`` configures."""

    def __init__(
        self, section: ClassifierSection, detector: Detector, client: ClassifierClient | None = None
    ) -> None:
        self.section = section
        self.detector = detector
        self.client = (
            client if client is not None else ClassifierClient(section.socket, section.timeout)
        )

    def review(self, verdict: Verdict, texts: list[str], *, queue_id: str | None = None) -> Verdict:
        """Return ``verdict``, made sensitive (rule ``classifier``) when the model's
        probability reaches the threshold. Raises ClassifierUnavailable when the daemon
        cannot reply and ``on_failure`` is ``tempfail``. ``queue_id`` names the message
        in the log line of a failure kept by ``on_failure: rules``."""
        if verdict.sensitive:
            return verdict
        if self.section.ask == "health" and ASK_CATEGORIES.isdisjoint(verdict.categories):
            return verdict
        if self.detector.mentions("veterinary", texts):
            # The model reads a vet's note about a named animal as a patient's.
            return verdict

        try:
            probability, trained = self.client.probability("\n".join(texts))
        except ClassifierUnavailable as exc:
            if self.section.on_failure == "tempfail":
                raise
            log.warning(
                "%s: %s; keeping the rules' verdict (classifier.on_failure: rules)",
                queue_id or "-",
                exc,
            )
            return dataclasses.replace(verdict, classifier_error=str(exc))

        threshold = self.section.threshold or trained
        log.debug("classifier probability %.3f, threshold %.3f", probability, threshold)
        if probability < threshold:
            return dataclasses.replace(verdict, classifier=round(probability, 3))
        return dataclasses.replace(
            verdict,
            sensitive=True,
            score=round(probability / threshold, 3),
            rule=RULE,
            classifier=round(probability, 3),
        )
