"""Training data: aligned identity folders, preloaded once, sampled with identity balancing and
augmented on whole batches (cheap on CPU, and identical on GPU)."""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from models.inputs import resize_crop

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


@dataclass
class FaceFolder:
    """All images of an identity-folder tree, as one uint8 array (N, 3, S, S) and int labels."""

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def list_identity_folders(root: Path, fraction: float = 1.0, seed: int = 0) -> list[Path]:
    """Identity folders under ``root``, sorted; ``fraction < 1`` keeps a seeded random subset."""
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not folders:
        raise FileNotFoundError(
            f"no identity folders in {root}; set FACEREC_DATA to the shared data root, or "
            "make a re-aligned data_dir first with python -m training.realign (its config says how)"
        )
    if fraction < 1.0:
        rng = np.random.default_rng(seed)
        keep = rng.choice(len(folders), size=max(2, round(fraction * len(folders))), replace=False)
        folders = [folders[i] for i in sorted(keep)]
    return folders


def _read_resized(path: Path, size: int) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"cannot decode training image {path}")
    image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return resize_crop(image, size).transpose(2, 0, 1)  # exactly as the service resizes its crops


def face_files(folders: list[Path]) -> list[tuple[int, Path]]:
    """(label, path) of every image under the identity folders, in training order (folder, then name)."""
    return [
        (label, f) for label, d in enumerate(folders) for f in sorted(d.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES
    ]


def load_face_folder(folders: list[Path], size: int, cache_dir: Path | None) -> FaceFolder:
    """Decode every image once (cached as .npz in ``cache_dir``, keyed by the file list and size)."""
    files = face_files(folders)
    key = hashlib.sha1(f"{size}|".encode() + "|".join(str(f) for _, f in files).encode()).hexdigest()[:16]
    cache = cache_dir / f"faces_{size}px_{key}.npz" if cache_dir else None
    names = [d.name for d in folders]
    if cache and cache.exists():
        data = np.load(cache)
        log.info("loaded %d cached training images from %s", len(data["labels"]), cache)
        return FaceFolder(data["images"], data["labels"], names)
    images = np.stack([_read_resized(f, size) for _, f in tqdm(files, desc="decode", unit="img")])
    labels = np.array([label for label, _ in files], dtype=np.int64)
    if cache:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, images=images, labels=labels)
    return FaceFolder(images, labels, names)


def balanced_weights(labels: np.ndarray, power: float) -> np.ndarray:
    """Per-image sampling weights ``n_identity ** -power`` (0: uniform images, 1: uniform identities)."""
    counts = np.bincount(labels)
    weights = counts[labels].astype(np.float64) ** -power
    return weights / weights.sum()


class BatchSampler:
    """Endless, seeded stream of index batches drawn with identity-balancing weights."""

    def __init__(self, labels: np.ndarray, batch_size: int, power: float, seed: int) -> None:
        self.p = balanced_weights(labels, power)
        self.batch_size = batch_size
        self.rng = np.random.default_rng(seed)

    def next(self) -> np.ndarray:
        return self.rng.choice(len(self.p), size=self.batch_size, p=self.p)


@dataclass
class AugmentConfig:
    """Batch augmentation strengths (all applied on the fly, per sample)."""

    flip: float = 0.5
    max_rotate_deg: float = 10.0
    scale: tuple[float, float] = (0.9, 1.1)
    max_shift: float = 0.06  # fraction of the image side
    brightness: float = 0.2
    contrast: float = 0.2
    grayscale: float = 0.1
    blur: float = 0.1
    # Occlusion (off by default, so older configs train as they did): ``occlusion`` = chance of one
    # random rectangle (10-40% of each side) painted a random flat colour (random erasing, Zhong et
    # al. 2020); ``sunglasses`` = chance of a dark band over the template's eye line, the occluder
    # behind most of our LFW misses (reports/embeddings.md).
    occlusion: float = 0.0
    sunglasses: float = 0.0


def augment(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """Random flip, similarity jitter, brightness/contrast, grayscale and blur on a [-1, 1] batch."""
    n = x.shape[0]
    r = lambda *shape: torch.rand(*shape, generator=gen)  # noqa: E731
    angle = (r(n) * 2 - 1) * math.radians(cfg.max_rotate_deg)
    scale = cfg.scale[0] + r(n) * (cfg.scale[1] - cfg.scale[0])
    flip = torch.where(r(n) < cfg.flip, -1.0, 1.0)
    shift = (r(n, 2) * 2 - 1) * cfg.max_shift * 2  # grid units span [-1, 1]
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos * flip, -sin, shift[:, 0]], 1), torch.stack([sin * flip, cos, shift[:, 1]], 1)], 1
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    contrast = 1 + (r(n, 1, 1, 1) * 2 - 1) * cfg.contrast
    brightness = (r(n, 1, 1, 1) * 2 - 1) * cfg.brightness
    x = (x - mean) * contrast + mean + brightness
    gray = r(n) < cfg.grayscale
    x[gray] = x[gray].mean(dim=1, keepdim=True).expand(-1, 3, -1, -1)
    blur = r(n) < cfg.blur
    if blur.any():
        kernel = torch.tensor([1.0, 2.0, 1.0]) / 4
        kernel = (kernel[:, None] * kernel[None, :]).expand(3, 1, 3, 3)
        x[blur] = F.conv2d(F.pad(x[blur], (1, 1, 1, 1), mode="replicate"), kernel, groups=3)
    if cfg.occlusion or cfg.sunglasses:
        x = occlude(x, cfg, gen)
    return x.clamp_(-1.0, 1.0)


# The ArcFace template's eye line, as fractions of the 112 px crop: eyes at y = 51.6, x = 38.3 and 73.5.
_EYE_Y, _EYE_X = 51.6 / 112, (38.3 / 112, 73.5 / 112)


def occlude(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """Paint random rectangles (chance ``cfg.occlusion``) and sunglasses-like bands (chance
    ``cfg.sunglasses``) onto a [-1, 1] batch of aligned faces, in place."""
    n, _, h, w = x.shape
    r = lambda *shape: torch.rand(*shape, generator=gen)  # noqa: E731
    rows = torch.arange(h, dtype=torch.float32)[:, None] / h
    cols = torch.arange(w, dtype=torch.float32)[None, :] / w
    for i in torch.nonzero(r(n) < cfg.occlusion).flatten().tolist():
        bh, bw = 0.1 + 0.3 * r(2)
        top, left = r(1).item() * (1 - bh), r(1).item() * (1 - bw)
        mask = (rows >= top) & (rows < top + bh) & (cols >= left) & (cols < left + bw)
        x[i, :, mask] = (r(3, 1) * 2 - 1).expand(-1, int(mask.sum()))
    for i in torch.nonzero(r(n) < cfg.sunglasses).flatten().tolist():
        half = 0.05 + 0.05 * r(1).item()  # lens half-height, 5-10% of the crop
        centre = _EYE_Y + (r(1).item() * 2 - 1) * 0.03
        margin = 0.08 + 0.06 * r(1).item()
        mask = ((rows - centre).abs() < half) & (cols > _EYE_X[0] - margin) & (cols < _EYE_X[1] + margin)
        shade = -1 + 0.5 * r(1).item()  # dark, from black to dark grey
        x[i, :, mask] = shade
    return x
