"""Equal-budget loss comparison: same backbone, data, augmentation and steps; only the loss differs.

    python -m training.compare --config training/configs/compare_base.yaml \
        --losses softmax arcface cosface --out reports/losses

Each loss is trained (``runs/cmp_<loss>``; an existing finished run is reused), exported, evaluated on
LFW through the full pipeline, and the table and a combined TPR-vs-FPR figure are written to ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

import torch

from training import plots
from training.config import load_config
from training.evaluate import run_evaluation
from training.export import export, training_summary
from training.train import train

log = logging.getLogger("training.compare")
#: Margin settings per loss (s = 32 for all, so only the margin differs).
LOSS_KWARGS = {
    "softmax": {"s": 32.0},
    "arcface": {"s": 32.0, "m": 0.5},
    "cosface": {"s": 32.0, "m": 0.35},
    "sphereface": {"s": 32.0, "m1": 1.35},
    "elasticarc": {"s": 32.0, "m": 0.5, "sigma": 0.05},
    "subcenter_arcface": {"s": 32.0, "m": 0.5, "subcenters": 3},
    "adaface": {"s": 32.0, "m": 0.4, "h": 0.333},
    "triplet": {"margin": 0.2, "mining": "semihard", "k": 4},
}
LOSS_NAMES = {"sphereface": "combined", "subcenter_arcface": "arcface"}


def run_one(base: str | None, sets: list[str], loss: str, out: Path, fraction: float = 1.0) -> dict:
    """Train (or reuse), export and evaluate one loss; ``fraction`` < 1 keeps that share of identities."""
    kwargs = json.dumps(LOSS_KWARGS[loss])
    cfg = load_config(
        base, sets + [f"loss={LOSS_NAMES.get(loss, loss)}", f"loss_kwargs={kwargs}", f"identity_fraction={fraction}"]
    )
    name = f"cmp_{loss}" if fraction == 1.0 else f"cmp_{loss}_ids{round(100 * fraction)}"
    if cfg.seed:  # another seed is another run (seed 0 keeps the names the reports already use)
        name += f"_s{cfg.seed}"
    cfg = dataclasses.replace(cfg, name=name)
    run = cfg.run_dir()
    done = (run / "checkpoint.pt").exists() and torch.load(run / "checkpoint.pt", weights_only=False)[
        "step"
    ] >= cfg.steps
    if not done:
        train(cfg, resume=(run / "checkpoint.pt").exists())
    weights = export(run, run / "export" / f"{name}.pt", flip_tta=False)
    result = run_evaluation(weights, out / name.removeprefix("cmp_"))
    result["training"] = training_summary(run)
    holdout = run / "holdout.json"
    result["holdout_accuracy"] = json.loads(holdout.read_text())["accuracy"] if holdout.exists() else None
    return result


def write_table(out: Path, results: dict[str, dict], command: str) -> None:
    lines = [
        "| loss | TPR@1e-1 | TPR@1e-2 | TPR@1e-3 | TPR@1e-4 | DIR@1e-1 | DIR@1e-2 | LFW acc | "
        "held-out cls acc | train time |",
        "|---" * 10 + "|",
    ]
    for loss, r in results.items():
        tpr = [f"{p['tpr']:.4f}" for p in r["idrate"]]
        dirs = [f"{p['tpr']:.4f}" for p in r["dir_at_fpir"]]
        acc = r["lfw_accuracy"]
        t = r["training"]
        lines.append(
            f"| {loss} | " + " | ".join(tpr + dirs) + f" | {100 * acc['mean']:.2f} ± {100 * acc['std']:.2f}"
            f" | {r['holdout_accuracy'] if r['holdout_accuracy'] is None else round(r['holdout_accuracy'], 4)}"
            f" | {t['wall_clock_s'] / 60:.0f} min |"
        )
    (out / "table.md").write_text(f"Command: `{command}`\n\n" + "\n".join(lines) + "\n")
    (out / "results.json").write_text(
        json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "roc"} for k, v in results.items()}, indent=2)
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="base TrainConfig YAML shared by every loss")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--losses", nargs="+", default=["softmax", "arcface", "cosface"], choices=sorted(LOSS_KWARGS))
    parser.add_argument(
        "--identity-fractions",
        type=float,
        nargs="+",
        default=None,
        help="learning curve: train the (single) loss on these shares of the identities, same steps",
    )
    parser.add_argument("--out", type=Path, default=Path("reports/losses"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.identity_fractions:
        if len(args.losses) != 1:
            parser.error("a learning curve takes exactly one --losses entry")
        loss = args.losses[0]
        results = {
            f"{loss} {round(100 * f)}% ids": run_one(args.config, args.set, loss, args.out, f)
            for f in args.identity_fractions
        }
    else:
        results = {loss: run_one(args.config, args.set, loss, args.out) for loss in args.losses}
    plots.roc_plots(args.out, {loss: r["roc"] for loss, r in results.items()})
    command = "python -m training.compare " + " ".join(argv or sys.argv[1:])
    write_table(args.out, results, command)
    log.info("wrote %s", args.out / "table.md")


if __name__ == "__main__":
    main()
