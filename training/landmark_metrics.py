"""Landmark accuracy as pure numpy functions: NME (inter-ocular, outer eye corners 36 and 45), the
failure rate at a threshold, and the cumulative error distribution."""

from __future__ import annotations

import numpy as np


def nme(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per-face normalised mean error in percent: mean point-to-point distance over the distance
    between the outer eye corners (points 36 and 45). ``pred``, ``truth``: ``(n, 68, 2)``."""
    pred, truth = np.asarray(pred, np.float64), np.asarray(truth, np.float64)
    if pred.shape != truth.shape or pred.shape[-2:] != (68, 2):
        raise ValueError(f"expected matching (n, 68, 2) arrays, got {pred.shape} and {truth.shape}")
    inter_ocular = np.linalg.norm(truth[:, 36] - truth[:, 45], axis=1)
    return 100.0 * np.linalg.norm(pred - truth, axis=2).mean(1) / inter_ocular


def failure_rate(errors: np.ndarray, threshold: float = 8.0) -> float:
    """Share of faces whose NME (percent) is above ``threshold``."""
    return float(np.mean(np.asarray(errors) > threshold))


def cumulative_error(errors: np.ndarray, max_error: float = 10.0, num: int = 101) -> tuple[np.ndarray, np.ndarray]:
    """(NME grid from 0 to ``max_error``, share of faces with NME at most each value)."""
    grid = np.linspace(0.0, max_error, num)
    errors = np.sort(np.asarray(errors))
    return grid, np.searchsorted(errors, grid, side="right") / len(errors)
