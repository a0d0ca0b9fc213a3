"""How two faces are scored: cosine similarity, or cosine with cohort normalisation.

Both are score functions with one signature, ``score(a, b) -> (len(a), len(b))`` over stacks of
embeddings, so the service, the evaluation and the metrics use whichever the model card names.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

ScoreFunction = Callable[[np.ndarray, np.ndarray], np.ndarray]


def cosine_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of every row of ``a`` with every row of ``b``; NaN rows give ``-inf``."""
    a = np.asarray(a, np.float32)
    b = np.asarray(b, np.float32)
    an = a / np.linalg.norm(a, axis=1, keepdims=True)
    bn = b / np.linalg.norm(b, axis=1, keepdims=True)
    sims = an @ bn.T
    sims[np.isnan(sims)] = -np.inf
    return sims


def top_cohort_cosines(x: np.ndarray, cohort: np.ndarray, top_k: int) -> np.ndarray:
    """``(len(x), k)``: each face's ``k = min(top_k, len(cohort))`` highest cosines to the cohort
    (unordered; ``-inf`` rows for NaN faces)."""
    sims = cosine_matrix(x, cohort)
    k = min(top_k, sims.shape[1])
    return np.partition(sims, sims.shape[1] - k, axis=1)[:, -k:]


def cohort_normalised(cohort: np.ndarray, top_k: int) -> ScoreFunction:
    """A score function: cosine minus the mean of both faces' ``top_k`` highest cosines to ``cohort``.

    Cohort (adaptive) score normalisation, from speaker verification: a face that resembles many
    cohort faces (a common look) needs more evidence to match. Our cohort is the embedder's own
    training identities (the class centres of its margin head). A NaN row keeps its ``-inf`` scores."""
    if top_k < 1:
        raise ValueError(f"top_k={top_k} must be at least 1")
    cohort = np.asarray(cohort, np.float32)
    # Normalised once, not at every call (8,153 x 512 centres: the division cost as much as the product).
    unit_cohort = np.ascontiguousarray((cohort / np.linalg.norm(cohort, axis=1, keepdims=True)).T)
    k = min(top_k, len(cohort))

    def cohort_mean(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        sims = (x / np.linalg.norm(x, axis=1, keepdims=True)) @ unit_cohort
        sims[np.isnan(sims)] = -np.inf
        top = np.partition(sims, sims.shape[1] - k, axis=1)[:, -k:]
        return np.where(np.isfinite(top).all(1), top.mean(1), 0.0).astype(np.float32)

    def score(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return cosine_matrix(a, b) - 0.5 * (cohort_mean(a)[:, None] + cohort_mean(b)[None, :])

    # Each face's term depends on that face alone: a caller scoring the same stored faces again and
    # again (the service's gallery) can keep them, score = cosine - 0.5 * (term(a) + term(b)).
    score.face_terms = cohort_mean
    return score
