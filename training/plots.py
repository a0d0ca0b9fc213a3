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
        ax.set(xlabel="false positive rate", ylabel="true positive rate", ylim=(0, 1.01),
               title="TPR vs FPR (LFW, seed ID-rate protocol)" if log_x else "ROC (LFW, seed ID-rate protocol)")
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
