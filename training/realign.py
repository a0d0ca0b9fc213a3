"""Re-align the embedder's training crops with our 68-point network, so that an embedder can be
trained on the crops the service makes when ``FACEREC_ALIGNER=landmarks68`` (issue 4's fix for a
train/serve mismatch: the shipped crops carry MTCNN's per-face point errors, ours carry others).

    python -m training.realign --landmarks models/weights/landmarks_integral_96.pt \
        --out ~/.cache/facerec/realigned/landmarks_integral_96 [--shard 0/2]

Each 112 px crop is padded with black (the detector needs context around a tight crop), detected
with our MTCNN cascade, its 68 points predicted on the detector's box and the five template points
derived from them; the padded crop is then warped onto the ArcFace template exactly as the service
warps a photo (black outside the original crop, as the original crops have). Crops where no face is
found are copied unchanged and counted. Output: the same identity-folder tree, lossless PNG, and
``realign.json`` per shard with counts and the mean point shift.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import torch

from models.aligner import ARCFACE_TEMPLATE, FivePointAligner
from models.detector import MTCNNDetector
from models.landmarker import Landmarker
from models.landmarks import five_from_68
from models.types import Detection
from training.config import data_root
from training.lfw import central_face

log = logging.getLogger("training.realign")
PAD = 56


def locate(image: np.ndarray, detector: MTCNNDetector) -> tuple[np.ndarray, Detection, int] | None:
    """The padded image, the detection nearest its centre (the aligned face) and how many faces were
    found, or ``None`` when there is none."""
    padded = cv2.copyMakeBorder(image, PAD, PAD, PAD, PAD, cv2.BORDER_CONSTANT, value=0)
    faces = detector.detect(padded)
    face = central_face(faces, padded.shape)
    return None if face is None else (padded, face, len(faces))


def realign_located(
    located: tuple[np.ndarray, Detection, int], landmarker: Landmarker, aligner: FivePointAligner
) -> tuple[np.ndarray, np.ndarray]:
    """(aligned 112 px crop, our five points in the unpadded image's pixels) of a located face."""
    padded, face, _ = located
    five = five_from_68(landmarker.predict(padded, [face.box])[0])
    return aligner.align(padded, five), five - PAD


def realign(
    crop: np.ndarray, detector: MTCNNDetector, landmarker: Landmarker, aligner: FivePointAligner
) -> tuple[np.ndarray, np.ndarray] | None:
    """(re-aligned crop, our five points in the original crop's pixels), or ``None`` when no face."""
    located = locate(crop, detector)
    return None if located is None else realign_located(located, landmarker, aligner)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--landmarks", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--src", type=Path, default=None, help="default: <FACEREC_DATA>/recognition/train")
    parser.add_argument("--shard", default="0/1", help="i/n: this process does identity folders i, i+n, ...")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(1)
    index, count = (int(v) for v in args.shard.split("/"))
    src = args.src or data_root() / "recognition" / "train"
    folders = sorted(p for p in src.iterdir() if p.is_dir())[index::count]
    detector = MTCNNDetector(min_face_size=20, min_score=0.5)
    landmarker, aligner = Landmarker(args.landmarks), FivePointAligner()
    done, missed, shifts = 0, [], []
    for folder in folders:
        (args.out / folder.name).mkdir(parents=True, exist_ok=True)
        for path in sorted(folder.glob("*.jpg")):
            target = args.out / folder.name / (path.stem + ".png")
            if target.exists() or target.with_suffix(".jpg").exists():
                continue
            crop = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
            result = realign(crop, detector, landmarker, aligner)
            if result is None:
                missed.append(f"{folder.name}/{path.name}")
                shutil.copyfile(path, target.with_suffix(".jpg"))
                continue
            image, five = result
            # How far our points sit from where MTCNN's put them (the template), in crop pixels.
            shifts.append(np.linalg.norm(five - ARCFACE_TEMPLATE, axis=1).mean())
            cv2.imwrite(str(target), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            done += 1
        log.info("%s: %d re-aligned, %d without a face so far", folder.name, done, len(missed))
    summary = {
        "landmarks": str(args.landmarks),
        "shard": args.shard,
        "realigned": done,
        "no_face_copied": missed,
        "mean_point_shift_px": round(float(np.mean(shifts)), 3) if shifts else None,
        "median_point_shift_px": round(float(np.median(shifts)), 3) if shifts else None,
    }
    (args.out / f"realign_{index}of{count}.json").write_text(json.dumps(summary, indent=2))
    log.info(
        "done: %d re-aligned, %d copied without a face, mean shift %.2f px",
        done,
        len(missed),
        summary["mean_point_shift_px"] or 0,
    )


if __name__ == "__main__":
    main()
