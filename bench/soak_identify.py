"""Soak: 10,000 POST /identify requests against a real server, its resident memory every 1,000.

    python bench/soak_identify.py --requests 10000 --out bench/results/soak_identify.json

The gallery holds the five known people; requests cycle through three one-face photos (640x480
JPEG) and the group photo ``obama_and_biden.jpg``. Memory is read from /proc/<pid>/status (VmRSS)
after a warm-up of 50 requests and then every ``--every`` requests. The server is started once before
(its first start exports the networks for ONNX Runtime, which imports PyTorch) and measured from its
restart, as a service runs once its cache is filled. A benchmark, not a test.
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

from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.testing import LiveServer  # noqa: E402
from training.config import data_root  # noqa: E402

log = logging.getLogger("bench.soak")


def jpeg_640x480(path: Path) -> bytes:
    """The photo fitted into 640x480 (centre crop), as a JPEG: the size a webcam or phone preview sends."""
    image = ImageOps.fit(ImageOps.exif_transpose(Image.open(path)).convert("RGB"), (640, 480))
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=data_root())
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--every", type=int, default=1_000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "soak_identify.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    known = args.data / "photos" / "known_people" / "knn_examples"
    photos = [
        (p.name, jpeg_640x480(p))
        for p in (
            known / "test" / "obama1.jpg",
            known / "test" / "johnsnow_test1.jpg",
            known / "test" / "alex_lacamoire1.jpg",
        )
    ]
    photos.append(("obama_and_biden.jpg", (known / "test" / "obama_and_biden.jpg").read_bytes()))
    samples, statuses, latencies = [], {}, []
    with tempfile.TemporaryDirectory() as tmp:
        state, server_log = Path(tmp) / "state", Path(tmp) / "server.log"
        with LiveServer(state, server_log):
            pass  # the first start: exports the networks into the state's cache
        with LiveServer(state, server_log) as server, server.client() as client:
            for person in sorted((known / "train").iterdir()):
                files = [("images", (p.name, p.read_bytes())) for p in sorted(person.iterdir())]
                client.post("/enroll", data={"name": person.name}, files=files).raise_for_status()
            for i in range(50):  # warm-up: allocator pools, thread pool, lazy imports
                client.post("/identify", files={"image": photos[i % len(photos)]}).raise_for_status()
            samples.append({"requests": 0, "rss_mb": round(server.rss_mb(), 1)})
            torch_mapped = "libtorch" in Path(f"/proc/{server.proc.pid}/maps").read_text()
            log.info("after warm-up: %.1f MiB", samples[0]["rss_mb"])
            t_start = time.perf_counter()
            for i in range(1, args.requests + 1):
                t0 = time.perf_counter()
                r = client.post("/identify", files={"image": photos[i % len(photos)]})
                latencies.append(1000 * (time.perf_counter() - t0))
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                if i % args.every == 0:
                    samples.append(
                        {
                            "requests": i,
                            "rss_mb": round(server.rss_mb(), 1),
                            "p50_ms_last": round(statistics.median(latencies[-args.every :]), 1),
                        }
                    )
                    log.info(
                        "%6d requests: %.1f MiB, p50 %.1f ms over the last %d",
                        i,
                        samples[-1]["rss_mb"],
                        samples[-1]["p50_ms_last"],
                        args.every,
                    )
            wall = time.perf_counter() - t_start
    growth = samples[-1]["rss_mb"] - samples[1]["rss_mb"] if len(samples) > 2 else None
    result = {
        "requests": args.requests,
        "statuses": statuses,
        "wall_s": round(wall, 1),
        "samples": samples,
        "rss_start_mb": samples[0]["rss_mb"],
        "server_has_pytorch_loaded": torch_mapped,
        "rss_end_mb": samples[-1]["rss_mb"],
        "growth_after_first_interval_mb": growth,
        "p50_ms": round(statistics.median(latencies), 1),
        "command": "python bench/soak_identify.py " + " ".join(sys.argv[1:]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    log.info(
        "start %.1f MiB, end %.1f MiB (%s MiB after the first %d); statuses %s; %s",
        result["rss_start_mb"],
        result["rss_end_mb"],
        growth,
        args.every,
        statuses,
        args.out,
    )


if __name__ == "__main__":
    main()
