"""Fixed inference types: one image in, ``list[Face]`` out (``[]`` when there is none)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Detection:
    """A detected face: box ``(x1, y1, x2, y2)`` in pixels, score in [0, 1], five points (5, 2)
    in the order left eye, right eye, nose tip, left mouth corner, right mouth corner."""

    box: np.ndarray
    score: float
    points: np.ndarray


@dataclass
class Face(Detection):
    """A detected face with its L2-normalised embedding; ``points`` are the five points it was aligned
    with, and ``landmarks68`` its 68 points when the 68-point aligner is in use (else ``None``)."""

    embedding: np.ndarray
    landmarks68: np.ndarray | None = None
