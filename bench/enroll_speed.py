"""Bulk enrolment as a user runs it: ``facerec enroll FOLDER --jobs N`` against a live service.

    python bench/enroll_speed.py --out bench/results/enroll_speed.json

The benchmark set of ``bench/pipeline_speed.py`` (the shared known-people portraits, 0.4-2.1 Mpx,
cycled to ``--photos`` people of one photo each; with ``--phone-size`` the same as 12 Mpx JPEGs) is
enrolled by the command line's own code (``app.cli``, in this process; the service in its own) with
each ``--jobs`` value in turn, ``--rounds`` times in an order that alternates, every round with new
names so that nothing is skipped. Reported per ``--jobs``: photos per second (median and every
round), the CPU each photo cost the server and this client, and the median per-round ratio to
``--jobs 1`` (above 1: faster), as in ``bench/interleaved.py``.

A benchmark, not a test: run it with nothing else on the machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.cli import main as cli  # noqa: E402
from app.testing import ADMIN_KEY, LiveServer  # noqa: E402
from bench.pipeline_speed import cpu_seconds, phone_size  # noqa: E402
from training.config import data_root  # noqa: E402

log = logging.getLogger("bench.enroll")


def people_folder(root: Path, photos: list[tuple[str, bytes]], count: int, prefix: str) -> Path:
    """``count`` people of one photo each, named ``prefix-i``, the photos cycled."""
    folder = root / prefix
    for i in range(count):
        name, body = photos[i % len(photos)]
        person = folder / f"{prefix}-{i:03d}"
        person.mkdir(parents=True)
        (person / name).write_bytes(body)
    return folder


def enrol(server: LiveServer, folder: Path, jobs: int, count: int) -> dict:
    env = {"FACEREC_URL": server.url, "FACEREC_API_KEY": ADMIN_KEY}
    server_cpu, client_cpu, t0 = cpu_seconds(server.pid), time.process_time(), time.perf_counter()
    result = CliRunner().invoke(cli, ["enroll", str(folder), "--jobs", str(jobs)], env=env)
    wall = time.perf_counter() - t0
    if result.exit_code != 0 or f"{count} people created" not in result.output:
        raise SystemExit(f"facerec enroll --jobs {jobs} did not enrol {count} people:\n{result.output}")
    return {
        "photos_per_s": count / wall,
        "server_cpu_ms_per_photo": 1000 * (cpu_seconds(server.pid) - server_cpu) / count,
        "client_cpu_ms_per_photo": 1000 * (time.process_time() - client_cpu) / count,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=data_root())
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--photos", type=int, default=40, help="people (one photo each) per round and --jobs")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--phone-size", action="store_true", help="the photos as 12 Mpx JPEGs")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "enroll_speed.json")
    args = parser.parse_args()
    if 1 not in args.jobs:
        parser.error("--jobs must include 1: the ratios are to it")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    known = args.data / "photos" / "known_people" / "knn_examples"
    photos = [(p.name, p.read_bytes()) for p in sorted((known / "train").glob("*/*"))]
    if args.phone_size:
        photos = [phone_size(p) for p in photos]
    runs: dict[int, list[dict]] = {jobs: [] for jobs in args.jobs}
    with tempfile.TemporaryDirectory() as tmp, LiveServer(Path(tmp) / "state", Path(tmp) / "server.log") as server:
        enrol(server, people_folder(Path(tmp), photos, 4, "warm-up"), 1, 4)
        for r in range(args.rounds):
            order = args.jobs if r % 2 == 0 else args.jobs[::-1]
            for jobs in order:
                folder = people_folder(Path(tmp), photos, args.photos, f"r{r}-j{jobs}")
                runs[jobs].append(enrol(server, folder, jobs, args.photos))
                log.info("round %d, --jobs %d: %.1f photos/s", r, jobs, runs[jobs][-1]["photos_per_s"])
    result = {
        "command": "python bench/enroll_speed.py " + " ".join(sys.argv[1:]),
        "photos": "known-people portraits as 12 Mpx JPEGs" if args.phone_size else "known-people portraits",
        "people_per_round": args.photos,
        "jobs": {},
    }
    for jobs, rounds in runs.items():
        result["jobs"][str(jobs)] = {
            "photos_per_s_median": round(statistics.median(r["photos_per_s"] for r in rounds), 2),
            "photos_per_s_rounds": [round(r["photos_per_s"], 2) for r in rounds],
            "server_cpu_ms_per_photo": round(statistics.median(r["server_cpu_ms_per_photo"] for r in rounds), 1),
            "client_cpu_ms_per_photo": round(statistics.median(r["client_cpu_ms_per_photo"] for r in rounds), 1),
            "ratio_to_jobs_1_median": round(
                statistics.median(a["photos_per_s"] / b["photos_per_s"] for a, b in zip(rounds, runs[1])), 2
            ),
        }
    log.info(json.dumps(result["jobs"], indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
