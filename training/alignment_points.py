"""How good are the five alignment points, measured where recognition feels them: in the aligned crop.

    python -m training.alignment_points --landmarks models/weights/landmarks_integral_96.pt \
        --out reports/alignment/points.json

Two measurements, for MTCNN's five points and for the five our 68-point network gives on the same
detector box:

* **accuracy** (HELEN test, YouTube Faces test; ground truth = the five points derived from the 68):
  align with the predicted points, and see where the *true* points land in the 112 px crop against
  where aligning with the true points puts them (mean distance, crop pixels). A constant offset
  (different point definitions, e.g. MTCNN's "eye" is not the mean of the six eye-contour points)
  is learnt away by an embedder trained on such crops, so the error is also split into that
  ``bias`` and the per-face ``scatter`` around it.
* **stability** (LFW photos, no ground truth needed): the same photo shifted (±3 px), scaled
  (±5%) and rotated (±4°) a few times, re-detected, the points mapped back; ``jitter`` = how far the
  crop moves between those copies (mean distance of the aligned points from their mean, crop pixels).
  An embedder sees jitter as noise between two photos of the same person.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import cv2
import numpy as np

from models.aligner import ARCFACE_TEMPLATE, similarity_transform
from models.detector import MTCNNDetector
from models.landmarker import Landmarker, apply_affine, invert_affine
from models.landmarks import five_from_68
from models.pipeline import PipelineConfig, build_detector
from training import lfw
from training.config import data_root
from training.landmark_data import nearest_box, read_split

log = logging.getLogger("training.alignment_points")
SOURCES = ("mtcnn", "ours")


def to_crop(points: np.ndarray, where: np.ndarray) -> np.ndarray:
    """``where`` (n, 2) mapped into the 112 px crop that aligning with ``points`` (5, 2) makes."""
    return apply_affine(similarity_transform(points, ARCFACE_TEMPLATE), where)


def five_points(
    image: np.ndarray, detector: MTCNNDetector, landmarker: Landmarker, near: np.ndarray | None = None
) -> dict[str, np.ndarray] | None:
    """MTCNN's and our five points for the face nearest ``near`` (or the central face)."""
    found = detector.detect(image)
    if not found:
        return None
    if near is not None:
        box = nearest_box(np.stack([d.box for d in found]), near)
        if box is None:
            return None
        face = next(d for d in found if np.array_equal(d.box, box))
    else:
        face = lfw.central_face(found, image.shape)
        if face is None:
            return None
    return {
        "mtcnn": face.points.astype(np.float64),
        "ours": five_from_68(landmarker.predict(image, [face.box])[0]).astype(np.float64),
    }


def accuracy(split: str, detector: MTCNNDetector, landmarker: Landmarker) -> dict:
    """Crop-space error of each point source against the ground truth's alignment, on one split."""
    _, images, truth = read_split(data_root() / "landmarks68", split)
    residuals = {s: [] for s in SOURCES}
    for image, pts in zip(images, truth):
        got = five_points(image, detector, landmarker, near=pts)
        if got is None:
            continue
        gt = five_from_68(pts).astype(np.float64)
        ideal = to_crop(gt, gt)
        for s in SOURCES:
            residuals[s].append(to_crop(got[s], gt) - ideal)
    out = {"faces": len(residuals["mtcnn"]), "of": len(images)}
    for s in SOURCES:
        r = np.asarray(residuals[s])  # (faces, 5, 2), crop pixels
        bias = r.mean(0)
        out[s] = {
            "error_px": round(float(np.linalg.norm(r, axis=2).mean()), 3),
            "bias_px": round(float(np.linalg.norm(bias, axis=1).mean()), 3),
            "scatter_px": round(float(np.linalg.norm(r - bias, axis=2).mean()), 3),
        }
    return out


def perturbation(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """A random small similarity transform about the image centre (2x3)."""
    centre = (shape[1] / 2, shape[0] / 2)
    m = cv2.getRotationMatrix2D(centre, rng.uniform(-4, 4), rng.uniform(0.95, 1.05))
    m[:, 2] += rng.uniform(-3, 3, 2)
    return m


def stability(n: int, copies: int, detector: MTCNNDetector, landmarker: Landmarker, seed: int = 0) -> dict:
    """Crop jitter of each point source over perturbed copies of ``n`` LFW photos."""
    images_dir = data_root() / "lfw" / "images"
    names = sorted(str(p.relative_to(images_dir)) for p in images_dir.glob("*/*.jpg"))
    rng = np.random.default_rng(seed)
    jitter = {s: [] for s in SOURCES}
    for name in rng.choice(names, n, replace=False):
        image = lfw.read_rgb(images_dir / name)
        runs = []
        for k in range(copies):
            m = np.array([[1.0, 0, 0], [0, 1.0, 0]]) if k == 0 else perturbation(rng, image.shape)
            warped = cv2.warpAffine(
                image, m, (image.shape[1], image.shape[0]), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
            )
            got = five_points(warped, detector, landmarker)
            if got is None:
                break
            runs.append({s: apply_affine(invert_affine(m), p) for s, p in got.items()})
        if len(runs) < copies:
            continue
        for s in SOURCES:
            reference = np.mean([r[s] for r in runs], axis=0)
            placed = np.stack([to_crop(r[s], reference) for r in runs])  # (copies, 5, 2)
            jitter[s].append(np.linalg.norm(placed - placed.mean(0), axis=2).mean())
    return {
        "photos": len(jitter["mtcnn"]),
        "copies": copies,
        **{s: {"jitter_px": round(float(np.mean(jitter[s])), 3)} for s in SOURCES},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--landmarks", type=Path, required=True)
    parser.add_argument("--photos", type=int, default=300, help="LFW photos in the stability test")
    parser.add_argument("--copies", type=int, default=5, help="perturbed copies per photo (the first unchanged)")
    parser.add_argument("--out", type=Path, default=Path("reports/alignment/points.json"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The service's detector (the pipeline factory's defaults), so the points are the ones it aligns with.
    detector, landmarker = build_detector(PipelineConfig()), Landmarker(args.landmarks)
    result = {
        "landmarks": landmarker.version,
        "command": f"python -m training.alignment_points --landmarks {args.landmarks} "
        f"--photos {args.photos} --copies {args.copies}",
        "accuracy": {s: accuracy(s, detector, landmarker) for s in ("helen_test", "youtube_test")},
        "stability_lfw": stability(args.photos, args.copies, detector, landmarker),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    log.info("%s", json.dumps(result))


if __name__ == "__main__":
    main()
