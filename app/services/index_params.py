"""How the vector index is chosen and searched; apart from ``index.py`` so that reading the
settings (``app.config``) does not load FAISS."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class IndexParams:
    """How the index is chosen and searched (defaults measured by ``bench/index_scale.py``)."""

    exact_max: int = 20_000
    hnsw_m: int = 32
    ef_construction: int = 40
    ef_search: int = 384
