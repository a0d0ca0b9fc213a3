"""Concurrent /identify throughput by FACEREC_INFERENCE_CONCURRENCY (photos whose networks may run at once).

    python bench/inference_gate.py --settings 2 0 2 0 --out bench/results/inference_gate.json

For each setting in turn (repeat them to see the machine's noise): a live server with six enrolled
faces, then 96 requests of the 640x480 one-face photo from 1, 4 and 16 clients: requests/s.
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
    parser.add_argument("--settings", type=int, nargs="+", default=[2, 0, 2, 0])
    parser.add_argument("--requests", type=int, default=96)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "inference_gate.json")
    args = parser.parse_args()
    known = args.data / "photos" / "known_people" / "knn_examples"
    photo = ("obama_640x480.jpg", jpeg_640x480(known / "test" / "obama1.jpg"))
    rows = []
    for setting in args.settings:
        with (
            tempfile.TemporaryDirectory() as tmp,
            LiveServer(
                Path(tmp) / "state", Path(tmp) / "server.log", FACEREC_INFERENCE_CONCURRENCY=str(setting)
            ) as srv,
        ):
            with srv.client() as c:
                for p in sorted((known / "train").glob("*/*"))[:6]:
                    r = c.post(
                        "/enroll",
                        data={"name": f"{p.parent.name}-{p.stem}"},
                        files={"images": (p.name, p.read_bytes())},
                    )
                    r.raise_for_status()
            row = {
                "inference_concurrency": setting,
                "requests_per_s": {n: throughput(srv, photo, n, args.requests)["requests_per_s"] for n in (1, 4, 16)},
            }
        print(json.dumps(row), flush=True)
        rows.append(row)
    args.out.write_text(
        json.dumps({"command": "python bench/inference_gate.py " + " ".join(sys.argv[1:]), "runs": rows}, indent=1)
        + "\n"
    )


if __name__ == "__main__":
    main()
