"""Score-level probes beyond the shipped cohort normalisation, on cached LFW embeddings.

    python -m training.score_probes --weights models/weights/arcface_iresnet18_half_80_lm68_light.pt \\
        --run runs/arcface_iresnet18_half_80_lm68_light

Each variant rescored the same LFW embeddings (the ones ``training.evaluate`` cached for ``--weights``)
and prints the evaluation's headline figures as one JSON line:

- cohorts: the head's class centres (shipped), the mean training image of each identity, or the
  training images themselves, averaging the ``k`` highest cosines;
- S-norm: the cohort's mean *and* spread, ``½ ((s − μ_a) / σ_a + (s − μ_b) / σ_b)``;
- linear maps fitted on the training images, then cosine: centring on their mean, whitening by their
  total covariance (PCA whitening) or by their within-identity covariance (WCCN), each shrunk towards
  the identity by a factor.

The training images are embedded once (as the service embeds, flip included) and cached beside the LFW
embeddings. Answers "is there a better score than the shipped one?" without building any of it.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from models import metrics
from models.embedder import Embedder
from models.scoring import top_cohort_cosines
from training import lfw
from training.config import config_from_dict, data_root
from training.data import list_identity_folders, load_face_folder
from training.evaluate import DEFAULT_CACHE, cached_embeddings, compute_metrics
from training.fusion import head_centres, summary

log = logging.getLogger("training.score_probes")


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def embed_training_images(
    embedder: Embedder, data_dir: Path, cache_dir: Path = DEFAULT_CACHE
) -> tuple[np.ndarray, np.ndarray]:
    """Unit embeddings and identity labels of every training image (cached, with the decoded images,
    in ``cache_dir``)."""
    cache = cache_dir / "embeddings" / f"train_{embedder.version}.npz"
    if cache.exists():
        with np.load(cache) as z:
            return z["emb"], z["labels"]
    data = load_face_folder(list_identity_folders(data_dir), embedder.card.input_size, cache_dir)
    # The cached training images are already at the network's input size, so embed() does not resize.
    emb = np.concatenate(
        [
            embedder.embed(list(data.images[start : start + 256].transpose(0, 2, 3, 1)))
            for start in range(0, len(data.labels), 256)
        ]
    )
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, emb=emb, labels=data.labels)
    return emb, data.labels


def table_score(lfw_emb: np.ndarray, cohort: np.ndarray, k: int, spread: bool) -> metrics.ScoreFunction:
    """Cohort-normalised score whose per-face statistics are computed once for every LFW face (the
    evaluation calls the score thousands of times on single pairs; a 23,000-face cohort per call
    would take hours). Faces are looked up by their bytes."""
    top = top_cohort_cosines(lfw_emb, cohort, k)
    ok = np.isfinite(top).all(1)  # a missed face (NaN row) keeps its -inf scores
    mean, std = np.zeros(len(top)), np.ones(len(top))
    mean[ok] = top[ok].mean(1)
    if spread:
        std[ok] = top[ok].std(1)
    table = {row.tobytes(): (m, s) for row, m, s in zip(lfw_emb, mean, std)}

    def stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ms = np.array([table[row.tobytes()] for row in np.asarray(x, np.float32)]).reshape(-1, 2)
        return ms[:, 0, None], ms[:, 1, None]

    def score(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        cos = metrics.cosine_matrix(a, b)
        (ma, sa), (mb, sb) = stats(a), stats(b)
        if not spread:
            return cos - 0.5 * (ma + mb.T)
        return 0.5 * ((cos - ma) / sa + (cos - mb.T) / sb.T)

    return score


def inverse_sqrt(cov: np.ndarray, shrink: float) -> np.ndarray:
    """``C^-1/2`` of ``C`` shrunk towards a multiple of the identity (keeps it well conditioned)."""
    cov = (1 - shrink) * cov + shrink * np.trace(cov) / len(cov) * np.eye(len(cov))
    w, u = np.linalg.eigh(cov)
    return (u / np.sqrt(w)) @ u.T


def linear_maps(x: np.ndarray, y: np.ndarray) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """Maps fitted on training embeddings ``x`` (unit rows) with identity labels ``y``."""
    x = x.astype(np.float64)
    mean = x.mean(0)
    centred = x - mean
    classes, index = np.unique(y, return_inverse=True)
    class_means = np.stack([x[index == i].mean(0) for i in range(len(classes))])
    within = x - class_means[index]
    total_cov, within_cov = centred.T @ centred / len(x), within.T @ within / len(x)
    maps = {"centre": lambda v: v - mean}
    for shrink in (0.3, 0.6):
        pca, wccn = inverse_sqrt(total_cov, shrink), inverse_sqrt(within_cov, shrink)
        maps[f"pca_whiten_shrink{shrink}"] = lambda v, m=pca: (v - mean) @ m
        maps[f"wccn_shrink{shrink}"] = lambda v, m=wccn: (v - mean) @ m
    return maps


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, required=True, help="exported embedder (evaluated before)")
    parser.add_argument("--run", type=Path, required=True, help="its training run (class centres)")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    embedder = Embedder(args.weights)
    lfw_by_name = cached_embeddings(args.weights, embedder, args.cache_dir)
    names = list(lfw_by_name)
    lfw_emb = np.stack([lfw_by_name[n] for n in names]).astype(np.float32)
    cfg = config_from_dict(embedder.card.raw["config"])
    x, y = embed_training_images(embedder, cfg.resolved_data_dir(), args.cache_dir)
    root = data_root() / "lfw"
    people, pairs = lfw.list_people(root / "images"), lfw.read_pairs(root / "pairs.txt")

    def report(variant: str, emb: dict[str, np.ndarray], score: metrics.ScoreFunction) -> None:
        print(json.dumps({"variant": variant, **summary(compute_metrics(emb, people, pairs, score))}), flush=True)

    class_means = unit(np.stack([x[y == c].mean(0) for c in np.unique(y)]))
    cohorts = {"centres": unit(head_centres(args.run)), "class_means": class_means, "images": x}
    report("cosine", lfw_by_name, metrics.cosine_matrix)
    for cohort, k, spread in [
        ("centres", 10, False),
        ("class_means", 10, False),
        ("images", 10, False),
        ("images", 50, False),
        ("images", 200, False),
        ("centres", 10, True),
        ("centres", 50, True),
        ("images", 100, True),
    ]:
        kind = "snorm" if spread else "cohort"
        report(f"{kind}_{cohort}_k{k}", lfw_by_name, table_score(lfw_emb, cohorts[cohort], k, spread))
    for name, f in linear_maps(x, y).items():
        mapped = f(unit(lfw_emb).astype(np.float64)).astype(np.float32)
        report(name, dict(zip(names, mapped)), metrics.cosine_matrix)


if __name__ == "__main__":
    main()
