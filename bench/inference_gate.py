"""Concurrent /identify throughput by the inference gate's settings (``app.services.gate``).

    python bench/inference_gate.py --settings 2 0 2 0 --out bench/results/inference_gate.json
    python bench/inference_gate.py --settings 2/1 2/0 2/1 2/0 --out bench/results/inference_share_cores.json

A setting is FACEREC_INFERENCE_CONCURRENCY (photos whose networks may run at once), optionally with
``/`` and FACEREC_INFERENCE_SHARE_CORES (1: a photo that enters while another is inside runs its
networks on one thread; the service's default when omitted). For each setting in turn (repeat them to
see the machine's noise): a live server with six enrolled faces, then 96 requests of the 640x480
one-face photo from 1, 4 and 16 clients: requests/s and the server's CPU per request (its worker
processes included). ``--workers N`` serves with N uvicorn processes on the one state directory, and
``--threads T`` gives each process's networks T threads (``OMP_NUM_THREADS``; default: every core).
A benchmark, not a test: run it with nothing else on the machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.testing import LiveServer  # noqa: E402
from bench.pipeline_speed import throughput  # noqa: E402
from bench.soak_identify import jpeg_640x480  # noqa: E402
from training.config import data_root  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=data_root())
    parser.add_argument("--settings", nargs="+", default=["2", "0", "2", "0"], help="CONCURRENCY[/SHARE_CORES]")
    parser.add_argument("--requests", type=int, default=96)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (default 1)")
    parser.add_argument("--threads", type=int, default=None, help="network threads per process (OMP_NUM_THREADS)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "inference_gate.json")
    args = parser.parse_args()
    known = args.data / "photos" / "known_people" / "knn_examples"
    photo = ("obama_640x480.jpg", jpeg_640x480(known / "test" / "obama1.jpg"))
    rows = []
    for setting in args.settings:
        concurrency, _, share = setting.partition("/")
        env = {"FACEREC_INFERENCE_CONCURRENCY": str(int(concurrency))}
        if share:
            env["FACEREC_INFERENCE_SHARE_CORES"] = str(int(share))
        if args.threads:
            env["OMP_NUM_THREADS"] = str(args.threads)
        with (
            tempfile.TemporaryDirectory() as tmp,
            LiveServer(Path(tmp) / "state", Path(tmp) / "server.log", workers=args.workers, **env) as srv,
        ):
            with srv.client() as c:
                for p in sorted((known / "train").glob("*/*"))[:6]:
                    r = c.post(
                        "/enroll",
                        data={"name": f"{p.parent.name}-{p.stem}"},
                        files={"images": (p.name, p.read_bytes())},
                    )
                    r.raise_for_status()
            runs = {n: throughput(srv, photo, n, args.requests) for n in (1, 4, 16)}
            row = {
                "inference_concurrency": int(concurrency),
                **({"inference_share_cores": bool(int(share))} if share else {}),
                "workers": args.workers,
                **({"threads": args.threads} if args.threads else {}),
                "requests_per_s": {n: r["requests_per_s"] for n, r in runs.items()},
                "server_cpu_ms_per_request": {n: r["server_cpu_ms_per_request"] for n, r in runs.items()},
            }
        print(json.dumps(row), flush=True)
        rows.append(row)
    args.out.write_text(
        json.dumps({"command": "python bench/inference_gate.py " + " ".join(sys.argv[1:]), "runs": rows}, indent=1)
        + "\n"
    )


if __name__ == "__main__":
    main()
