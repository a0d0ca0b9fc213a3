"""Time POST /identify end to end over HTTP against a real server (uvicorn in a subprocess).

    python bench/identify_latency.py --repeats 10 --out bench/results/identify_latency.json

Enrolls the five known people into a temporary state dir, then sends every test photo ``--repeats``
times and prints the median and p95 per photo. A benchmark, not a test: numbers depend on the machine.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: the project's packages and tests.live

from tests.live import LiveServer
from training.config import data_root

log = logging.getLogger("bench")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=data_root(), help="shared data root (default FACEREC_DATA)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "identify_latency.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request drowns the table
    known = args.data / "photos" / "known_people" / "knn_examples"
    with tempfile.TemporaryDirectory() as tmp, LiveServer(Path(tmp) / "state", Path(tmp) / "server.log") as server:
        with server.client() as client:
            for person in sorted((known / "train").iterdir()):
                files = [("images", (p.name, p.read_bytes())) for p in sorted(person.iterdir())]
                client.post("/enroll", data={"name": person.name}, files=files).raise_for_status()
            results = {}
            for photo in sorted((known / "test").iterdir()):
                body = photo.read_bytes()
                client.post("/identify", files={"image": (photo.name, body)}).raise_for_status()  # warm-up
                times = []
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    r = client.post("/identify", files={"image": (photo.name, body)})
                    times.append(1000 * (time.perf_counter() - t0))
                    r.raise_for_status()
                faces = len(r.json()["faces"])
                results[photo.name] = {"faces": faces, "median_ms": float(np.median(times)),
                                       "p95_ms": float(np.percentile(times, 95))}
                log.info("%-22s %d faces  median %7.1f ms  p95 %7.1f ms", photo.name, faces,
                         results[photo.name]["median_ms"], results[photo.name]["p95_ms"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                                    "repeats": args.repeats, "photos": results}, indent=2))


if __name__ == "__main__":
    main()
