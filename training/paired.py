"""Paired comparison of two pipelines on LFW's 6,000 official pairs: which pairs each one decides right
under the 10-fold protocol, and the exact McNemar test on the pairs where they disagree.

    python -m training.paired A.npz B.npz

A and B are raw-embedding caches that ``training.evaluate`` leaves in ``~/.cache/facerec/embeddings``
(a bare file name is looked up there). Two models evaluated on the same photos differ on the same
pairs far less than their fold standard deviations suggest; this says whether a difference in LFW
accuracy is more than chance.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from training import lfw, metrics
from training.config import data_root
from training.evaluate import DEFAULT_CACHE, load_embeddings

log = logging.getLogger("training.paired")


def compare(a: dict[str, np.ndarray], b: dict[str, np.ndarray], pairs: list[lfw.Pair]) -> dict:
    """Accuracy of each, the pairs only one of them decides right, and McNemar's exact p."""
    folds = np.array([p.fold for p in pairs])
    correct = []
    for emb in (a, b):
        scores, same = lfw.pair_scores(emb, pairs)
        correct.append(metrics.kfold_correct(scores, same, folds))
    only_a, only_b, p = metrics.mcnemar_exact(*correct)
    return {"accuracy_a": round(float(correct[0].mean()), 4), "accuracy_b": round(float(correct[1].mean()), 4),
            "only_a_right": only_a, "only_b_right": only_b, "mcnemar_p": round(p, 4)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    paths = [p if p.exists() else args.cache_dir / "embeddings" / p for p in (args.a, args.b)]
    pairs = lfw.read_pairs(data_root() / "lfw" / "pairs.txt")
    result = {"a": paths[0].name, "b": paths[1].name, **compare(*(load_embeddings(p) for p in paths), pairs)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
