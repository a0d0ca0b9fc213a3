"""Fixed inference types: one image in, ``list[Face]`` out (``[]`` when there is none)."""

from __future__ import annotations

from dataclasses import dataclass, replace

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

    def rescaled(self, factor: float) -> "Face":
        """The same face with its box and points multiplied by ``factor`` (e.g. back to the full
        photo's pixels after working on a reduced decode)."""
        return replace(
            self,
            box=self.box * factor,
            points=self.points * factor,
            landmarks68=None if self.landmarks68 is None else self.landmarks68 * factor,
        )
