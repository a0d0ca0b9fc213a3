"""Where the detector's time goes, and what a coarser pyramid or a stricter first stage would cost in
faces found.

    python bench/detector_profile.py --out bench/results/detector_profile.json

1. **Profile** of the service's cascade (``Settings().pipeline_config``, ONNX Runtime on a CPU) on
   the benchmark photos of ``bench/pipeline_speed.py``: the median milliseconds of each network call
   (P-Net per pyramid level with its input size, R-Net and O-Net with their batch sizes), and the
   rest of ``detect`` (pyramid resampling, candidate crops, NMS) as the remainder.
2. **Pyramid factor sweep**: the cascade with each ``--factors`` ratio between pyramid levels (against
   MTCNN's published 0.709; the service's is ``FACEREC_DETECTOR_PYRAMID_FACTOR``), measured by what the detector test measures (the hand-marked
   crowd faces found, detections that match no marked face, at the service's settings), by whether
   the same face is found on ``--lfw`` LFW photos (the best face's box IoU with the 0.709 cascade's,
   and photos where it is found by one and not the other), and by speed: each repetition runs every
   factor back to back on the same photo, in an order that alternates, and the figure is the median
   per-repetition ratio to 0.709 (below 1: faster), as in ``bench/interleaved.py``; at the
   published P-Net threshold.
3. **P-Net threshold sweep**: the same measures for each ``--pnet-thresholds`` score the first stage
   needs to hand a window on to R-Net (the published 0.6; the service's is
   ``FACEREC_DETECTOR_PNET_THRESHOLD``), at the service's pyramid factor, against 0.6.

A benchmark, not a test: run it with nothing else on the machine.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.config import Settings  # noqa: E402
from bench.soak_identify import jpeg_640x480  # noqa: E402
from models.mtcnn import MTCNN  # noqa: E402
from models.pipeline import build_pipeline  # noqa: E402
from training.config import data_root  # noqa: E402
from training.crowds import box_iou, crowd_recall  # noqa: E402

log = logging.getLogger("bench.detector_profile")
PUBLISHED_FACTOR = 0.709


def rgb(path_or_bytes) -> np.ndarray:
    source = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes
    return np.asarray(Image.open(source).convert("RGB"))


class CallTimes:
    """Wraps the cascade's three network callables and records each call's input shape and time."""

    def __init__(self, mtcnn) -> None:
        self.mtcnn, self.calls = mtcnn, []
        self.originals = mtcnn.runners
        mtcnn.runners = [self._timed(name, call) for name, call in zip(("pnet", "rnet", "onet"), self.originals)]

    def restore(self) -> None:
        self.mtcnn.runners = self.originals

    def _timed(self, name, call):
        def run(x):
            t0 = time.perf_counter()
            out = call(x)
            self.calls.append((name, tuple(x.shape), 1000 * (time.perf_counter() - t0)))
            return out

        return run


def profile(detector, image: np.ndarray, repeats: int) -> dict:
    calls = CallTimes(detector.mtcnn)
    per_net: dict[str, list[float]] = defaultdict(list)
    levels: dict[str, list[float]] = defaultdict(list)
    batches: dict[str, list[int]] = defaultdict(list)
    totals, rest = [], []
    detector.detect(image)  # warm-up
    for _ in range(repeats):
        calls.calls.clear()
        t0 = time.perf_counter()
        detector.detect(image)
        total = 1000 * (time.perf_counter() - t0)
        totals.append(total)
        nets = defaultdict(float)
        for name, shape, ms in calls.calls:
            nets[name] += ms
            if name == "pnet":
                levels[f"{shape[3]}x{shape[2]}"].append(ms)
            else:
                batches[name].append(shape[0])
        for name in ("pnet", "rnet", "onet"):
            per_net[name].append(nets[name])
        rest.append(total - sum(nets.values()))
    calls.restore()
    med = lambda v: round(statistics.median(v), 2)  # noqa: E731
    return {
        "detect_ms": med(totals),
        "pnet_ms": med(per_net["pnet"]),
        "pnet_levels_ms": {size: med(v) for size, v in levels.items()},
        "rnet_ms": med(per_net["rnet"]),
        "rnet_batch": int(statistics.median(batches["rnet"])) if batches["rnet"] else 0,
        "onet_ms": med(per_net["onet"]),
        "onet_batch": int(statistics.median(batches["onet"])) if batches["onet"] else 0,
        "rest_ms": med(rest),
    }


def sweep(detector, args, photos: dict, lfw: list[Path], values: list[float], published: float, apply) -> dict:
    """One setting of the cascade at each of ``values`` (``apply(value)`` sets it), against its
    ``published`` value: the hand-marked crowd faces found, the same best face on the ``lfw`` photos,
    and the detection time on ``photos``, each repetition running every value back to back in an
    order that alternates (the median per-repetition ratio to ``published``; below 1: faster)."""
    out: dict[str, dict] = {}
    for v in values:
        apply(v)
        out[str(v)] = {
            "crowd": crowd_recall(detector, args.data / "photos" / "crowds", rgb),
            "levels_640x480": len(detector.mtcnn.scales(480, 640)),
        }
    best: dict[float, list] = {v: [] for v in values}
    for path in lfw:
        image = rgb(path)
        for v in values:
            apply(v)
            faces = detector.detect(image)
            best[v].append(faces[0].box.tolist() if faces else None)
    for v in values:
        pairs = list(zip(best[published], best[v]))
        both = [box_iou(a, b) for a, b in pairs if a is not None and b is not None]
        out[str(v)]["lfw"] = {
            "photos": len(lfw),
            "no_face": sum(b is None for b in best[v]),
            "only_one_finds_a_face": sum((a is None) != (b is None) for a, b in pairs),
            "best_face_iou_median": round(statistics.median(both), 4),
            "best_face_iou_below_0.9": sum(x < 0.9 for x in both),
            "best_face_iou_below_0.5": sum(x < 0.5 for x in both),
        }
    for key, image in photos.items():
        times: dict[float, list[float]] = {v: [] for v in values}
        for r in range(args.repeats):
            for v in values if r % 2 == 0 else values[::-1]:
                apply(v)
                t0 = time.perf_counter()
                detector.detect(image)
                times[v].append(1000 * (time.perf_counter() - t0))
        for v in values:
            ratios = [t / p for t, p in zip(times[v], times[published])]
            q1, q2, q3 = statistics.quantiles(ratios, n=4)
            out[str(v)].setdefault("speed", {})[key] = {
                "detect_p50_ms": round(statistics.median(times[v]), 2),
                f"time_ratio_to_{published}": {"median": round(q2, 3), "q1": round(q1, 3), "q3": round(q3, 3)},
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=data_root())
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--factors", type=float, nargs="+", default=[PUBLISHED_FACTOR, 0.65, 0.6, 0.55])
    parser.add_argument(
        "--pnet-thresholds", type=float, nargs="+", default=[0.6, 0.7, 0.8, 0.9], help="P-Net thresholds to sweep"
    )
    parser.add_argument("--lfw", type=int, default=1000, help="LFW photos for the same-face check (every n-th)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "detector_profile.json")
    args = parser.parse_args()
    if PUBLISHED_FACTOR not in args.factors:
        parser.error(f"--factors must include the published {PUBLISHED_FACTOR}: the others are compared with it")
    if MTCNN.PUBLISHED_THRESHOLDS[0] not in args.pnet_thresholds:
        parser.error(
            f"--pnet-thresholds must include the published {MTCNN.PUBLISHED_THRESHOLDS[0]}: the others are "
            "compared with it"
        )
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    known = args.data / "photos" / "known_people" / "knn_examples" / "test"
    photos = {
        "640x480_one_face": rgb(jpeg_640x480(known / "obama1.jpg")),
        "group_2000x1428_three_faces": rgb(known / "obama_and_biden.jpg"),
    }
    settings = Settings()
    threadpool_limits(1, user_api="blas")  # as the service does (app.main.build_service)
    with tempfile.TemporaryDirectory() as tmp:
        detector = build_pipeline(settings.pipeline_config, cache_dir=Path(tmp)).detector
    result: dict = {
        "command": "python bench/detector_profile.py " + " ".join(sys.argv[1:]),
        "detector": detector.key,
        "runtime": settings.runtime,
        "profile": {key: profile(detector, image, args.repeats) for key, image in photos.items()},
    }
    log.info("profile: %s", json.dumps(result["profile"], indent=1))

    lfw = sorted((args.data / "lfw").rglob("*.jpg"))
    lfw = lfw[:: max(1, len(lfw) // args.lfw)][: args.lfw]
    mtcnn = detector.mtcnn

    def set_factor(f: float) -> None:
        mtcnn.factor = f

    def set_pnet_threshold(t: float) -> None:
        mtcnn.thresholds = (t, *MTCNN.PUBLISHED_THRESHOLDS[1:])

    served = (mtcnn.factor, mtcnn.thresholds[0])
    set_pnet_threshold(MTCNN.PUBLISHED_THRESHOLDS[0])  # the factor sweep at the published thresholds
    result["factor_sweep"] = sweep(detector, args, photos, lfw, args.factors, PUBLISHED_FACTOR, set_factor)
    set_factor(served[0])  # the P-Net sweep at the service's factor
    result["pnet_threshold_sweep"] = sweep(
        detector, args, photos, lfw, args.pnet_thresholds, MTCNN.PUBLISHED_THRESHOLDS[0], set_pnet_threshold
    )
    set_pnet_threshold(served[1])
    log.info("sweeps: %s", json.dumps({k: result[k] for k in ("factor_sweep", "pnet_threshold_sweep")}, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
