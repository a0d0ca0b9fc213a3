"""Landmark accuracy and speed: ours against dlib's 68-point shape predictor, from the same boxes.

    python -m training.evaluate_landmarks --weights models/weights/landmarks_integral_96.pt --out reports/landmarks

NME (percent of the outer-eye-corner distance, points 36/45), failure rate at NME > 8% and the
cumulative error curve on HELEN test (330) and YouTube Faces test (770). Both predictors get the
same MTCNN box per face (what the service gives the aligner); dlib is also run from its own HOG
detector's box where that finds the face (its home ground). dlib needs the ``peers`` extra.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import statistics
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from models.detector import MTCNNDetector  # noqa: E402
from models.landmarker import Landmarker  # noqa: E402
from training.config import data_root  # noqa: E402
from training.landmark_data import detector_boxes, read_split  # noqa: E402
from training.landmark_metrics import cumulative_error, failure_rate, nme  # noqa: E402

log = logging.getLogger("training.evaluate_landmarks")
TEST_SPLITS = ("helen_test", "youtube_test")


class DlibLandmarks:
    name = "dlib shape_predictor_68"

    def __init__(self) -> None:
        import dlib

        spec = importlib.util.find_spec("face_recognition_models")
        if spec is None:
            raise ImportError("dlib's 68-point model ships in face-recognition-models: pip install -e '.[peers]'")
        models = Path(spec.submodule_search_locations[0]) / "models"
        self.dlib = dlib
        self.predictor = dlib.shape_predictor(str(models / "shape_predictor_68_face_landmarks.dat"))
        self.hog = dlib.get_frontal_face_detector()

    def predict(self, image: np.ndarray, boxes) -> np.ndarray:
        out = []
        for x1, y1, x2, y2 in boxes:
            shape = self.predictor(image, self.dlib.rectangle(int(x1), int(y1), int(x2), int(y2)))
            out.append([(shape.part(i).x, shape.part(i).y) for i in range(68)])
        return np.asarray(out, np.float32)

    def hog_box(self, image: np.ndarray, points: np.ndarray) -> np.ndarray | None:
        centre = points.mean(0)
        for r in self.hog(image, 1):
            if r.left() < centre[0] < r.right() and r.top() < centre[1] < r.bottom():
                return np.array([r.left(), r.top(), r.right(), r.bottom()], np.float32)
        return None


def per_face_ms(predict, images, boxes, n: int = 100) -> float:
    times = []
    for image, box in list(zip(images, boxes))[:n]:
        t0 = time.perf_counter()
        predict(image, [box])
        times.append(1000 * (time.perf_counter() - t0))
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("reports/landmarks"))
    parser.add_argument("--no-dlib", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = data_root() / "landmarks68"
    ours = Landmarker(args.weights)
    peer = None if args.no_dlib else DlibLandmarks()
    detector = MTCNNDetector(min_score=0.5)
    cache = Path.home() / ".cache" / "facerec"
    results, curves = {}, {}
    for split in TEST_SPLITS:
        names, images, truth = read_split(root, split)
        boxes = detector_boxes(names, images, truth, detector, cache, detector.key)
        rows = {"ours (MTCNN box)": nme(np.concatenate([ours.predict(im, [b]) for im, b in zip(images, boxes)]), truth)}
        speed = {"ours (MTCNN box)": per_face_ms(ours.predict, images, boxes)}
        if peer is not None:
            rows[f"{peer.name} (same MTCNN box)"] = nme(
                np.concatenate([peer.predict(im, [b]) for im, b in zip(images, boxes)]), truth
            )
            speed[f"{peer.name} (same MTCNN box)"] = per_face_ms(peer.predict, images, boxes)
            hog = [peer.hog_box(im, t) for im, t in zip(images, truth)]
            found = [i for i, b in enumerate(hog) if b is not None]
            rows[f"{peer.name} (its own HOG box, {len(found)} of {len(images)} found)"] = nme(
                np.concatenate([peer.predict(images[i], [hog[i]]) for i in found]), truth[found]
            )
        results[split] = {
            k: {
                "nme_mean": float(v.mean()),
                "nme_median": float(np.median(v)),
                "failure_rate_8": failure_rate(v, 8.0),
                "faces": len(v),
                "ms_per_face": speed.get(k),
            }
            for k, v in rows.items()
        }
        curves[split] = {k: cumulative_error(v) for k, v in rows.items()}
        log.info("%s: %s", split, {k: round(r["nme_mean"], 3) for k, r in results[split].items()})
    args.out.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(TEST_SPLITS), figsize=(11, 4))
    for ax, split in zip(axes, TEST_SPLITS):
        for name, (grid, share) in curves[split].items():
            ax.plot(grid, share, label=name)
        ax.set_title(split)
        ax.set_xlabel("NME (%)")
        ax.set_ylabel("share of faces")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out / "ced.png", dpi=110)
    (args.out / "metrics.json").write_text(json.dumps({"model": ours.version, "results": results}, indent=2))
    lines = [
        f"# 68-point landmarks: `{ours.version}` against dlib",
        "",
        f"`python -m training.evaluate_landmarks --weights {args.weights} --out {args.out}`",
        "",
        "| split | predictor | faces | NME mean % | NME median % | failure rate (NME > 8%) | ms / face |",
        "|---|---|---|---|---|---|---|",
    ]
    for split, rows in results.items():
        for name, r in rows.items():
            ms = f"{r['ms_per_face']:.1f}" if r["ms_per_face"] is not None else "-"
            lines.append(
                f"| {split} | {name} | {r['faces']} | {r['nme_mean']:.2f} | {r['nme_median']:.2f} | "
                f"{100 * r['failure_rate_8']:.1f}% | {ms} |"
            )
    lines += ["", "![cumulative error](ced.png)", ""]
    (args.out / "report.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
