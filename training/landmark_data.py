"""68-point landmark data: the shared CSVs, detector boxes for every face, and augmented crops.

Splits (``<FACEREC_DATA>/landmarks68``): ``300w_train`` = AFW + HELEN train, ``helen_test`` (330),
``youtube_train`` (3,462), ``youtube_test`` (770).

Every face gets the box our detector (MTCNN) finds on it -- that is what the service will give the
network. Where MTCNN finds nothing, the box is predicted from the landmarks' extent with the linear
relation fitted on the faces where it did (so training still matches the detector's framing).
Boxes are cached in ``~/.cache/facerec``.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from models.landmarker import apply_affine, crop_matrix
from models.landmarks import FLIP_68

log = logging.getLogger(__name__)
SPLITS = {
    "300w_train": ("300w/landmarks68.csv", "300w/images", ("afw__", "helen__trainset__")),
    "helen_test": ("300w/landmarks68.csv", "300w/images", ("helen__testset__",)),
    "youtube_train": ("youtube_faces/train.csv", "youtube_faces/train", ("",)),
    "youtube_test": ("youtube_faces/test.csv", "youtube_faces/test", ("",)),
}


@dataclass
class LandmarkSet:
    names: list[str]
    images: list[np.ndarray]  # RGB uint8, various sizes
    points: np.ndarray  # (n, 68, 2) float32
    boxes: np.ndarray  # (n, 4) detector boxes (x1, y1, x2, y2)


def read_split(root: Path, split: str) -> tuple[list[str], list[np.ndarray], np.ndarray]:
    """(names, RGB images, (n, 68, 2) points) of one split."""
    csv_name, image_dir, prefixes = SPLITS[split]
    names, images, points = [], [], []
    with open(root / csv_name) as f:
        for row in csv.DictReader(f):
            if not row["image"].startswith(prefixes):
                continue
            names.append(row["image"])
            bgr = cv2.imread(str(root / image_dir / row["image"]))
            images.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            points.append([(float(row[f"x{i}"]), float(row[f"y{i}"])) for i in range(68)])
    return names, images, np.asarray(points, np.float32)


def extent(points: np.ndarray) -> np.ndarray:
    """(n, 4) bounding boxes of point sets."""
    return np.concatenate([points.min(1), points.max(1)], axis=1)


def nearest_box(boxes: np.ndarray, pts: np.ndarray) -> np.ndarray | None:
    """The detected box whose centre is nearest the landmarks' centre, if it overlaps them."""
    centre = pts.mean(0)
    best = min(boxes, key=lambda b: np.hypot((b[0] + b[2]) / 2 - centre[0], (b[1] + b[3]) / 2 - centre[1]))
    x1, y1, x2, y2 = best
    return best if x1 < centre[0] < x2 and y1 < centre[1] < y2 else None


def detector_boxes(
    names: list[str], images: list[np.ndarray], points: np.ndarray, detector, cache_dir: Path | None, key: str
) -> np.ndarray:
    """MTCNN's box for every face (cached); misses get a box predicted from the landmark extent."""
    digest = hashlib.sha1(("|".join(names) + key).encode()).hexdigest()[:16]
    cache = cache_dir / f"landmark_boxes_{digest}.npz" if cache_dir else None
    if cache is not None and cache.exists():
        with np.load(cache) as z:
            return z["boxes"]
    found = np.full((len(names), 4), np.nan, np.float32)
    for i, (image, pts) in enumerate(zip(images, points)):
        dets = detector.detect(image)
        box = nearest_box(np.stack([d.box for d in dets]), pts) if dets else None
        if box is not None:
            found[i] = box
    ok = np.isfinite(found[:, 0])
    ext = extent(points)
    # Box = extent box mapped by (centre shift, size ratio) fitted on the detected faces.
    size_e = np.maximum(ext[:, 2] - ext[:, 0], ext[:, 3] - ext[:, 1])
    rel = np.stack(
        [
            ((found[:, 0] + found[:, 2]) - (ext[:, 0] + ext[:, 2])) / 2 / size_e,
            ((found[:, 1] + found[:, 3]) - (ext[:, 1] + ext[:, 3])) / 2 / size_e,
            (found[:, 2] - found[:, 0]) / size_e,
            (found[:, 3] - found[:, 1]) / size_e,
        ],
        1,
    )
    dx, dy, w, h = np.median(rel[ok], axis=0)
    log.info(
        "detector found %d of %d faces; misses boxed from their landmarks (w %.2f, h %.2f x extent)",
        ok.sum(),
        len(ok),
        w,
        h,
    )
    cx, cy = (ext[:, 0] + ext[:, 2]) / 2 + dx * size_e, (ext[:, 1] + ext[:, 3]) / 2 + dy * size_e
    fallback = np.stack([cx - w * size_e / 2, cy - h * size_e / 2, cx + w * size_e / 2, cy + h * size_e / 2], 1)
    boxes = np.where(ok[:, None], found, fallback).astype(np.float32)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, boxes=boxes)
    return boxes


@dataclass
class CropAugment:
    """Jitter of the detector box and the photometric changes applied to training crops."""

    flip: float = 0.5
    max_rotate_deg: float = 20.0
    scale: tuple[float, float] = (0.9, 1.12)
    max_shift: float = 0.06
    brightness: float = 0.25
    contrast: float = 0.25
    grayscale: float = 0.1
    blur: float = 0.1


def make_crop(
    image: np.ndarray,
    box: np.ndarray,
    points: np.ndarray,
    size: int,
    crop_scale: float,
    rng: np.random.Generator | None = None,
    aug: CropAugment | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(crop ``size`` x ``size`` RGB, points in crop pixels); augmented when ``rng`` is given."""
    angle, scale, shift, flip = 0.0, 1.0, (0.0, 0.0), False
    if rng is not None:
        aug = aug or CropAugment()
        angle = rng.uniform(-aug.max_rotate_deg, aug.max_rotate_deg)
        scale = rng.uniform(*aug.scale)
        shift = tuple(rng.uniform(-aug.max_shift, aug.max_shift, 2))
        flip = rng.random() < aug.flip
    m = crop_matrix(box, size, crop_scale * scale, angle, shift)
    crop = cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    pts = apply_affine(m, points)
    if flip:
        crop = crop[:, ::-1].copy()
        pts = pts[FLIP_68].copy()
        pts[:, 0] = size - 1 - pts[:, 0]
    if rng is not None:
        x = crop.astype(np.float32)
        x = (x - x.mean()) * (1 + rng.uniform(-aug.contrast, aug.contrast)) + x.mean()
        x = x * (1 + rng.uniform(-aug.brightness, aug.brightness))
        if rng.random() < aug.grayscale:
            x = x.mean(2, keepdims=True).repeat(3, 2)
        if rng.random() < aug.blur:
            x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.5, 1.5))
        crop = np.clip(x, 0, 255).astype(np.uint8)
    return crop, pts.astype(np.float32)


def wing_loss(pred, target, w: float = 10.0, eps: float = 2.0):
    """Wing loss (Feng et al. 2018) on pixel errors: log-shaped for small errors (more weight on
    getting them exactly right than L1/L2 give), L1 for large ones."""
    import torch

    d = (pred - target).abs()
    c = w - w * math.log(1 + w / eps)
    return torch.where(d < w, w * torch.log1p(d / eps), d - c).mean()
