"""Our 68-point landmark network as the service runs it (the modules are in ``models.landmark_nets``).

The network sees a square crop around the detector's box (side ``crop_scale`` x the box's longer
side), resized to ``input_size``, and regresses the 68 points in crop coordinates scaled to [0, 1].
Training crops are made from real detector boxes with jitter (``training/landmark_data.py``), so the
net expects exactly the loose boxes the service gives it.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from models.inputs import hwc_batch
from models.registry import create_model
from models.runtime import Export, OneNetwork

if TYPE_CHECKING:
    import torch
    from torch import nn


def crop_matrix(
    box: np.ndarray, size: int, scale: float, angle_deg: float = 0.0, shift: tuple[float, float] = (0.0, 0.0)
) -> np.ndarray:
    """2x3 affine map from image pixels to a ``size`` x ``size`` crop: a square of side ``scale`` x
    the box's longer side around its centre (moved by ``shift`` x side, turned by ``angle_deg``)."""
    x1, y1, x2, y2 = [float(v) for v in box]
    side = scale * max(x2 - x1, y2 - y1)
    cx, cy = (x1 + x2) / 2 + shift[0] * side, (y1 + y2) / 2 + shift[1] * side
    m = cv2.getRotationMatrix2D((cx, cy), angle_deg, size / side)
    m[:, 2] += (size / 2 - cx, size / 2 - cy)
    return m


def apply_affine(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    return np.asarray(points, np.float64) @ m[:, :2].T + m[:, 2]


def invert_affine(m: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(m)


@dataclass
class LandmarkCard:
    name: str
    version: str
    architecture: str
    input_size: int
    crop_scale: float
    raw: dict

    @classmethod
    def load(cls, path: Path) -> "LandmarkCard":
        raw = json.loads(Path(path).read_text())
        return cls(raw["name"], raw["version"], raw["architecture"], raw["input_size"], raw["crop_scale"], raw)


class Landmarker(OneNetwork):
    """Loads a landmark weight file (+ card) once; ``predict(image, boxes)`` -> ``(n, 68, 2)`` image pixels.

    The network runs with PyTorch unless :meth:`use_onnxruntime` is called; the PyTorch module is
    loaded at its first use."""

    def __init__(self, weights: Path, device: torch.device | str = "cpu") -> None:
        self.weights = Path(weights)
        self.card = LandmarkCard.load(self.weights.with_suffix(".json"))
        self.device = str(device)
        self.version = self.card.version

    @functools.cached_property
    def model(self) -> nn.Module:
        """The network as a PyTorch module on the landmarker's device (loaded at first use)."""
        import torch

        model = create_model(self.card.architecture, input_size=self.card.input_size)
        state = torch.load(self.weights, map_location="cpu", weights_only=True)
        model.load_state_dict({k: v.float() for k, v in state.items()})
        return model.eval().to(self.device)

    def export(self) -> Export:
        """How the network is exported for ONNX Runtime (a batch of any size)."""
        size = self.card.input_size
        build = f"{self.card.architecture}|{size}".encode()  # what create_model is given
        return Export("landmarks", lambda: self.model, (1, 3, size, size), {0: "n"}, [self.weights, build])

    def predict(self, image: np.ndarray, boxes: list[np.ndarray]) -> np.ndarray:
        if not len(boxes):
            return np.zeros((0, 68, 2), np.float32)
        size = self.card.input_size
        mats = [crop_matrix(b, size, self.card.crop_scale) for b in boxes]
        crops = np.stack(
            [
                cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
                for m in mats
            ]
        )
        # A few inputs (7 of YouTube Faces' 770 test faces) made the regressor answer far outside the
        # crop; points outside the crop's neighbourhood are never right, so they are kept inside it.
        pred = np.clip(self.runner(hwc_batch(crops)), -0.25, 1.25) * size
        return np.stack([apply_affine(invert_affine(m), p) for m, p in zip(mats, pred)]).astype(np.float32)
