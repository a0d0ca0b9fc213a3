"""LFW as the evaluation set: its photos, the official pairs, and the detections on them.

Detections do not depend on the embedder, so they are computed once and cached (outside the
read-only data folder); embedding 13,233 aligned crops then takes seconds.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from models.types import Detection

log = logging.getLogger(__name__)


@dataclass
class Pair:
    """One line of ``pairs.txt``: two image paths (relative to ``images/``), same person or not, fold."""

    a: str
    b: str
    same: bool
    fold: int


def image_name(person: str, number: int) -> str:
    return f"{person}/{person}_{number:04d}.jpg"


def read_pairs(path: Path) -> list[Pair]:
    """Parse an LFW pairs file (``pairs.txt``: a ``folds<TAB>n`` header, then 2n lines per fold)."""
    lines = Path(path).read_text().strip().splitlines()
    header = lines[0].split()
    folds, per_fold = (int(header[0]), int(header[1])) if len(header) == 2 else (1, int(header[0]))
    pairs = []
    for i, line in enumerate(lines[1:]):
        parts = line.split()
        fold = i // (2 * per_fold)
        if len(parts) == 3:
            pairs.append(Pair(image_name(parts[0], int(parts[1])), image_name(parts[0], int(parts[2])), True, fold))
        elif len(parts) == 4:
            pairs.append(Pair(image_name(parts[0], int(parts[1])), image_name(parts[2], int(parts[3])), False, fold))
        else:
            raise ValueError(f"{path}:{i + 2}: expected 3 or 4 fields, got {line!r}")
    if len(pairs) != folds * per_fold * 2:
        raise ValueError(f"{path}: header promises {folds * per_fold * 2} pairs, found {len(pairs)}")
    return pairs


def list_people(images_dir: Path) -> dict[str, list[str]]:
    """Person -> their image paths relative to ``images_dir``, sorted (so "first photo" is defined)."""
    people = {}
    for d in sorted(p for p in images_dir.iterdir() if p.is_dir()):
        people[d.name] = [f"{d.name}/{f.name}" for f in sorted(d.glob("*.jpg"))]
    if not people:
        raise FileNotFoundError(f"no LFW people in {images_dir}; set FACEREC_DATA to the shared data root")
    return people


def central_face(detections: list[Detection], shape: tuple[int, ...]) -> Detection | None:
    """The detection whose box centre is nearest the image centre: LFW's labelled face is centred,
    and its photos often show other people too."""
    if not detections:
        return None
    centre = np.array([shape[1], shape[0]]) / 2
    return min(detections, key=lambda d: np.linalg.norm((d.box[:2] + d.box[2:]) / 2 - centre))


def read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"cannot decode {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def detect_all(
    detector, images_dir: Path, names: list[str], cache_dir: Path | None, settings_key: str
) -> dict[str, Detection | None]:
    """The central face of every image (``None`` when none was found), cached by settings and file list."""
    key = hashlib.sha1((settings_key + "|" + "|".join(names)).encode()).hexdigest()[:16]
    cache = cache_dir / f"lfw_detections_{key}.npz" if cache_dir else None
    if cache and cache.exists():
        data = np.load(cache)
        log.info("loaded cached detections from %s", cache)
        return {
            n: Detection(b, float(s), p) if found else None
            for n, found, b, s, p in zip(names, data["found"], data["boxes"], data["scores"], data["points"])
        }
    result: dict[str, Detection | None] = {}
    for name in tqdm(names, desc="detect", unit="img"):
        image = read_rgb(images_dir / name)
        result[name] = central_face(detector.detect(image), image.shape)
    if cache:
        cache.parent.mkdir(parents=True, exist_ok=True)
        found = np.array([result[n] is not None for n in names])
        empty = Detection(np.zeros(4, np.float32), 0.0, np.zeros((5, 2), np.float32))
        dets = [result[n] or empty for n in names]
        np.savez(
            cache,
            found=found,
            boxes=np.stack([d.box for d in dets]),
            scores=np.array([d.score for d in dets]),
            points=np.stack([d.points for d in dets]),
        )
    return result


def aligned_crop(pipeline, image: np.ndarray, detection: Detection, alignment: str = "auto") -> np.ndarray:
    """The 112x112 crop the embedder sees. ``auto``: as the pipeline aligns (the 68-point network's
    five points when it has one, else the detector's); ``box``: no alignment, the detector's box
    cropped square (side 1.15 x its longer side) and resized -- the ablation's baseline."""
    if alignment == "box":
        from models.landmarker import crop_matrix

        return cv2.warpAffine(image, crop_matrix(detection.box, 112, 1.15), (112, 112), flags=cv2.INTER_LINEAR)
    five, _ = pipeline.alignment_points(image, [detection])
    return pipeline.aligner.align(image, five[0])


def embed_all(
    pipeline,
    images_dir: Path,
    detections: dict[str, Detection | None],
    batch: int = 256,
    normalize: bool = True,
    alignment: str = "auto",
) -> dict[str, np.ndarray]:
    """Embedding of every image's detected face; a row of NaNs where no face was found.

    ``normalize=False`` keeps the raw (un-normalised) network outputs; ``alignment`` as in
    :func:`aligned_crop`.
    """
    names = list(detections)
    out = {}
    for start in tqdm(range(0, len(names), batch), desc="embed", unit="batch"):
        chunk = [n for n in names[start : start + batch] if detections[n] is not None]
        crops = [aligned_crop(pipeline, read_rgb(images_dir / n), detections[n], alignment) for n in chunk]
        out.update(zip(chunk, pipeline.embedder.embed(crops, normalize=normalize)))
    nan = np.full(pipeline.embedder.dim, np.nan, np.float32)
    return {n: out.get(n, nan) for n in names}


def pair_scores(emb: dict[str, np.ndarray], pairs: list[Pair]) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarity of every pairs.txt pair (NaN rows -- no face -- score -1) and same/different."""

    def unit(v):
        return v / np.linalg.norm(v)

    scores = np.array(
        [
            float(unit(emb[p.a]) @ unit(emb[p.b]))
            if np.isfinite(emb[p.a]).all() and np.isfinite(emb[p.b]).all()
            else -1.0
            for p in pairs
        ]
    )
    return scores, np.array([p.same for p in pairs])
