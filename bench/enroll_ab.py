"""Enrolment from one client, this checkout's service against another checkout's, in interleaved rounds.

    git worktree add /tmp/before <commit>
    python bench/enroll_ab.py --baseline-root /tmp/before --out bench/results/enroll_ab.json

Each round starts a fresh server of each checkout in turn (the order alternating) on a new state
directory, enrols the benchmark set of ``bench/pipeline_speed.py`` once to warm up and then
``--photos`` photos, one new identity each, from one client, and records photos per second. Both
servers read their networks from the same ONNX cache. Reported: every round's figure for each, their
medians and the median per-round ratio (above 1: this checkout faster). A change in the machine's speed
between rounds hits both alike.

A benchmark, not a test: run it with nothing else on the machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.testing import LiveServer  # noqa: E402
from bench.pipeline_speed import ONNX_CACHE  # noqa: E402
from training.config import data_root  # noqa: E402

log = logging.getLogger("bench.enroll_ab")


def enrol_rate(root: Path, photos: list[tuple[str, bytes]], count: int) -> float:
    """Photos per second enrolled by one client into a fresh server of the checkout at ``root``."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        LiveServer(
            Path(tmp) / "state", Path(tmp) / "server.log", root=root, FACEREC_ONNX_CACHE_DIR=str(ONNX_CACHE)
        ) as server,
        server.client() as client,
    ):
        for i, (name, body) in enumerate(photos):  # warm-up: every photo size seen once
            client.post("/enroll", data={"name": f"warm-up-{i}"}, files={"images": (name, body)}).raise_for_status()
        t0 = time.perf_counter()
        for i in range(count):
            name, body = photos[i % len(photos)]
            client.post("/enroll", data={"name": f"person-{i}"}, files={"images": (name, body)}).raise_for_status()
        return count / (time.perf_counter() - t0)


def commit_of(root: Path) -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
    ).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline-root", type=Path, required=True, help="the other checkout (a git worktree)")
    parser.add_argument("--data", type=Path, default=data_root())
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--photos", type=int, default=144)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "enroll_ab.json")
    args = parser.parse_args()
    if args.baseline_root.resolve() == ROOT:
        parser.error("--baseline-root is this checkout: nothing to compare")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    known = args.data / "photos" / "known_people" / "knn_examples"
    photos = [(p.name, p.read_bytes()) for p in sorted((known / "train").glob("*/*"))]
    roots = {"this": ROOT, "baseline": args.baseline_root.resolve()}
    rates: dict[str, list[float]] = {k: [] for k in roots}
    for r in range(args.rounds):
        for key in list(roots) if r % 2 == 0 else list(roots)[::-1]:
            rates[key].append(round(enrol_rate(roots[key], photos, args.photos), 2))
        log.info("round %d: %s", r, {k: v[-1] for k, v in rates.items()})
    result = {
        "command": "python bench/enroll_ab.py " + " ".join(sys.argv[1:]),
        "commits": {k: commit_of(root) for k, root in roots.items()},
        "photos_per_round": args.photos,
        "photos_per_s": rates,
        "median_photos_per_s": {k: round(statistics.median(v), 2) for k, v in rates.items()},
        "median_ratio_this_to_baseline": round(
            statistics.median(a / b for a, b in zip(rates["this"], rates["baseline"])), 3
        ),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    log.info("%s", result)


if __name__ == "__main__":
    main()
