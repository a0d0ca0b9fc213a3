"""Where our 68-point network puts the five alignment points on the embedder's training crops,
against MTCNN's points on the same crops: a systematic train/serve template offset would show as a
difference of means.

    python -m training.alignment_offsets --landmarks models/weights/landmarks_integral_96.pt \
        --out reports/alignment/offsets.json

The training crops were aligned from MTCNN's five points onto the ArcFace template. Each sampled crop
is padded (the detector needs context around a tight crop), detected with our MTCNN cascade, and the
five points are taken both from the detector and from the 68-point network on the detector's box.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import cv2
import numpy as np

from models.aligner import ARCFACE_TEMPLATE
from models.detector import MTCNNDetector
from models.landmarker import Landmarker
from models.landmarks import five_from_68
from training.config import data_root
from training.realign import PAD, locate

log = logging.getLogger("training.alignment_offsets")


def five_point_sources(paths: list[Path], landmarker: Landmarker) -> tuple[np.ndarray, np.ndarray]:
    """(MTCNN's five points, the 68-point network's five points) per crop where a face was found,
    in the 112 px crop's coordinates."""
    detector = MTCNNDetector(min_face_size=20, min_score=0.5)
    mtcnn, ours = [], []
    for path in paths:
        located = locate(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB), detector)
        if located is None:
            continue
        padded, face, _ = located
        mtcnn.append(face.points - PAD)
        ours.append(five_from_68(landmarker.predict(padded, [face.box])[0]) - PAD)
    return np.asarray(mtcnn), np.asarray(ours)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--landmarks", type=Path, required=True)
    parser.add_argument("--n", type=int, default=1500, help="training crops sampled (seed 0)")
    parser.add_argument("--out", type=Path, default=Path("reports/alignment/offsets.json"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    paths = sorted((data_root() / "recognition" / "train").glob("*/*.jpg"))
    rng = np.random.default_rng(0)
    sample = [paths[i] for i in rng.choice(len(paths), min(args.n, len(paths)), replace=False)]
    mtcnn, ours = (a.astype(np.float64) for a in five_point_sources(sample, Landmarker(args.landmarks)))
    result = {
        "crops": len(sample),
        "faces_found": len(mtcnn),
        "template": ARCFACE_TEMPLATE.round(2).tolist(),
        "mtcnn_mean": mtcnn.mean(0).round(2).tolist(),
        "ours_mean": ours.mean(0).round(2).tolist(),
        "mean_difference_ours_minus_mtcnn": (ours.mean(0) - mtcnn.mean(0)).round(2).tolist(),
        "mtcnn_std": mtcnn.std(0).round(2).tolist(),
        "ours_std": ours.std(0).round(2).tolist(),
        "command": f"python -m training.alignment_offsets --landmarks {args.landmarks} --n {args.n}",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    log.info("mean difference (ours - MTCNN), px: %s", result["mean_difference_ours_minus_mtcnn"])


if __name__ == "__main__":
    main()
