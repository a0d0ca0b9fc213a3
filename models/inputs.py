"""What every network of ours is fed: one normalisation and one resize, shared by training and serving.

Training (``training.data``, ``training.train_landmarks``) and inference (``models.embedder``,
``models.landmarker``) call these and nothing else, so a change here changes both sides at once
(MTCNN keeps its own convention, fixed by its published weights). Serving works on numpy arrays and
training on PyTorch tensors; :func:`normalise` takes either, and its two branches give the same
float32 bits for every one of the 256 pixel values (``tests/test_models.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import cv2
import numpy as np

if TYPE_CHECKING:
    import torch

#: Written into model cards: how pixels become network inputs.
NORMALISATION = "RGB, (x / 127.5) - 1"
_SCALE, _SHIFT = 127.5, 1.0

Pixels = TypeVar("Pixels", np.ndarray, "torch.Tensor")


def normalise(images_uint8: Pixels) -> Pixels:
    """uint8 RGB pixels -> float32 in [-1, 1]: a numpy array gives a numpy array, a tensor a tensor
    (a new one either way; the input is untouched)."""
    if isinstance(images_uint8, np.ndarray):
        x = images_uint8.astype(np.float32)
        x /= np.float32(_SCALE)
        x -= np.float32(_SHIFT)
        return x
    return images_uint8.float().div_(_SCALE).sub_(_SHIFT)


def hwc_batch(crops: np.ndarray | list[np.ndarray]) -> np.ndarray:
    """``(N, H, W, 3)`` uint8 RGB crops -> the normalised, C-contiguous ``(N, 3, H, W)`` float32 batch."""
    pixels = np.stack(crops) if isinstance(crops, list) else crops
    return normalise(np.ascontiguousarray(pixels.transpose(0, 3, 1, 2)))


def resize_crop(crop: np.ndarray, size: int) -> np.ndarray:
    """An aligned crop at the network's input size: ``INTER_AREA``, as the training crops were resized."""
    return crop if crop.shape[0] == size else cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
