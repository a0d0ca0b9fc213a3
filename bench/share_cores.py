"""Two photos in the networks at once: each on one thread, or each on all (``app.services.gate``).

    python bench/share_cores.py --rounds 5 --out bench/results/share_cores.json

The service's pipeline (its factory and settings) on the 640x480 benchmark photo, in this process, from
two threads at once; rounds alternate the two modes (and which goes first), so a change in the machine's
speed hits both alike: photos per second and CPU per photo, and each round's ratio one / all.

Then what micro-batching faces across requests could add: the embedder alone (flip TTA, as served) on
1, 2, 4 and 8 faces per call, on one thread and on all, in milliseconds of CPU and of wall time per face.
A benchmark, not a test: run it with nothing else on the machine.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.config import Settings  # noqa: E402
from bench.soak_identify import jpeg_640x480  # noqa: E402
from models import runtime  # noqa: E402
from models.pipeline import build_pipeline  # noqa: E402
from training.config import data_root  # noqa: E402


def run(pipeline, rgb: np.ndarray, photos: int, single: bool) -> dict:
    def work(n: int) -> None:
        with runtime.single_threaded() if single else nullcontext():
            for _ in range(n):
                pipeline.faces(rgb)

    cpu, t0 = time.process_time(), time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(work, [photos // 2] * 2))
    wall = time.perf_counter() - t0
    return {
        "photos_per_s": round(photos / wall, 2),
        "cpu_ms_per_photo": round(1000 * (time.process_time() - cpu) / photos, 1),
    }


def embed_batches(pipeline, rgb: np.ndarray, calls: int) -> list[dict]:
    """CPU and wall milliseconds per face of ``Embedder.embed`` on n copies of the photo's aligned face."""
    face = pipeline.detect(rgb)[0]
    crop = pipeline.aligner.align(rgb, pipeline.alignment_points(rgb, [face])[0][0])
    rows = []
    for single in (True, False):
        for n in (1, 2, 4, 8):
            with runtime.single_threaded() if single else nullcontext():
                for _ in range(5):
                    pipeline.embedder.embed([crop] * n)
                cpu, t0 = time.process_time(), time.perf_counter()
                for _ in range(calls):
                    pipeline.embedder.embed([crop] * n)
            wall = time.perf_counter() - t0
            rows.append(
                {
                    "threads": "one" if single else "all",
                    "faces_per_call": n,
                    "cpu_ms_per_face": round(1000 * (time.process_time() - cpu) / (calls * n), 2),
                    "wall_ms_per_face": round(1000 * wall / (calls * n), 2),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=data_root())
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--photos", type=int, default=80, help="photos per mode and round")
    parser.add_argument("--calls", type=int, default=40, help="embedder calls per batch size and thread mode")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "share_cores.json")
    args = parser.parse_args()
    photo = jpeg_640x480(args.data / "photos" / "known_people" / "knn_examples" / "test" / "obama1.jpg")
    rgb = np.asarray(Image.open(io.BytesIO(photo)).convert("RGB"))
    pipeline = build_pipeline(Settings().pipeline_config, cache_dir=Path.home() / ".cache" / "facerec" / "onnx")
    if pipeline.runtime != "onnxruntime":
        parser.error("the service shares cores only on ONNX Runtime (a CPU); this pipeline runs on PyTorch")
    for _ in range(10):
        pipeline.faces(rgb)
    rounds = []
    for r in range(args.rounds):
        modes = ("one", "all") if r % 2 == 0 else ("all", "one")
        row = {mode: run(pipeline, rgb, args.photos, mode == "one") for mode in modes}
        row["ratio_one_to_all"] = round(row["one"]["photos_per_s"] / row["all"]["photos_per_s"], 3)
        print(json.dumps(row), flush=True)
        rounds.append(row)
    result = {
        "command": "python bench/share_cores.py " + " ".join(sys.argv[1:]),
        "threads_per_network_alone": runtime.default_threads(),
        "rounds": rounds,
        "median_ratio_one_to_all": round(statistics.median(r["ratio_one_to_all"] for r in rounds), 3),
        "embedder_batches": embed_batches(pipeline, rgb, args.calls),
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
