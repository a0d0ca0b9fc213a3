"""Our in-process pipeline against the peers, call for call: the ratio that noise cannot fake.

    python bench/interleaved.py --out bench/results/interleaved.json
    FACEREC_EMBEDDER_INT8=1 python bench/interleaved.py --no-dlib --out bench/results/interleaved_int8.json

``bench/pipeline_speed.py`` times our service first and the peers minutes later; on these shared
machines the speed of the whole machine drifts by a third between such phases (four runs of it on one
afternoon gave YuNet + SFace / our pipeline on the 640x480 photo anywhere from 0.82 to 1.66). Here
each repetition runs our pipeline and each peer back to back on the same decoded photo, alternating who
goes first, so a slow stretch of the machine slows both; the figure is the median over repetitions of
the per-repetition ratio peer time / our time (above 1: we are faster), with its quartiles.

Ours is what the service runs for a photo inside its inference gate (``RecognitionService.faces``):
the pipeline the service's settings describe (``Settings().pipeline_config``, ONNX Runtime on a CPU),
detection then alignment + embedding of the kept faces; the peers (``bench/peers.py``) take the same
decoded RGB array. A benchmark, not a test: run it with nothing else on the machine.
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
from pathlib import Path

import numpy as np
from PIL import Image
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.config import Settings  # noqa: E402
from bench.peers import DlibPipeline, YuNetSFacePipeline  # noqa: E402
from bench.soak_identify import jpeg_640x480  # noqa: E402
from models.pipeline import build_pipeline  # noqa: E402
from training.config import data_root  # noqa: E402

log = logging.getLogger("bench.interleaved")


def quartiles(values: list[float]) -> dict:
    q1, q2, q3 = statistics.quantiles(values, n=4)
    return {"median": round(q2, 3), "q1": round(q1, 3), "q3": round(q3, 3)}


def compare(ours, peers: dict, rgb: np.ndarray, repeats: int) -> dict:
    """Per repetition: ours and every peer on ``rgb``, in an order that alternates."""
    names = ["ours", *peers]
    calls = {"ours": ours, **peers}
    found = {name: len(call(rgb)) for name, call in calls.items()}  # warm-up, and the faces found
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            t0 = time.perf_counter()
            calls[name](rgb)
            times[name].append(1000 * (time.perf_counter() - t0))
    out = {name: {"p50_ms": round(statistics.median(times[name]), 1), "faces": found[name]} for name in names}
    for name in peers:
        out[name]["ratio_to_ours"] = quartiles([p / o for p, o in zip(times[name], times["ours"])])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=data_root())
    parser.add_argument("--repeats", type=int, default=60)
    parser.add_argument("--no-dlib", action="store_true", help="leave out dlib (slow: ~1 s per group photo)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "interleaved.json")
    args = parser.parse_args()
    if args.repeats < 4:
        parser.error("--repeats must be at least 4 (quartiles of the ratios)")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    known = args.data / "photos" / "known_people" / "knn_examples" / "test"
    photos = {
        "640x480_one_face": jpeg_640x480(known / "obama1.jpg"),
        "group_2000x1428_three_faces": (known / "obama_and_biden.jpg").read_bytes(),
    }
    settings = Settings()
    threadpool_limits(1, user_api="blas")  # as the service does (app.main.build_service)
    with tempfile.TemporaryDirectory() as tmp:
        pipeline = build_pipeline(settings.pipeline_config, cache_dir=Path(tmp))

    def ours(rgb: np.ndarray) -> list:
        return pipeline.faces(rgb, settings.max_faces)

    peers = {p.name: p for p in ([YuNetSFacePipeline()] + ([] if args.no_dlib else [DlibPipeline()]))}
    result = {
        "command": "python bench/interleaved.py " + " ".join(sys.argv[1:]),
        "embedder": pipeline.embedder.version,
        "runtime": settings.runtime,
        "embedder_int8": settings.embedder_int8,  # FACEREC_EMBEDDER_INT8
        "repeats": args.repeats,
        "photos": {},
    }
    for key, body in photos.items():
        rgb = np.asarray(Image.open(io.BytesIO(body)).convert("RGB"))
        repeats = args.repeats if key.startswith("640") or args.no_dlib else max(4, args.repeats // 3)
        result["photos"][key] = compare(ours, peers, rgb, repeats)
        log.info("%s (%d repetitions): %s", key, repeats, result["photos"][key])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
