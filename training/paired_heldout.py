"""Paired comparison of two embedders on the held-out people: is one really better, person by person?

    python -m training.paired_heldout models/weights/A.pt runs/.../weights.pt [--heldout DIR]

The held-out figures (``training.heldout``) are shares of pairs and probes, and a person's pairs are
not independent of each other (they share photos and a face), so two models' TPR@1e-3 can differ by a
few hundredths for no reason beyond which people happened to be held out. Here the person is the
unit: at each operating point, each model at its own threshold (calibrated on its own held-out
negatives, as a card's thresholds are), every person with two or more photos gets

- ``tpr``: the share of their same-person pairs the model accepts, and
- ``dir``: the share of their probes (every photo but the first) whose best gallery identity is them
  and clears the FPIR threshold set by every probe searched as a stranger (``dir_at_fpir_all_probes``),

and the two models are compared by an exact sign test over the people whose share differs (B better,
A better, tied). Faces are scored as each card says, as the service scores them; each model's vectors
come from the held-out cache ``training.heldout`` fills.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from models import metrics
from models.embedder import Embedder
from training.heldout import DEFAULT_HELDOUT, embed_people, idrate_metrics, list_people

log = logging.getLogger("training.paired_heldout")


def person_rates(emb: dict[str, np.ndarray], people: dict[str, list[str]], score) -> dict[str, dict[str, float]]:
    """Operating point (``tpr@1e-3``, ``dir@1e-2``, ...) -> person -> the share described above."""
    figures = idrate_metrics(emb, people, score)
    multi = {p: imgs for p, imgs in people.items() if len(imgs) >= 2}
    stack = lambda names: np.stack([emb[n] for n in names])  # noqa: E731
    within = {}
    for person, imgs in multi.items():
        sims = score(stack(imgs), stack(imgs))
        within[person] = sims[np.triu_indices(len(imgs), k=1)]
    rates: dict[str, dict[str, float]] = {}
    for point in figures["idrate"]:
        rates[f"tpr@{point['fpr']:g}"] = {p: float(np.mean(s > point["threshold"])) for p, s in within.items()}
    open_set = figures["_open_set"]  # the probes' scores idrate_metrics computed, not computed again
    sims, owner = open_set["mated_sims"], open_set["mated"]
    top = sims.argmax(1)
    correct = open_set["gallery"][top] == owner
    top_score = sims[np.arange(len(top)), top]
    for point in figures["dir_at_fpir_all_probes"]:
        hit = correct & (top_score > point["threshold"])
        rates[f"dir@{point['fpr']:g}"] = {p: float(hit[owner == p].mean()) for p in multi}
    return rates


def compare_people(rates_a: dict[str, dict[str, float]], rates_b: dict[str, dict[str, float]]) -> dict[str, dict]:
    """Per operating point: each model's mean over people, and the sign test of B against A."""
    out = {}
    for point, a in rates_a.items():
        b = rates_b[point]
        diff = np.array([b[p] - a[p] for p in a])
        better_b, better_a = int(np.sum(diff > 0)), int(np.sum(diff < 0))
        out[point] = {
            "mean_a": round(float(np.mean(list(a.values()))), 4),
            "mean_b": round(float(np.mean(list(b.values()))), 4),
            "people_b_better": better_b,
            "people_a_better": better_a,
            "people_tied": int(np.sum(diff == 0)),
            "sign_test_p": round(metrics.sign_test(better_a, better_b), 4),
        }
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", type=Path, help="weights of the first embedder (e.g. the shipped one)")
    parser.add_argument("b", type=Path, help="weights of the second embedder (the candidate)")
    parser.add_argument("--heldout", type=Path, default=DEFAULT_HELDOUT)
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "facerec")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    people = list_people(args.heldout)
    rates = []
    for weights in (args.a, args.b):
        embedder = Embedder(weights)
        emb = embed_people(embedder, args.heldout.expanduser(), people, args.cache_dir)
        rates.append(person_rates(emb, people, embedder.score))
    compared = len(next(iter(rates[0].values())))
    result = {"a": str(args.a), "b": str(args.b), "people_compared": compared, **compare_people(*rates)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
