"""Face alignment: a similarity transform of five points onto the ArcFace 112x112 template.

The training crops were made exactly this way, so serving and training see the same crops. A
68-point aligner of our own will plug in here by producing the same five points.
"""

from __future__ import annotations

import cv2
import numpy as np

#: The standard ArcFace template for 112x112 crops: left eye, right eye, nose tip, mouth corners.
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)
CROP_SIZE = 112


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping ``src`` onto ``dst``.

    Umeyama's closed form, so the result is deterministic (OpenCV's estimator uses random
    sampling). Returns a 2x3 matrix for ``cv2.warpAffine``.
    """
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sigma, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1  # forbid reflections
    rot = u @ np.diag(sign) @ vt
    scale = (sigma * sign).sum() / s.var(0).sum()
    shift = mu_d - scale * rot @ mu_s
    return np.hstack([scale * rot, shift[:, None]])


class FivePointAligner:
    """Warps a face to the 112x112 ArcFace template from its five points."""

    size = CROP_SIZE

    def align(self, image: np.ndarray, points: np.ndarray) -> np.ndarray:
        """Aligned ``(112, 112, 3)`` crop of the face whose five points are ``points`` (5, 2)."""
        matrix = similarity_transform(points, ARCFACE_TEMPLATE)
        # Black borders, as the usual ArcFace crop tools (and so our training crops) make them.
        return cv2.warpAffine(
            image, matrix, (CROP_SIZE, CROP_SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
        )
