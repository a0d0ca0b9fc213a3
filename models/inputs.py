"""What every network of ours is fed: one normalisation and one resize, shared by training and serving.

Training (``training.data``, ``training.train_landmarks``) and inference (``models.embedder``,
``models.landmarker``) call these and nothing else, so a change here changes both sides at once
(MTCNN keeps its own convention, fixed by its published weights).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

#: Written into model cards: how pixels become network inputs.
NORMALISATION = "RGB, (x / 127.5) - 1"


def normalise(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 RGB ``(N, 3, H, W)`` -> float32 in [-1, 1] (a new tensor; the input is untouched)."""
    return images_uint8.float().div_(127.5).sub_(1.0)


def hwc_batch(crops: np.ndarray | list[np.ndarray]) -> torch.Tensor:
    """``(N, H, W, 3)`` uint8 RGB crops -> the normalised ``(N, 3, H, W)`` float batch."""
    return normalise(
        torch.from_numpy(np.ascontiguousarray(np.stack(crops) if isinstance(crops, list) else crops)).permute(
            0, 3, 1, 2
        )
    )


def resize_crop(crop: np.ndarray, size: int) -> np.ndarray:
    """An aligned crop at the network's input size: ``INTER_AREA``, as the training crops were resized."""
    return crop if crop.shape[0] == size else cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
