"""Paired comparison of two embedders on LFW's 6,000 official pairs: which pairs each one decides right
under the 10-fold protocol, and the exact McNemar test on the pairs where they disagree.

    python -m training.paired models/weights/A.pt models/weights/B.pt

Each embedder's LFW embeddings are the ones ``training.evaluate --weights`` left in the cache
(``~/.cache/facerec/embeddings``), and each pair is scored as that model's card says (its cohort
score when it has one) -- the score the service and the card's figures use, not plain cosine. Two
models evaluated on the same photos differ on the same pairs far less than their fold standard
deviations suggest; this says whether a difference in LFW accuracy is more than chance.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from models import metrics
from models.embedder import Embedder
from models.scoring import ScoreFunction
from training import lfw
from training.config import data_root
from training.evaluate import DEFAULT_CACHE, cached_embeddings

log = logging.getLogger("training.paired")


def pair_scores(emb: dict[str, np.ndarray], pairs: list[lfw.Pair], score: ScoreFunction) -> np.ndarray:
    """Every pair's score by ``score`` (a face the detector missed is a NaN row: ``-inf``)."""
    unit = {n: v / np.linalg.norm(v) for n, v in emb.items()}
    a = np.stack([unit[p.a] for p in pairs])
    b = np.stack([unit[p.b] for p in pairs])
    # One pair at a time: the score function maps stacks to a matrix, and only its diagonal is needed.
    return np.array([score(a[i : i + 1], b[i : i + 1])[0, 0] for i in range(len(pairs))], np.float64)


def compare(a: np.ndarray, b: np.ndarray, pairs: list[lfw.Pair]) -> dict:
    """Accuracy of two score vectors over ``pairs``, the pairs only one decides right, and McNemar's exact p."""
    folds = np.array([p.fold for p in pairs])
    same = np.array([p.same for p in pairs])
    correct = [metrics.kfold_correct(np.nan_to_num(s, neginf=-1e9), same, folds) for s in (a, b)]
    only_a, only_b, p = metrics.mcnemar_exact(*correct)
    return {
        "accuracy_a": round(float(correct[0].mean()), 4),
        "accuracy_b": round(float(correct[1].mean()), 4),
        "only_a_right": only_a,
        "only_b_right": only_b,
        "mcnemar_p": round(p, 4),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", type=Path, help="weights of the first embedder (evaluated before)")
    parser.add_argument("b", type=Path, help="weights of the second embedder (evaluated before)")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    pairs = lfw.read_pairs(data_root() / "lfw" / "pairs.txt")
    scores = []
    for weights in (args.a, args.b):
        embedder = Embedder(weights)
        scores.append(pair_scores(cached_embeddings(weights, embedder, args.cache_dir), pairs, embedder.score))
    result = {"a": args.a.name, "b": args.b.name, **compare(*scores, pairs)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
