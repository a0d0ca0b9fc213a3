"""Score-level probes on cached LFW embeddings: model ensembles and cohort score normalisation.

    python -m training.fusion A.npz B.npz                 # ensemble: the mean of the models' cosines
    python -m training.fusion A.npz --cohort runs/<run> --top-k 10   # cohort-normalised cosine

A and B are raw-embedding caches that ``training.evaluate`` leaves in ``~/.cache/facerec/embeddings``
(a bare file name is looked up there). ``--cohort`` takes a training run and uses its head's class
centres (one unit vector per training identity, in the embedding space) as the cohort. Prints the
evaluation's figures (LFW 10-fold, TPR@FPR, DIR@FPIR) as JSON; nothing is re-embedded, so a probe
takes seconds. These answer "would the service gain from running several models, or from normalising
scores?" before any of it is built into the service.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import torch

from models import metrics
from training import lfw
from training.config import data_root
from training.evaluate import DEFAULT_CACHE, compute_metrics, load_embeddings

log = logging.getLogger("training.fusion")


def ensemble(models: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """One embedding per image whose cosine is the mean of the models' cosines: the unit embeddings
    of every model, concatenated and scaled by 1/sqrt(n). NaN rows (no face) stay NaN."""
    if not models:
        raise ValueError("ensemble needs at least one embedding cache")
    names = list(models[0])
    for i, m in enumerate(models[1:], 1):
        if set(m) != set(names):
            raise ValueError(f"cache {i} covers other images than cache 0; evaluate both on the same photos")
    scale = 1.0 / np.sqrt(len(models))
    return {n: np.concatenate([m[n] / np.linalg.norm(m[n]) for m in models]) * scale for n in names}


def head_centres(run: Path) -> np.ndarray:
    """The class centres of a training run's margin head (rows = training identities)."""
    ckpt = Path(run) / "checkpoint.pt"
    if not ckpt.exists():
        raise FileNotFoundError(f"{ckpt} does not exist; --cohort takes a training run directory")
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    return state["head"]["weight"].float().numpy()


def summary(result: dict) -> dict:
    """The headline figures of :func:`training.evaluate.compute_metrics`, rounded."""
    return {
        "lfw_accuracy": round(100 * result["lfw_accuracy"]["mean"], 2),
        "lfw_std": round(100 * result["lfw_accuracy"]["std"], 2),
        "tpr_at_fpr": {f"{p['fpr']:g}": round(p["tpr"], 4) for p in result["idrate"]},
        "dir_at_fpir": {f"{p['fpr']:g}": round(p["tpr"], 4) for p in result["dir_at_fpir"]},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("caches", type=Path, nargs="+", help="embedding caches, one per model")
    parser.add_argument("--cohort", type=Path, default=None, help="training run whose head centres are the cohort")
    parser.add_argument("--top-k", type=int, default=10, help="cohort faces averaged per face (default 10)")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument(
        "--out", type=Path, default=None, help="also write the summary here (JSON; training.seeds reads it)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.cohort is not None and len(args.caches) > 1:
        parser.error("--cohort takes one cache: the head's centres live in that one model's embedding space")
    paths = [p if p.exists() else args.cache_dir / "embeddings" / p for p in args.caches]
    emb = ensemble([load_embeddings(p) for p in paths])
    score = metrics.cosine_matrix
    if args.cohort is not None:
        score = metrics.cohort_normalised(head_centres(args.cohort), args.top_k)
    root = data_root() / "lfw"
    result = compute_metrics(emb, lfw.list_people(root / "images"), lfw.read_pairs(root / "pairs.txt"), score)
    out = {
        "caches": [p.name for p in paths],
        "cohort": str(args.cohort) if args.cohort else None,
        "top_k": args.top_k if args.cohort else None,
        **summary(result),
    }
    print(json.dumps(out, indent=2))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
