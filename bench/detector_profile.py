"""Where the detector's time goes, and what a coarser pyramid would cost in faces found.

    python bench/detector_profile.py --out bench/results/detector_profile.json

1. **Profile** of the service's cascade (``Settings().pipeline_config``, ONNX Runtime on a CPU) on
   the benchmark photos of ``bench/pipeline_speed.py``: the median milliseconds of each network call
   (P-Net per pyramid level with its input size, R-Net and O-Net with their batch sizes), and the
   rest of ``detect`` (pyramid resampling, candidate crops, NMS) as the remainder.
2. **Pyramid factor sweep**: the cascade with each ``--factors`` ratio between pyramid levels (the
   published 0.709 is the service's), measured by what the detector test measures (the hand-marked
   crowd faces found, detections that match no marked face, at the service's settings), by whether
   the same face is found on ``--lfw`` LFW photos (the best face's box IoU with the 0.709 cascade's,
   and photos where it is found by one and not the other), and by speed: each repetition runs every
   factor back to back on the same photo, in an order that alternates, and the figure is the median
   per-repetition ratio to 0.709 (below 1: faster), as in ``bench/interleaved.py``.

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
from models.pipeline import build_pipeline  # noqa: E402
from training.config import data_root  # noqa: E402
from training.crowds import box_iou, crowd_recall  # noqa: E402

log = logging.getLogger("bench.detector_profile")
PUBLISHED = 0.709


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=data_root())
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--factors", type=float, nargs="+", default=[PUBLISHED, 0.65, 0.6, 0.55])
    parser.add_argument("--lfw", type=int, default=1000, help="LFW photos for the same-face check (every n-th)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "detector_profile.json")
    args = parser.parse_args()
    if PUBLISHED not in args.factors:
        parser.error(f"--factors must include the service's {PUBLISHED}: the others are compared with it")
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

    def with_factor(f: float):
        detector.mtcnn.factor = f
        return detector

    sweep: dict[str, dict] = {}
    for f in args.factors:
        with_factor(f)
        sweep[str(f)] = {"crowd": crowd_recall(detector, args.data / "photos" / "crowds", rgb)}
        sweep[str(f)]["levels_640x480"] = len(detector.mtcnn.scales(480, 640))
    # The same face on LFW photos: the best face of each factor against the published factor's.
    lfw = sorted((args.data / "lfw").rglob("*.jpg"))
    lfw = lfw[:: max(1, len(lfw) // args.lfw)][: args.lfw]
    best: dict[float, list] = {f: [] for f in args.factors}
    for path in lfw:
        image = rgb(path)
        for f in args.factors:
            faces = with_factor(f).detect(image)
            best[f].append(faces[0].box.tolist() if faces else None)
    for f in args.factors:
        pairs = list(zip(best[PUBLISHED], best[f]))
        both = [box_iou(a, b) for a, b in pairs if a is not None and b is not None]
        sweep[str(f)]["lfw"] = {
            "photos": len(lfw),
            "no_face": sum(b is None for b in best[f]),
            "only_one_finds_a_face": sum((a is None) != (b is None) for a, b in pairs),
            "best_face_iou_median": round(statistics.median(both), 4),
            "best_face_iou_below_0.5": sum(v < 0.5 for v in both),
        }
    # Speed, interleaved.
    for key, image in photos.items():
        times: dict[float, list[float]] = {f: [] for f in args.factors}
        for r in range(args.repeats):
            for f in args.factors if r % 2 == 0 else args.factors[::-1]:
                with_factor(f)
                t0 = time.perf_counter()
                detector.detect(image)
                times[f].append(1000 * (time.perf_counter() - t0))
        for f in args.factors:
            ratios = [t / p for t, p in zip(times[f], times[PUBLISHED])]
            q1, q2, q3 = statistics.quantiles(ratios, n=4)
            sweep[str(f)].setdefault("speed", {})[key] = {
                "detect_p50_ms": round(statistics.median(times[f]), 2),
                "time_ratio_to_0.709": {"median": round(q2, 3), "q1": round(q1, 3), "q3": round(q3, 3)},
            }
    with_factor(PUBLISHED)
    result["factor_sweep"] = sweep
    log.info("sweep: %s", json.dumps(sweep, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
