"""Time to embed one face (batch of one, as ``/identify`` embeds a portrait) for several exported embedders.

    python bench/embed_speed.py --weights models/weights/arcface_iresnet18_half_80_lm68_light.pt \
        /tmp/cand/light_r26.pt /tmp/cand/light_r34.pt --out bench/results/embed_speed.json

Each embedder runs through :class:`models.embedder.Embedder` (its card's input size and flip TTA, as the
service runs it) on one real aligned training crop, on each of ``--runtimes``: ``torch`` (eager),
``onnxruntime``, ``openvino`` (bf16 on a CPU that computes it natively: the CPU service's default there) and
``int8`` (the card's quantized network on ONNX Runtime, ``training.quantize``). The embedders are timed in interleaved rounds, so a
change in the machine's load hits all of them alike; ratios are against the first ``--weights``, measured
in the same run (the first weights on the first runtime). The issue's budget is 10 ms per face on this CPU.

``--faces 1 8 64`` also times calls of several faces (a group photo, or faces gathered from several
requests), reported per call and per face; ``--device cuda`` runs the ``torch`` runtime on a GPU (bf16, as
the service there: ``bench/gpu_speed.sh``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.embedder import Embedder  # noqa: E402
from training.config import data_root  # noqa: E402
from training.lfw import read_rgb  # noqa: E402

log = logging.getLogger("bench.embed_speed")


def one_crop(path: Path | None = None) -> np.ndarray:
    """The first aligned 112x112 training crop, RGB; or the image at ``path`` resized to 112x112 (where
    the shared set is not at hand: the time does not depend on what the crop shows)."""
    if path is not None:
        return cv2.resize(read_rgb(path), (112, 112), interpolation=cv2.INTER_AREA)
    folder = min((data_root() / "recognition" / "train").iterdir())
    return read_rgb(min(folder.glob("*.jpg")))


def embedder_on(weights: Path, runtime: str, device: str = "cpu") -> Embedder:
    embedder = Embedder(weights, device)
    if runtime == "openvino":
        embedder.use_exported("openvino")
    elif runtime != "torch":
        embedder.use_onnxruntime(int8=runtime == "int8")
    return embedder


def time_embedders(
    weights: list[Path],
    rounds: int,
    runtimes: tuple[str, ...] = ("torch",),
    warmup: int = 20,
    faces: tuple[int, ...] = (1,),
    device: str = "cpu",
    crop_from: Path | None = None,
) -> list[dict]:
    """Median and 90th-percentile milliseconds of ``Embedder.embed`` on ``faces`` crops per embedder,
    runtime and number of faces."""
    crop = one_crop(crop_from)
    models = {(w, r): embedder_on(w, r, device) for w in weights for r in runtimes}
    runs = [(w, r, n) for w in weights for r in runtimes for n in faces]
    times: list[list[float]] = [[] for _ in runs]
    for w, r, n in runs:
        for _ in range(warmup):
            models[w, r].embed([crop] * n)
    for _ in range(rounds):
        for i, (w, r, n) in enumerate(runs):
            t0 = time.perf_counter()
            models[w, r].embed([crop] * n)  # returns numpy: a GPU's work is finished when it returns
            times[i].append(1000 * (time.perf_counter() - t0))
    base = statistics.median(times[0])
    rows = []
    for (w, runtime, n), ts in zip(runs, times):
        e, med = models[w, runtime], statistics.median(ts)
        rows.append(
            {
                "weights": str(w),
                "runtime": runtime,
                "precision": e.precision,
                "device": device,
                "faces": n,
                "architecture": e.card.architecture,
                "input_size": e.card.input_size,
                "flip_tta": e.card.flip_tta,
                "parameters": sum(p.numel() for p in e.model.parameters()),
                "p50_ms": round(med, 2),
                "p90_ms": round(float(np.percentile(ts, 90)), 2),
                "ms_per_face": round(med / n, 3),
                "ratio_vs_first": round(med / base, 2),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, nargs="+", required=True, help="exported embedders (.pt + .json)")
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument(
        "--runtimes",
        nargs="+",
        choices=("torch", "onnxruntime", "openvino", "int8"),
        default=["torch"],
        help="default: torch",
    )
    parser.add_argument("--faces", type=int, nargs="+", default=[1], help="crops per call (default: 1)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="default: cpu")
    parser.add_argument(
        "--crop-from", type=Path, help="embed this image resized to 112 px (default: the shared set's first crop)"
    )
    parser.add_argument("--out", type=Path, default=None, help="write the results here as JSON")
    args = parser.parse_args(argv)
    if args.device != "cpu" and args.runtimes != ["torch"]:
        parser.error(
            f"--runtimes {' '.join(args.runtimes)}: ONNX Runtime and OpenVINO run here on a CPU only; use torch on {args.device}"
        )
    if min(args.faces) < 1:
        parser.error("--faces: at least one crop per call")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    rows = time_embedders(
        args.weights,
        args.rounds,
        tuple(args.runtimes),
        faces=tuple(args.faces),
        device=args.device,
        crop_from=args.crop_from,
    )
    result = {
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "rounds": args.rounds,
        "command": "python bench/embed_speed.py " + " ".join(sys.argv[1:]),
        "embedders": rows,
    }
    for r in rows:
        log.info(
            "%s on %s/%s, %d faces (%s, %d px, flip %s): %.2f ms p50, %.2f ms p90, x%.2f",
            r["weights"],
            r["runtime"],
            r["device"],
            r["faces"],
            r["architecture"],
            r["input_size"],
            r["flip_tta"],
            r["p50_ms"],
            r["p90_ms"],
            r["ratio_vs_first"],
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
