"""Which backbones of the registry fit the embedding budget (10 ms a face with flip on this CPU), on
each CPU runtime -- before one is trained.

    python bench/arch_speed.py --out bench/results/arch_speed.json

Each ``--candidates`` entry ``ARCH@SIZE`` is built from the registry with random weights (the time does
not depend on them), exported as the service exports its embedder (``models.runtime.export_onnx``) and
run on a batch of two (one face and its mirror image, as ``/identify`` embeds a portrait) on ONNX
Runtime and on OpenVINO (bf16 where the CPU computes it natively), in interleaved rounds. Reported: the
median milliseconds of the network alone (``bench/embed_speed.py`` times a trained embedder with its
preprocessing) and the ratio to the first candidate on the same runtime.

A benchmark, not a test: run it with nothing else on the machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.registry import create_model, list_models  # noqa: E402
from models.runtime import OrtNet, OvNet, export_onnx  # noqa: E402

DEFAULT = ["iresnet18_half@80", "iresnet26_half@80", "iresnet34_half@80", "iresnet18@80", "iresnet18_half@112",
           "iresnet34_half@112", "iresnet18@112"]  # fmt: skip


def parse(candidate: str) -> tuple[str, int]:
    arch, _, size = candidate.partition("@")
    if arch not in list_models() or not size.isdigit():
        raise argparse.ArgumentTypeError(f"{candidate!r}: want ARCH@SIZE with ARCH one of {', '.join(list_models())}")
    return arch, int(size)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidates", nargs="+", type=parse, default=[parse(c) for c in DEFAULT])
    parser.add_argument("--rounds", type=int, default=150)
    parser.add_argument("--out", type=Path, default=None, help="write the results here as JSON")
    args = parser.parse_args(argv)
    nets = {}
    for arch, size in args.candidates:
        module = create_model(arch, embedding_dim=512, input_size=size).eval()
        model = export_onnx(module, torch.zeros(2, 3, size, size), {0: "n"})
        x = np.random.default_rng(0).standard_normal((2, 3, size, size)).astype(np.float32)
        params = sum(p.numel() for p in module.parameters())
        nets[arch, size] = {"onnxruntime": OrtNet(model), "openvino": OvNet(model)}, x, params
    times = {(key, r): [] for key, (runners, _, _) in nets.items() for r in runners}
    for runners, x, _ in nets.values():
        for run in runners.values():
            for _ in range(20):
                run(x)
    for _ in range(args.rounds):
        for key, (runners, x, _) in nets.items():
            for r, run in runners.items():
                t0 = time.perf_counter()
                run(x)
                times[key, r].append(1000 * (time.perf_counter() - t0))
    first = next(iter(nets))
    rows = []
    for (arch, size), (runners, _, params) in nets.items():
        for r, run in runners.items():
            med = statistics.median(times[(arch, size), r])
            rows.append(
                {
                    "arch": arch,
                    "input_size": size,
                    "parameters": params,
                    "runtime": r,
                    "precision": run.precision,
                    "p50_ms": round(med, 2),
                    "ratio_vs_first": round(med / statistics.median(times[first, r]), 2),
                }
            )
    result = {"command": "python bench/arch_speed.py " + " ".join(sys.argv[1:] if argv is None else argv), "rows": rows}
    text = json.dumps(result, indent=1)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
