"""How fast the service is, end to end over HTTP, against two established pipelines on the same photos.

    python bench/pipeline_speed.py --out bench/results/pipeline_speed.json

- ``/identify`` for a 640x480 photo with one face and for a group photo: p50 / p95, and the median of
  each stage from the ``Server-Timing`` header (decode, detect, align, embed, search);
- enrolment throughput (photos per second, one new identity per photo, one client), for the shared
  portraits (0.4-2.1 Mpx) and for the same portraits as 12 Mpx phone-size JPEGs (upscaled 4000 px);
- concurrent ``/identify`` throughput with 1, 4 and 16 clients, with the CPU each request cost the
  server and the client, and the pipeline alone in process from 1 and 2 threads (the ceiling the
  networks set: no HTTP, decoding or search);
- with ``--baseline-runtime torch``, the same for the service on PyTorch eager (its default is ONNX
  Runtime on a CPU), as ``runtime_torch``, with the pipeline's ratio torch / default per photo;
- with ``--device cuda`` the service and the in-process pipeline run on the GPU (``FACEREC_DEVICE``;
  PyTorch, bf16), and ``--baseline-device cpu`` measures the same machine's CPU in the same run, as
  ``device_cpu`` (``bench/gpu_speed.sh`` runs this on a lent GPU);
- dlib and OpenCV YuNet + SFace (``bench/peers.py``) on the same decoded photos, in-process, in the
  same run; ratios are peer time / our time (above 1: we are faster). Peers skip HTTP and decoding,
  so the ratios against our end-to-end time are conservative; ratios against our in-process pipeline
  (sum of detect + align + embed) are also given.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.testing import LiveServer  # noqa: E402
from bench.soak_identify import jpeg_640x480  # noqa: E402
from training.config import data_root  # noqa: E402

#: The networks exported for ONNX Runtime, shared by the servers and the in-process pipeline: filled
#: before the servers start, so each is measured as a restarted service runs (no export, no PyTorch).
ONNX_CACHE = Path.home() / ".cache" / "facerec" / "onnx"
log = logging.getLogger("bench.speed")


def stats(ms: list[float]) -> dict:
    return {"p50_ms": round(statistics.median(ms), 1), "p95_ms": round(float(np.percentile(ms, 95)), 1), "n": len(ms)}


def server_timing(header: str) -> dict[str, float]:
    return {part.split(";dur=")[0].strip(): float(part.split(";dur=")[1]) for part in header.split(",") if part}


def phone_size(photo: tuple[str, bytes]) -> tuple[str, bytes]:
    """The photo upscaled to a 12 Mpx phone-camera size (4000 x 3000 area), as a quality-90 JPEG."""
    name, body = photo
    image = Image.open(io.BytesIO(body)).convert("RGB")
    factor = (12e6 / (image.width * image.height)) ** 0.5
    out = io.BytesIO()
    image.resize((round(image.width * factor), round(image.height * factor)), Image.LANCZOS).save(
        out, "JPEG", quality=90
    )
    return name, out.getvalue()


def time_identify(client, photo: tuple[str, bytes], repeats: int) -> dict:
    client.post("/identify", files={"image": photo}).raise_for_status()  # warm-up
    total, stages = [], {}
    for _ in range(repeats):
        t0 = time.perf_counter()
        r = client.post("/identify", files={"image": photo})
        total.append(1000 * (time.perf_counter() - t0))
        r.raise_for_status()
        for k, v in server_timing(r.headers["server-timing"]).items():
            stages.setdefault(k, []).append(v)
    out = stats(total)
    out["faces"] = len(r.json()["faces"])
    out["stages_p50_ms"] = {k: round(statistics.median(v), 2) for k, v in stages.items()}
    out["pipeline_p50_ms"] = round(sum(out["stages_p50_ms"].get(k, 0) for k in ("detect", "align", "embed")), 1)
    return out


def time_peer(peer, rgb: np.ndarray, repeats: int) -> dict:
    peer(rgb)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        faces = peer(rgb)
        times.append(1000 * (time.perf_counter() - t0))
    return {**stats(times), "faces": len(faces)}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process and its live child processes (uvicorn's workers) have used so
    far (Linux ``/proc``), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    children = [int(c) for t in Path(f"/proc/{pid}/task").iterdir() for c in (t / "children").read_text().split()]
    return own + sum(cpu_seconds(c) for c in children)


def throughput(server: LiveServer, photo, clients: int, requests: int) -> dict:
    """Requests per second with ``clients`` at once, and the CPU each request cost the server and
    this (client) process: with both on one machine, cores / (server + client CPU per request) is
    the most the machine could serve."""

    def worker(n: int) -> int:
        with server.client() as c:
            for _ in range(n):
                c.post("/identify", files={"image": photo}).raise_for_status()
        return n

    server_cpu, client_cpu = cpu_seconds(server.pid), time.process_time()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        done = sum(pool.map(worker, [requests // clients] * clients))
    wall = time.perf_counter() - t0
    return {
        "clients": clients,
        "requests": done,
        "requests_per_s": round(done / wall, 2),
        "server_cpu_ms_per_request": round(1000 * (cpu_seconds(server.pid) - server_cpu) / done, 1),
        "client_cpu_ms_per_request": round(1000 * (time.process_time() - client_cpu) / done, 1),
    }


def pipeline_throughput(photo: bytes, photos: int, device: str = "cpu") -> list[dict]:
    """The service's pipeline in this process (its factory and inference gate, with the settings the
    server reads from the environment) on ``device`` and one decoded photo, from 1 and 2 threads at
    once: photos per second and CPU per photo -- the ceiling the networks alone set for the service's
    throughput (no HTTP, decoding or search)."""
    from app.config import Settings
    from app.services.gate import InferenceGate
    from models.pipeline import build_pipeline

    settings = Settings()
    pipeline = build_pipeline(settings.pipeline_config, device, cache_dir=ONNX_CACHE)
    gate = InferenceGate.for_pipeline(settings, pipeline)  # the service's: sharing photos run on one thread
    rgb = np.asarray(Image.open(io.BytesIO(photo)).convert("RGB"))

    def faces(n: int) -> None:
        for _ in range(n):
            with gate():
                pipeline.faces(rgb)

    faces(5)
    out = []
    for threads in (1, 2):
        cpu, t0 = time.process_time(), time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(faces, [photos // threads] * threads))
        wall, done = time.perf_counter() - t0, photos // threads * threads
        out.append(
            {
                "threads": threads,
                "photos_per_s": round(done / wall, 2),
                "cpu_ms_per_photo": round(1000 * (time.process_time() - cpu) / done, 1),
            }
        )
    return out


def measure_service(args, photos: dict, enroll_photos: list, env: dict) -> dict:
    """Enrolment, /identify and throughput of one live server started with ``env``."""
    result = {"server_env": env, "identify": {}}
    with (
        tempfile.TemporaryDirectory() as tmp,
        LiveServer(
            Path(tmp) / "state", Path(tmp) / "server.log", FACEREC_ONNX_CACHE_DIR=str(ONNX_CACHE), **env
        ) as server,
    ):
        with server.client() as client:
            for key, photos_set in (
                ("enroll_photos_per_s", enroll_photos),
                ("enroll_12mpx_photos_per_s", [phone_size(p) for p in enroll_photos]),
            ):
                client.post(
                    "/enroll", data={"name": f"warm-up-{key}"}, files={"images": photos_set[0]}
                ).raise_for_status()
                t0 = time.perf_counter()
                for i in range(args.enroll_photos):
                    name, body = photos_set[i % len(photos_set)]
                    client.post(
                        "/enroll", data={"name": f"{key}-{i}"}, files={"images": (name, body)}
                    ).raise_for_status()
                result[key] = round(args.enroll_photos / (time.perf_counter() - t0), 2)
                log.info("%s %s: %.1f", env, key, result[key])
            for key, photo in photos.items():
                result["identify"][key] = time_identify(client, photo, args.repeats)
                log.info("%s %s: %s", env, key, result["identify"][key])
        result["throughput"] = [
            throughput(server, photos["640x480_one_face"], c, args.throughput_requests) for c in (1, 4, 16)
        ]
        log.info("%s throughput: %s", env, result["throughput"])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=data_root())
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--enroll-photos", type=int, default=40)
    parser.add_argument("--throughput-requests", type=int, default=64)
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument(
        "--baseline-runtime",
        choices=["torch", "onnxruntime", "openvino"],
        help="also measure the service with FACEREC_RUNTIME set to this, in the same run",
    )
    parser.add_argument(
        "--device",
        choices=["cpu", "cuda"],
        default="cpu",
        help="where the service's and the in-process pipeline's networks run (FACEREC_DEVICE); default cpu",
    )
    parser.add_argument("--baseline-device", choices=["cpu", "cuda"], help="also measure the service on this device")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "pipeline_speed.json")
    args = parser.parse_args()
    if args.baseline_device == args.device:
        parser.error(f"--baseline-device {args.baseline_device} is --device already: nothing to compare")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    known = args.data / "photos" / "known_people" / "knn_examples"
    photos = {
        "640x480_one_face": ("obama_640x480.jpg", jpeg_640x480(known / "test" / "obama1.jpg")),
        "group_2000x1428_three_faces": ("obama_and_biden.jpg", (known / "test" / "obama_and_biden.jpg").read_bytes()),
    }
    enroll_photos = [(p.name, p.read_bytes()) for p in sorted((known / "train").glob("*/*"))]
    result = {
        "cpus": os.cpu_count(),
        "command": "python bench/pipeline_speed.py " + " ".join(sys.argv[1:]),
        "peers": {},
    }
    from app.config import Settings
    from models.pipeline import build_pipeline

    if "cpu" in (args.device, args.baseline_device):  # exports what the cache lacks
        build_pipeline(Settings().pipeline_config, cache_dir=ONNX_CACHE)
    result.update(measure_service(args, photos, enroll_photos, {"FACEREC_DEVICE": args.device}))
    result["pipeline_in_process_throughput"] = pipeline_throughput(
        photos["640x480_one_face"][1], args.throughput_requests, args.device
    )
    log.info("pipeline in process: %s", result["pipeline_in_process_throughput"])
    # The same measurements with the networks on another runtime or device, in the same run.
    baselines = {}
    if args.baseline_runtime:
        baselines[f"runtime_{args.baseline_runtime}"] = {"FACEREC_RUNTIME": args.baseline_runtime}
    if args.baseline_device:
        baselines[f"device_{args.baseline_device}"] = {"FACEREC_DEVICE": args.baseline_device}
    for name, env in baselines.items():
        base = measure_service(args, photos, enroll_photos, {"FACEREC_DEVICE": args.device, **env})
        base["ratios"] = {
            key: round(base["identify"][key]["pipeline_p50_ms"] / result["identify"][key]["pipeline_p50_ms"], 2)
            for key in photos
        }
        result[name] = base
    if not args.no_peers:
        from bench.peers import DlibPipeline, YuNetSFacePipeline

        for peer in (DlibPipeline(), YuNetSFacePipeline()):
            result["peers"][peer.name] = {}
            for key, (_, body) in photos.items():
                rgb = np.asarray(Image.open(io.BytesIO(body)).convert("RGB"))
                t = time_peer(peer, rgb, args.repeats)
                ours = result["identify"][key]
                t["ratio_vs_our_http_p50"] = round(t["p50_ms"] / ours["p50_ms"], 2)
                t["ratio_vs_our_pipeline_p50"] = round(t["p50_ms"] / ours["pipeline_p50_ms"], 2)
                result["peers"][peer.name][key] = t
                log.info("%s %s: %s", peer.name, key, t)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
