"""Which runtime runs each network fastest: the calls the service's pipeline makes for a photo, replayed
on every CPU runtime.

    python bench/runtime_speed.py --out bench/results/runtime_speed.json

The service's pipeline (``Settings().pipeline_config``) runs once on each benchmark photo of
``bench/pipeline_speed.py`` (the 640x480 portrait and the 2000x1428 group photo) with every network
call recorded: P-Net once per pyramid level, R-Net and O-Net on their candidates, the embedder on the
faces and their mirror images. Those exact inputs are then replayed on each of ``--runtimes`` --
``torch`` (eager), ``onnxruntime`` (fp32), ``openvino-fp32`` and ``openvino-bf16`` (OpenVINO with that
inference precision; bf16 only where the CPU computes it natively) -- from the same exported files,
network by network, in interleaved rounds (every runtime once per round, the order rotating), so a
change in the machine's speed hits all alike. Reported per photo and network: the median over rounds
of the milliseconds all of that network's calls for the photo took, and the ratio to ONNX Runtime in
the same rounds (median of the per-round ratios); and how far each runtime's outputs are from
PyTorch's (largest absolute difference; for the embedder, the smallest cosine of a face's vector to
PyTorch's, flip halves summed as the service does).

Then **first sight of a shape**: OpenVINO compiles its kernels for each new input shape at its first
call. Per network and CPU runtime, a fresh runner is called on ``--new-shapes`` inputs it has not seen
(P-Net: pyramid levels of random sizes; the others: batch sizes 1 ... N), then on the same ones again:
the milliseconds per call both times (what a photo of a size not seen before costs, and once seen).
And the same through the whole pipeline (``faces``) on the known-people photos (each of another size),
twice in a row, in fresh pipelines: as the service builds it, with P-Net on OpenVINO too, and on ONNX
Runtime alone; then the 640x480 photo repeated.

A benchmark, not a test: run it with nothing else on the machine (training paused).
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
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.config import Settings  # noqa: E402
from bench.soak_identify import jpeg_640x480  # noqa: E402
from models import runtime  # noqa: E402
from models.pipeline import build_pipeline, onnx_exports  # noqa: E402
from models.runtime import OrtNet, OvNet, TorchNet, exported_model  # noqa: E402
from training.config import data_root  # noqa: E402

log = logging.getLogger("bench.runtime_speed")
RUNTIMES = ("torch", "onnxruntime", "openvino-fp32", "openvino-bf16")


def record_calls(pipeline, image: np.ndarray) -> dict[str, list[np.ndarray]]:
    """Every input each network of ``pipeline`` is called with for ``image`` (detect, align, embed)."""
    calls: dict[str, list[np.ndarray]] = {"pnet": [], "rnet": [], "onet": [], "embedder": []}

    def recording(name, call):
        def run(x):
            calls[name].append(np.array(x, np.float32))
            return call(x)

        return run

    mtcnn, embedder = pipeline.detector.mtcnn, pipeline.embedder
    runners, embed_runner = mtcnn.runners, embedder.runner
    mtcnn.runners = [recording(n, r) for n, r in zip(("pnet", "rnet", "onet"), runners)]
    embedder._runner = recording("embedder", embed_runner)
    try:
        pipeline.faces(image)
    finally:
        mtcnn.runners, embedder._runner = runners, embed_runner
    return calls


def runner(name: str, model: bytes, module) -> object:
    """``name`` of :data:`RUNTIMES` running one network."""
    if name == "torch":
        return TorchNet(module, channels_last=True)
    if name == "onnxruntime":
        return OrtNet(model)
    return OvNet(model, precision=name.removeprefix("openvino-"))


def outputs(net, inputs: list[np.ndarray]) -> list[np.ndarray]:
    out = []
    for x in inputs:
        y = net(x)
        out.extend(y if isinstance(y, tuple) else (y,))
    return out


def distance(name: str, got: list[np.ndarray], ref: list[np.ndarray]) -> dict:
    """How far ``got`` is from PyTorch's ``ref``: the largest absolute difference; for the embedder also
    the smallest cosine between a face's vector (its two halves summed, unit length) and PyTorch's."""
    result = {"max_abs_diff": float(max(np.abs(g - r).max() for g, r in zip(got, ref)))}
    if name == "embedder":
        cosines = []
        for g, r in zip(got, ref):
            n = len(g) // 2
            a, b = g[:n] + g[n:], r[:n] + r[n:]
            a, b = a / np.linalg.norm(a, axis=1, keepdims=True), b / np.linalg.norm(b, axis=1, keepdims=True)
            cosines.extend((a * b).sum(1).tolist())
        result["min_cosine"] = float(min(cosines))
    return result


def first_sight(config, runtimes: list[str], count: int) -> dict:
    """Per network and CPU runtime: ms per call on ``count`` input shapes a fresh runner has not seen,
    then on the same shapes again."""
    rng = np.random.default_rng(0)
    out = {}
    for export in onnx_exports(config):
        if 2 in export.dynamic:  # P-Net: pyramid levels of any size
            shapes = [
                (1, 3, int(h), int(w)) for h, w in zip(rng.integers(24, 400, count), rng.integers(24, 400, count))
            ]
        else:
            shapes = [(n, *export.shape[1:]) for n in range(1, count + 1)]
        model, row = export.onnx(), {}
        for name in (r for r in runtimes if r != "torch"):
            net = runner(name, model, None)
            net(np.zeros(export.shape, np.float32))
            ms = []
            for _ in range(2):
                t0 = time.perf_counter()
                for shape in shapes:
                    net(np.zeros(shape, np.float32))
                ms.append(round(1000 * (time.perf_counter() - t0) / len(shapes), 2))
            row[name] = {"first_ms_per_call": ms[0], "again_ms_per_call": ms[1]}
        out[export.name] = row
        log.info("first sight, %s: %s", export.name, row)
    return out


def pipeline_first_sight(config, photos: list[np.ndarray], portrait: np.ndarray) -> dict:
    """ms per photo through fresh pipelines: ``photos`` at first sight and again, ``portrait`` repeated."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("served", "pnet_on_openvino_too", "onnxruntime"):
            pipeline = build_pipeline(
                replace(config, runtime="onnxruntime" if name == "onnxruntime" else "openvino"), cache_dir=Path(tmp)
            )
            if name == "pnet_on_openvino_too":
                mtcnn = pipeline.detector.mtcnn
                mtcnn.runners = (runtime.onnx_net(mtcnn.exports()[0], Path(tmp), None, "openvino"), *mtcnn.runners[1:])
            pipeline.faces(np.zeros((64, 64, 3), np.uint8))
            passes = []
            for _ in range(2):
                t0 = time.perf_counter()
                for image in photos:
                    pipeline.faces(image)
                passes.append(round(1000 * (time.perf_counter() - t0) / len(photos), 1))
            repeated = []
            for _ in range(40):
                t0 = time.perf_counter()
                pipeline.faces(portrait)
                repeated.append(1000 * (time.perf_counter() - t0))
            out[name] = {
                "first_sight_ms": passes[0],
                "again_ms": passes[1],
                "portrait_p50_ms": round(statistics.median(repeated), 2),
            }
            log.info("pipeline, %s: %s", name, out[name])
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=data_root())
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--runtimes", nargs="+", choices=RUNTIMES, default=list(RUNTIMES))
    parser.add_argument("--new-shapes", type=int, default=24, help="shapes per network for the first-sight part")
    parser.add_argument("--out", type=Path, default=None, help="write the results here as JSON")
    args = parser.parse_args(argv)
    if "openvino-bf16" in args.runtimes and not runtime.native_bf16():
        parser.error("this CPU does not compute bf16 natively: leave openvino-bf16 out of --runtimes")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    threadpool_limits(1, user_api="blas")  # as the service does (app.main.build_service)
    settings = Settings()
    config = settings.pipeline_config
    known = args.data / "photos" / "known_people" / "knn_examples" / "test"
    photos = {
        "640x480_one_face": np.asarray(Image.open(io.BytesIO(jpeg_640x480(known / "obama1.jpg"))).convert("RGB")),
        "group_2000x1428_three_faces": np.asarray(Image.open(known / "obama_and_biden.jpg").convert("RGB")),
    }
    with tempfile.TemporaryDirectory() as tmp:
        pipeline = build_pipeline(config, cache_dir=Path(tmp))
        calls = {photo: record_calls(pipeline, image) for photo, image in photos.items()}
        nets = {}
        for export in onnx_exports(config):
            model, module = exported_model(export, Path(tmp)), export.build().eval()
            nets[export.name] = {r: runner(r, model, module) for r in args.runtimes}
    result = {
        "command": "python bench/runtime_speed.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "embedder": pipeline.embedder.version,
        "service_runtime": runtime.resolve(settings.runtime, "cpu"),
        "threads": runtime.default_threads(),
        "rounds": args.rounds,
        "photos": {},
    }
    for photo, by_net in calls.items():
        result["photos"][photo] = rows = {}
        for name, inputs in by_net.items():
            if not inputs:
                continue
            on = nets[name]
            ref = outputs(on["torch"], inputs) if "torch" in on else None
            for r in on.values():  # warm up: first calls compile kernels and fill caches
                for _ in range(3):
                    outputs(r, inputs)
            times = {r: [] for r in on}
            order = list(on)
            for i in range(args.rounds):
                for r in order[i % len(order) :] + order[: i % len(order)]:
                    t0 = time.perf_counter()
                    outputs(on[r], inputs)
                    times[r].append(1000 * (time.perf_counter() - t0))
            base = times.get("onnxruntime")
            rows[name] = {
                "calls": len(inputs),
                "input_shapes": sorted({str(tuple(x.shape)) for x in inputs}),
                "runtimes": {
                    r: {
                        "p50_ms": round(statistics.median(ts), 3),
                        **(
                            {"ratio_to_onnxruntime": round(statistics.median(t / b for t, b in zip(ts, base)), 3)}
                            if base
                            else {}
                        ),
                        **(distance(name, outputs(on[r], inputs), ref) if ref is not None and r != "torch" else {}),
                    }
                    for r, ts in times.items()
                },
            }
            log.info("%s %s: %s", photo, name, rows[name]["runtimes"])
    result["first_sight"] = first_sight(config, args.runtimes, args.new_shapes)
    known_photos = [np.asarray(Image.open(p).convert("RGB")) for p in sorted((known.parent / "train").glob("*/*"))]
    result["pipeline_first_sight"] = pipeline_first_sight(config, known_photos, photos["640x480_one_face"])
    text = json.dumps(result, indent=1)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
