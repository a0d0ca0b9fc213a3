"""Several seeds of a recipe, summarised: mean ± std per figure, paired differences between two recipes,
and the learning curve's fit against the number of training identities.

    python -m training.seeds --group arcface=reports/push/g_arc_s0,reports/push/g_arc_s2 \\
        --group adaface=reports/push/g_ada_s0,reports/push/g_ada_s2 --plot reports/losses/seeds.png
    python -m training.seeds --curve --group 123=reports/push/g_ids25_s0,... --group 492=... \\
        --plot reports/learning_curve/identities.png

Each path is what ``training.evaluate`` writes (a report folder or its ``metrics.json``) or what
``training.fusion --out`` writes (cohort scores). With two groups of equal size the runs are paired in
the order given (same seed, same position) and each figure gets the mean difference and a sign test.
With ``--curve`` the group names are identity counts, and each figure's miss rate (1 − TPR, 1 − DIR,
100 − LFW accuracy) is fitted as a power law of them, ``log2(miss) = a + b * log2(identities)`` — the
usual shape of error against training-set size: the miss rate shrinks by the factor ``2 ** b`` per
doubling of the people. The fit also says where it would reach the issue's targets: an extrapolation,
printed as such.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path

import numpy as np

from models.metrics import sign_test

log = logging.getLogger("training.seeds")

# The figures every summary holds (keys of :func:`load_summary`'s result), in table order.
FIGURES = ["lfw", "tpr@0.1", "tpr@0.01", "tpr@0.001", "tpr@0.0001", "dir@0.1", "dir@0.01"]
TARGETS = {"lfw": 95.0, "tpr@0.01": 0.85, "dir@0.01": 0.50}  # the issue's targets


def load_summary(path: Path) -> dict[str, float]:
    """The headline figures of one evaluated model: LFW accuracy in %, TPR@FPR and DIR@FPIR in [0, 1]."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.json"
    if not path.exists():
        raise FileNotFoundError(
            f"{path} does not exist; give a training.evaluate report folder, its "
            "metrics.json, or a training.fusion --out file"
        )
    data = json.loads(path.read_text())
    if "idrate" in data:  # training.evaluate's metrics.json
        out = {"lfw": 100 * data["lfw_accuracy"]["mean"]}
        out.update({f"tpr@{p['fpr']:g}": p["tpr"] for p in data["idrate"]})
        out.update({f"dir@{p['fpr']:g}": p["tpr"] for p in data["dir_at_fpir"]})
    else:  # training.fusion's summary
        out = {"lfw": data["lfw_accuracy"]}
        out.update({f"tpr@{k}": v for k, v in data["tpr_at_fpr"].items()})
        out.update({f"dir@{k}": v for k, v in data["dir_at_fpir"].items()})
    return out


def aggregate(summaries: list[dict[str, float]]) -> dict[str, tuple[float, float]]:
    """Mean and sample standard deviation (0 for one run) of each figure over the runs."""
    out = {}
    for name in FIGURES:
        values = np.array([s[name] for s in summaries], dtype=np.float64)
        out[name] = (float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0)
    return out


def paired(a: list[dict[str, float]], b: list[dict[str, float]]) -> dict[str, dict]:
    """Per figure: mean of ``b - a`` over the pairs, how many pairs each side wins, and the sign test."""
    if len(a) != len(b):
        raise ValueError(f"paired comparison needs as many runs on each side, got {len(a)} and {len(b)}")
    out = {}
    for name in FIGURES:
        diff = np.array([y[name] - x[name] for x, y in zip(a, b)])
        wins_b, wins_a = int(np.sum(diff > 0)), int(np.sum(diff < 0))
        out[name] = {
            "mean_diff": float(diff.mean()),
            "wins_a": wins_a,
            "wins_b": wins_b,
            "sign_p": sign_test(wins_a, wins_b),
        }
    return out


def power_law_fit(identities: np.ndarray, miss: np.ndarray) -> tuple[float, float]:
    """Least-squares ``log2(miss) = a + b * log2(identities)``; returns (a, b). ``2 ** b`` is the factor
    the miss rate is multiplied by per doubling of the identities (below 1 when more people help)."""
    x = np.log2(np.asarray(identities, dtype=np.float64))
    y = np.log2(np.asarray(miss, dtype=np.float64))
    if len(np.unique(x)) < 2:
        raise ValueError("a curve needs runs at two identity counts at least")
    b, a = np.polyfit(x, y, 1)
    return float(a), float(b)


def identities_for(miss: float, a: float, b: float) -> float:
    """Where the fitted power law reaches the miss rate ``miss`` (inf when it does not fall)."""
    return 2 ** ((math.log2(miss) - a) / b) if b < 0 else math.inf


def miss_rate(name: str, value: float) -> float:
    """1 − rate, or 100 − accuracy for LFW's (which is in %)."""
    return (100.0 if name == "lfw" else 1.0) - value


def _fmt(name: str, value: float) -> str:
    return f"{value:.2f}" if name == "lfw" else f"{value:.3f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--group",
        action="append",
        required=True,
        metavar="NAME=PATH,PATH,...",
        help="a recipe and its evaluated runs, one per seed",
    )
    parser.add_argument("--curve", action="store_true", help="group names are identity counts: fit the learning curve")
    parser.add_argument(
        "--plot",
        type=Path,
        default=None,
        help="draw a figure here: with --curve the fit of LFW, TPR@1e-2 and DIR@1e-2; without it "
        "every run's LFW accuracy against its DIR@1e-2, one colour per group",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    groups: dict[str, list[dict[str, float]]] = {}
    for spec in args.group:
        name, sep, paths = spec.partition("=")
        if not sep or not paths:
            parser.error(f"--group {spec!r}: expected NAME=PATH[,PATH...]")
        groups[name] = [load_summary(Path(p)) for p in paths.split(",")]

    print("| group | runs | " + " | ".join(FIGURES) + " |")
    print("|---|---|" + "---|" * len(FIGURES))
    for name, runs in groups.items():
        agg = aggregate(runs)
        cells = [f"{_fmt(f, agg[f][0])} ± {_fmt(f, agg[f][1])}" for f in FIGURES]
        print(f"| {name} | {len(runs)} | " + " | ".join(cells) + " |")

    names = list(groups)
    if not args.curve and len(names) == 2 and len(groups[names[0]]) == len(groups[names[1]]):
        diff = paired(groups[names[0]], groups[names[1]])
        print(f"\npaired, {names[1]} - {names[0]} (wins {names[0]} / {names[1]}, sign-test p):")
        for f in FIGURES:
            d = diff[f]
            print(f"  {f}: {d['mean_diff']:+.4f} ({d['wins_a']} / {d['wins_b']}, p {d['sign_p']:.3f})")
    if args.plot is not None and not args.curve:
        from training.plots import seeds_scatter_plot  # matplotlib only when a figure is asked for

        seeds_scatter_plot(args.plot, groups, "lfw", "dir@0.01")
        log.info("wrote %s", args.plot)
    if args.curve:
        if not all(n.isdigit() for n in groups):
            parser.error(f"--curve takes identity counts as group names, got {list(groups)}")
        ids = np.array([float(n) for n, runs in groups.items() for _ in runs])
        print(
            "\npower law on the miss rate, log2(miss) = a + b * log2(identities), every run a point "
            "(beyond the largest group it is an extrapolation):"
        )
        misses, fits = {}, {}
        for f in FIGURES:
            misses[f] = np.array([miss_rate(f, r[f]) for runs in groups.values() for r in runs])
            a, b = fits[f] = power_law_fit(ids, misses[f])
            line = f"  {f}: miss rate x {2**b:.3f} per doubling"
            if f in TARGETS:
                line += f"; target {TARGETS[f]:g} at ~{identities_for(miss_rate(f, TARGETS[f]), a, b):,.0f} identities"
            print(line)
        if args.plot is not None:
            from training.plots import learning_curve_plot  # matplotlib only when a figure is asked for

            shown = list(TARGETS)
            # LFW's miss rate in % is put on the same 0-1 scale as the others for one pair of axes.
            scale = {f: 100.0 if f == "lfw" else 1.0 for f in shown}
            learning_curve_plot(
                args.plot,
                ids,
                {f: misses[f] / scale[f] for f in shown},
                {f: (fits[f][0] - np.log2(scale[f]), fits[f][1]) for f in shown},
                {f: miss_rate(f, TARGETS[f]) / scale[f] for f in shown},
            )
            log.info("wrote %s", args.plot)


if __name__ == "__main__":
    main()
