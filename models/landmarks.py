"""The 68-point (iBUG 300-W) landmark convention: the five template points derived from it, and the
index permutation a horizontal flip applies to it."""

from __future__ import annotations

import numpy as np

#: After mirroring an image, point i of the mirrored face is point FLIP_68[i] of the original.
FLIP_68 = np.array(
    list(range(16, -1, -1))  # jaw 0-16
    + list(range(26, 16, -1))  # brows 17-26
    + [27, 28, 29, 30]  # nose bridge
    + [35, 34, 33, 32, 31]  # nostrils 31-35
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]  # eyes 36-47
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]  # outer lips 48-59
    + [64, 63, 62, 61, 60, 67, 66, 65]
)  # inner lips 60-67


def five_from_68(points: np.ndarray) -> np.ndarray:
    """``(68, 2)`` -> ``(5, 2)`` in the ArcFace template order: left eye centre (mean of 36-41), right
    eye centre (42-47), nose tip (30), left and right mouth corners (48, 54). Left/right are as seen
    in the image, as MTCNN's five points are."""
    p = np.asarray(points, np.float32)
    return np.stack([p[36:42].mean(0), p[42:48].mean(0), p[30], p[48], p[54]])
