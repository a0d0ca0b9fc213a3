"""Report figures: ROC, TPR-vs-FPR on a log axis, and similarity histograms."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def roc_plots(out: Path, curves: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """``roc.png`` (linear axes) and ``tpr_fpr.png`` (log FPR) with one line per model."""
    for filename, log_x in (("roc.png", False), ("tpr_fpr.png", True)):
        fig, ax = plt.subplots(figsize=(6, 4.5))
        for label, (fpr, tpr) in curves.items():
            ax.plot(fpr, tpr, label=label)
        if log_x:
            ax.set_xscale("log")
            for f in (1e-4, 1e-3, 1e-2, 1e-1):
                ax.axvline(f, color="0.85", lw=0.8, zorder=0)
        ax.set(
            xlabel="false positive rate",
            ylabel="true positive rate",
            ylim=(0, 1.01),
            title="TPR vs FPR (LFW, seed ID-rate protocol)" if log_x else "ROC (LFW, seed ID-rate protocol)",
        )
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
        fig.tight_layout()
        fig.savefig(out / filename, dpi=120)
        plt.close(fig)


def similarity_histogram(path: Path, positives: np.ndarray, negatives: np.ndarray, title: str) -> None:
    """Density histograms of same-person and different-person cosine similarities."""
    bins = np.linspace(-1, 1, 201)
    fig, ax = plt.subplots(figsize=(6, 4))
    for values, label in ((negatives, "different person"), (positives, "same person")):
        finite = values[np.isfinite(values)]
        hist, _ = np.histogram(finite, bins=bins, density=True)
        ax.stairs(hist, bins, fill=True, alpha=0.5, label=f"{label} (n={len(finite):,})")
    ax.set(xlabel="cosine similarity", ylabel="density", title=title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def learning_curve_plot(
    path: Path,
    identities: np.ndarray,
    misses: dict[str, np.ndarray],
    fits: dict[str, tuple[float, float]],
    targets: dict[str, float],
) -> None:
    """Miss rate against training identities on log-log axes: every run a dot, the fitted power law
    ``log2(miss) = a + b log2(identities)`` a line carried on to 64× the people (dashed beyond the data),
    and each target's miss rate a dotted level."""
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    lo, hi = identities.min(), identities.max()
    for (name, miss), colour in zip(misses.items(), plt.rcParams["axes.prop_cycle"].by_key()["color"]):
        a, b = fits[name]
        ax.scatter(identities, miss, s=14, color=colour, label=f"{name} (×{2**b:.2f} per doubling)")
        inside = np.geomspace(lo, hi, 20)
        beyond = np.geomspace(hi, 64 * hi, 20)
        ax.plot(inside, 2 ** (a + b * np.log2(inside)), color=colour)
        ax.plot(beyond, 2 ** (a + b * np.log2(beyond)), color=colour, ls="--")
        if name in targets:
            ax.axhline(targets[name], color=colour, ls=":", lw=1)
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="training identities",
        ylabel="miss rate (1 − rate; LFW: error %/100)",
        title="Learning curve: miss rate vs identities (dotted: targets)",
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def seeds_scatter_plot(path: Path, groups: dict[str, list[dict[str, float]]], x: str, y: str) -> None:
    """One dot per run (seed) of each recipe, ``x`` against ``y`` (figure names of ``training.seeds``),
    with each recipe's mean as a cross: where two recipes trade one figure for another, the clouds
    separate along a diagonal."""
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for (name, runs), colour in zip(groups.items(), plt.rcParams["axes.prop_cycle"].by_key()["color"]):
        xs, ys = np.array([r[x] for r in runs]), np.array([r[y] for r in runs])
        ax.scatter(xs, ys, s=18, color=colour, label=f"{name} ({len(runs)} runs)")
        ax.scatter([xs.mean()], [ys.mean()], s=120, marker="x", color=colour)
    ax.set(xlabel=x, ylabel=y, title=f"{y} against {x}, one dot per seed (×: mean)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
