"""Time to embed one face (batch of one, as ``/identify`` embeds a portrait) for several exported embedders.

    python bench/embed_speed.py --weights models/weights/arcface_iresnet18_half_80_lm68_light.pt \
        /tmp/cand/light_r26.pt /tmp/cand/light_r34.pt --out bench/results/embed_speed.json

Each embedder runs through :class:`models.embedder.Embedder` (its card's input size and flip TTA, as the
service runs it) on one real aligned training crop, on each of ``--runtimes``: ``torch`` (eager),
``onnxruntime`` (the CPU service's default) and ``int8`` (the card's quantized network, ``training.quantize``). The embedders are timed in interleaved rounds, so a
change in the machine's load hits all of them alike; ratios are against the first ``--weights``, measured
in the same run (the first weights on the first runtime). The issue's budget is 10 ms per face on this CPU.
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

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.embedder import Embedder  # noqa: E402
from training.config import data_root  # noqa: E402
from training.lfw import read_rgb  # noqa: E402

log = logging.getLogger("bench.embed_speed")


def one_crop() -> np.ndarray:
    """The first aligned 112x112 training crop, RGB."""
    folder = min((data_root() / "recognition" / "train").iterdir())
    return read_rgb(min(folder.glob("*.jpg")))


def embedder_on(weights: Path, runtime: str) -> Embedder:
    embedder = Embedder(weights)
    if runtime != "torch":
        embedder.use_onnxruntime(int8=runtime == "int8")
    return embedder


def time_embedders(
    weights: list[Path], rounds: int, runtimes: tuple[str, ...] = ("torch",), warmup: int = 20
) -> list[dict]:
    """Median and 90th-percentile milliseconds of ``Embedder.embed([crop])`` per embedder and runtime."""
    crop = one_crop()
    runs = [(w, r) for w in weights for r in runtimes]
    embedders = [embedder_on(w, r) for w, r in runs]
    times: list[list[float]] = [[] for _ in embedders]
    for e in embedders:
        for _ in range(warmup):
            e.embed([crop])
    for _ in range(rounds):
        for i, e in enumerate(embedders):
            t0 = time.perf_counter()
            e.embed([crop])
            times[i].append(1000 * (time.perf_counter() - t0))
    base = statistics.median(times[0])
    rows = []
    for (w, runtime), e, ts in zip(runs, embedders, times):
        med = statistics.median(ts)
        rows.append(
            {
                "weights": str(w),
                "runtime": runtime,
                "architecture": e.card.architecture,
                "input_size": e.card.input_size,
                "flip_tta": e.card.flip_tta,
                "parameters": sum(p.numel() for p in e.model.parameters()),
                "p50_ms": round(med, 2),
                "p90_ms": round(float(np.percentile(ts, 90)), 2),
                "ratio_vs_first": round(med / base, 2),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, nargs="+", required=True, help="exported embedders (.pt + .json)")
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument(
        "--runtimes", nargs="+", choices=("torch", "onnxruntime", "int8"), default=["torch"], help="default: torch"
    )
    parser.add_argument("--out", type=Path, default=None, help="write the results here as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    rows = time_embedders(args.weights, args.rounds, tuple(args.runtimes))
    result = {
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "rounds": args.rounds,
        "command": "python bench/embed_speed.py " + " ".join(sys.argv[1:]),
        "embedders": rows,
    }
    for r in rows:
        log.info(
            "%s on %s (%s, %d px, flip %s): %.2f ms p50, %.2f ms p90, x%.2f",
            r["weights"],
            r["runtime"],
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
