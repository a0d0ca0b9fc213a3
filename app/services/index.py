"""The vector index: FAISS inner-product search over unit vectors, ids = face row primary keys.

The database is the source of truth; the index file is a cache of it, checked at start-up by
count and checksum and rebuilt when they disagree (or when the file is missing or unreadable).
"""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import faiss
import numpy as np

log = logging.getLogger(__name__)


def checksum(ids: np.ndarray, vectors: np.ndarray) -> str:
    """SHA-256 of the (id, vector) pairs sorted by id: equal for the same content in any order."""
    order = np.argsort(ids, kind="stable")
    h = hashlib.sha256(np.ascontiguousarray(ids[order], np.int64).tobytes())
    h.update(np.ascontiguousarray(vectors[order], np.float32).tobytes())
    return h.hexdigest()


class VectorIndex:
    """Exact inner-product search with explicit ids, persisted atomically to ``path``."""

    def __init__(self, dim: int, path: Path) -> None:
        self.dim = dim
        self.path = Path(path)
        self.index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))

    def __len__(self) -> int:
        return self.index.ntotal

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self.index.add_with_ids(np.ascontiguousarray(vectors, np.float32), np.asarray(ids, np.int64))

    def remove(self, ids: np.ndarray) -> None:
        if len(ids):
            self.index.remove_ids(np.asarray(ids, np.int64))

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (similarities, ids) per query row; ids are -1 past the index's size."""
        k = max(1, min(k, len(self)))
        if len(self) == 0:
            n = len(vectors)
            return np.full((n, 1), -np.inf, np.float32), np.full((n, 1), -1, np.int64)
        return self.index.search(np.ascontiguousarray(vectors, np.float32), k)

    def contents(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) held by the index, in insertion order."""
        ids = faiss.vector_to_array(self.index.id_map).astype(np.int64)
        vectors = self.index.index.reconstruct_n(0, len(self)) if len(self) else np.zeros((0, self.dim), np.float32)
        return ids, vectors

    def checksum(self) -> str:
        return checksum(*self.contents())

    def save(self) -> None:
        """Write to a temporary file, fsync, then rename: a crash leaves the old file or the new one."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        faiss.write_index(self.index, str(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        tmp.replace(self.path)

    def rebuild(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self.index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
        self.add(ids, vectors)
        self.save()

    def load_or_rebuild(self, ids: np.ndarray, vectors: np.ndarray) -> bool:
        """Load the saved index if it matches ``(ids, vectors)`` from the database, else rebuild it.

        Returns:
            True when the saved index was reused, False when it was rebuilt.
        """
        expected = checksum(ids, vectors)
        if self.path.exists():
            try:
                loaded = faiss.read_index(str(self.path))
                if loaded.d == self.dim and isinstance(loaded, faiss.IndexIDMap2):
                    self.index = loaded
                    if len(self) == len(ids) and self.checksum() == expected:
                        log.info("index %s matches the database (%d vectors)", self.path, len(ids))
                        return True
                log.warning("index %s disagrees with the database (%d vs %d vectors or checksum); rebuilding",
                            self.path, len(self), len(ids))
            except RuntimeError as exc:
                log.warning("index %s is unreadable (%s); rebuilding from the database", self.path, exc)
        else:
            log.info("no index at %s; building it from the database (%d vectors)", self.path, len(ids))
        self.rebuild(ids, vectors)
        return False
