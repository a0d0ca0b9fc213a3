"""The vector index: FAISS inner-product search over unit vectors, ids = face row primary keys.

The database is the source of truth; the index file is a cache of it. Which FAISS index is used
depends on the gallery's size (chosen by measurement, ``bench/index_scale.py``):

- up to ``exact_max`` vectors: exact search (``IndexFlatIP`` with an id map);
- beyond: an HNSW graph over fp16 vectors (``IndexHNSWSQ``, QT_fp16, ``M`` links per node,
  ``ef_search`` candidates per query). fp16 keeps similarities exact to ~1e-3 at half the memory of
  float32. An inverted file (IVF) was measured too and needed ~10% of its lists probed for 0.97
  recall@1 on realistically structured embeddings, so it loses to HNSW at every size.
  FAISS's HNSW cannot remove nodes: a removed id's stored vector is zeroed at once (the embedding
  is gone), the id becomes a tombstone excluded from every search by an id selector, and the graph
  is rebuilt once tombstones pass a tenth of it.

Saving writes the index and then a small JSON header beside it (``<index>.json``: database
generation, vector count, kind, tombstones, CRC-32 of the index file), each atomically. At start-up the index
is reused only if the CRC matches the file and its generation is one the database's change log
can continue from (``app.services.replication``); otherwise it is rebuilt from the database. A
crash between the two renames leaves a header whose CRC does not match: rebuilt, never wrongly reused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import faiss
import numpy as np

from app.services.index_params import IndexParams

log = logging.getLogger(__name__)


def checksum(ids: np.ndarray, vectors: np.ndarray) -> str:
    """SHA-256 of the (id, vector) pairs sorted by id: equal for the same content in any order."""
    order = np.argsort(ids, kind="stable")
    h = hashlib.sha256(np.ascontiguousarray(ids[order], np.int64).tobytes())
    h.update(np.ascontiguousarray(vectors[order], np.float32).tobytes())
    return h.hexdigest()


def file_crc32(path: Path, chunk: int = 1 << 24) -> int:
    crc = 0
    with open(path, "rb") as f:
        while block := f.read(chunk):
            crc = zlib.crc32(block, crc)
    return crc


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)``, fsync, rename over ``path``: a crash leaves the old file or the new one."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    tmp.replace(path)


class SnapshotRead:
    """A saved index file being read by FAISS and checksummed, each in a background thread.

    Both go through the whole file with the GIL released, so the two run at once (a 200k-face HNSW
    file, 261 MB: 0.13-0.19 s to checksum, 0.22 to read, 0.23-0.25 for both) and, started early,
    alongside whatever the process does meanwhile: the service starts the read of its snapshot
    before it migrates the database and loads the models (``app.main.build_service``, where it is
    measured). The read is thrown away if the checksum or the header then disagrees. The file must
    not change meanwhile: a process reads and writes only its own slot's file.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="index-read")
        self._crc = pool.submit(file_crc32, self.path)
        self._index = pool.submit(faiss.read_index, str(self.path))
        pool.shutdown(wait=False)  # the two reads go on; the threads end with them

    def result(self) -> tuple[faiss.Index | None, int | None, str | None]:
        """Waits for both: (the index or ``None``, the file's CRC-32 or ``None``, why it could not be read)."""
        try:
            crc = self._crc.result()
        except OSError:
            crc = None
        try:
            return self._index.result(), crc, None
        except (OSError, RuntimeError) as exc:
            return None, crc, str(exc)


class VectorIndex:
    """Top-k inner-product search with explicit ids, persisted atomically to ``path``."""

    def __init__(self, dim: int, path: Path, params: IndexParams | None = None) -> None:
        self.dim = dim
        self.path = Path(path)
        self.params = params or IndexParams()
        self.index = self._exact()
        self.tombstones: set[int] = set()  # removed ids still in an HNSW graph
        self._excluded = None  # the search-time id selector for the tombstones, built once per change
        self.revived = False  # a tombstoned id was added again: only a rebuild can serve it right

    # -- kinds -------------------------------------------------------------------------------
    def _exact(self) -> faiss.Index:
        return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))

    def _hnsw(self) -> faiss.Index:
        graph = faiss.IndexHNSWSQ(
            self.dim, faiss.ScalarQuantizer.QT_fp16, self.params.hnsw_m, faiss.METRIC_INNER_PRODUCT
        )
        graph.hnsw.efConstruction = self.params.ef_construction
        graph.hnsw.efSearch = self.params.ef_search
        return faiss.IndexIDMap2(graph)

    @property
    def kind(self) -> str:
        return "hnsw" if isinstance(faiss.downcast_index(self.index.index), faiss.IndexHNSW) else "exact"

    def wanted_kind(self, n: int) -> str:
        return "hnsw" if n > self.params.exact_max else "exact"

    def needs_rebuild(self) -> bool:
        """The gallery changed kind (exact past ``exact_max``; HNSW below half of it), or a tenth of
        the graph is tombstones."""
        n = len(self)
        if self.kind == "exact":
            return n > self.params.exact_max
        return n <= self.params.exact_max // 2 or len(self.tombstones) > 0.1 * self.index.ntotal or self.revived

    def set_ef_search(self, ef: int) -> None:
        if self.kind == "hnsw":
            faiss.downcast_index(self.index.index).hnsw.efSearch = ef

    # -- contents ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.index.ntotal - len(self.tombstones)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if not len(ids):
            return
        ids = np.asarray(ids, np.int64)
        if self.tombstones.intersection(ids.tolist()):
            # SQLite may hand out a removed row's id again; the graph still holds the old vector under
            # it, so the id cannot be revived in place: the caller must rebuild (see needs_rebuild).
            self.revived = True
        self.index.add_with_ids(np.ascontiguousarray(vectors, np.float32), ids)

    def remove(self, ids: np.ndarray) -> None:
        if not len(ids):
            return
        if self.kind == "exact":
            self.index.remove_ids(np.asarray(ids, np.int64))
            return
        # Only ids the graph holds become tombstones (a change-log removal may name a face this
        # index never had: another model's, or one added and removed while it was away).
        held = faiss.vector_to_array(self.index.id_map)
        rows = np.flatnonzero(np.isin(held, np.asarray(ids, np.int64)))
        self.tombstones.update(int(i) for i in held[rows])
        self._excluded = None
        # The graph keeps a node per tombstone, but not the person's vector: its stored code is
        # zeroed, so a deleted face's embedding is gone from memory and from the saved file at once.
        storage = faiss.downcast_index(faiss.downcast_index(self.index.index).storage)
        codes = faiss.rev_swig_ptr(storage.codes.data(), storage.codes.size())
        size = storage.code_size
        for row in rows:
            codes[row * size : (row + 1) * size] = 0

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (similarities, ids) per query row; ids are -1 past the index's size."""
        k = max(1, min(k, len(self)))
        if len(self) == 0:
            n = len(vectors)
            return np.full((n, 1), -np.inf, np.float32), np.full((n, 1), -1, np.int64)
        queries = np.ascontiguousarray(vectors, np.float32)
        if self.tombstones:
            if self._excluded is None:  # up to a tenth of the graph: not rebuilt on every query
                dead = faiss.IDSelectorBatch(np.fromiter(self.tombstones, np.int64, len(self.tombstones)))
                self._excluded = (dead, faiss.IDSelectorNot(dead))  # keep both alive: Not refers to dead
            params = faiss.SearchParametersHNSW(
                sel=self._excluded[1], efSearch=faiss.downcast_index(self.index.index).hnsw.efSearch
            )
            return self.index.search(queries, k, params=params)
        return self.index.search(queries, k)

    def ids(self) -> np.ndarray:
        ids = faiss.vector_to_array(self.index.id_map).astype(np.int64)
        return ids[~np.isin(ids, list(self.tombstones))] if self.tombstones else ids

    def contents(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) held by the index (fp16-rounded vectors in an HNSW graph)."""
        ids = self.ids()
        if not len(ids):
            return ids, np.zeros((0, self.dim), np.float32)
        return ids, np.stack([self.index.reconstruct(int(i)) for i in ids])

    def checksum(self) -> str:
        return checksum(*self.contents())

    # -- persistence -------------------------------------------------------------------------
    @property
    def header_path(self) -> Path:
        return self.path.with_name(self.path.name + ".json")

    def save(self, generation: int) -> None:
        """Write the index, then its header (generation, count, CRC), each atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.path, lambda tmp: faiss.write_index(self.index, str(tmp)))
        header = {
            "generation": int(generation),
            "count": len(self),
            "kind": self.kind,
            "dim": self.dim,
            "tombstones": sorted(self.tombstones),
            "crc32": file_crc32(self.path),
        }
        _atomic_write(self.header_path, lambda tmp: tmp.write_text(json.dumps(header)))

    def rebuild(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """A fresh index of the kind the size calls for, holding exactly ``(ids, vectors)``."""
        self.index = self._hnsw() if self.wanted_kind(len(ids)) == "hnsw" else self._exact()
        self.tombstones, self.revived, self._excluded = set(), False, None
        self.add(ids, vectors)

    def load_or_rebuild(self, generation: int, count: int, fetch: Callable[[], tuple[np.ndarray, np.ndarray]]) -> bool:
        """Reuse the saved index if its header matches ``generation`` and ``count`` and its CRC the
        file; else rebuild from ``fetch()`` (ids and vectors) and save. (The service itself loads a
        snapshot of any generation the change log can continue: :meth:`load`.)

        Returns:
            True when the saved index was reused, False when it was rebuilt.
        """

        def exact(saved: int) -> str | None:
            if saved != generation:
                return f"saved index is of generation {saved}; wanted {generation}"
            return None

        if self.load(exact) is not None and len(self) == count:
            log.info("index %s matches (generation %d, %d vectors, %s)", self.path, generation, count, self.kind)
            return True
        log.warning("rebuilding the index (%d vectors)", count)
        ids, vectors = fetch()
        self.rebuild(ids, vectors)
        self.save(generation)
        return False

    def load(self, usable: Callable[[int], str | None], read: SnapshotRead | None = None) -> int | None:
        """Load the saved index if its CRC matches the file and ``usable(its generation)`` has no
        objection (returns ``None``); returns that generation, or ``None`` (logged why) if not loaded.

        ``read``: this file's :class:`SnapshotRead`, when it was started earlier (else one is started now)."""
        if read is not None and read.path != self.path:
            raise ValueError(f"a read of {read.path} cannot load the index at {self.path}")
        reason, header = self._read_header()
        if reason is None:
            reason = usable(int(header["generation"]))
        if reason is None:
            loaded, crc, error = (read or SnapshotRead(self.path)).result()
            if error is not None:
                reason = f"saved index is unreadable ({error})"
            if crc != header.get("crc32"):
                reason = "saved index file does not match its checksum (corrupt, or a save was interrupted)"
            if reason is None:
                tombstones = set(header.get("tombstones", []))
                if loaded.d != self.dim or loaded.ntotal - len(tombstones) != header.get("count"):
                    reason = "saved index has the wrong dimension or size"
        if reason is not None:
            log.warning("not using the saved index %s: %s", self.path, reason)
            return None
        self.index, self.tombstones, self._excluded, self.revived = loaded, tombstones, None, False
        self.set_ef_search(self.params.ef_search)
        return int(header["generation"])

    def _read_header(self) -> tuple[str | None, dict]:
        """(why the saved index cannot be used, or ``None``; its header). The file's checksum is
        checked by :meth:`load`, as it reads the file."""
        if not self.path.exists() or not self.header_path.exists():
            return f"no saved index at {self.path}", {}
        try:
            header = json.loads(self.header_path.read_text())
        except (OSError, ValueError) as exc:
            return f"saved index header is unreadable ({exc})", {}
        if header.get("dim") != self.dim or not isinstance(header.get("generation"), int):
            return f"saved index header is for dimension {header.get('dim')}, not {self.dim}", {}
        return None, header
