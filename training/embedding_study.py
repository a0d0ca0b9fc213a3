"""What the embeddings look like: similarity distributions per loss, norms as a quality signal, a 2-D
map of a few dozen identities, and the worst errors as image pairs.

    python -m training.embedding_study --out reports/embeddings

Reads the raw LFW embeddings that ``training.evaluate`` (and ``training.compare``) leave in the
cache (``~/.cache/facerec/embeddings``); models without cached embeddings are skipped with a warning
(evaluate them first). Writes ``reports/embeddings/embeddings.md`` and its figures.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from models import metrics
from training import lfw
from training.config import data_root
from training.evaluate import DEFAULT_CACHE, load_embeddings

log = logging.getLogger("training.embedding_study")
#: (label, embeddings cache file name): the equal-budget loss runs (flip off) and the shipped model.
MODELS = {
    "softmax": "lfw_cmp_softmax-*_flip0.npz",
    "ArcFace": "lfw_cmp_arcface-*_flip0.npz",
    "CosFace": "lfw_cmp_cosface-*_flip0.npz",
    "SphereFace": "lfw_cmp_sphereface-*_flip0.npz",
    "ElasticFace-Arc": "lfw_cmp_elasticarc-*_flip0.npz",
    "sub-center ArcFace": "lfw_cmp_subcenter_arcface-*_flip0.npz",
    "triplet": "lfw_cmp_triplet-*_flip0.npz",
}


def shipped_pattern() -> str:
    """Cache-file pattern of the service's default embedder, flip TTA on, MTCNN five-point alignment
    (``-flip_flip1`` excludes the caches of the 68-point and box alignments)."""
    from models import DEFAULT_WEIGHTS

    name = json.loads(DEFAULT_WEIGHTS.with_suffix(".json").read_text())["name"]
    return f"lfw_{name}-*-flip_flip1.npz"


def find(cache: Path, pattern: str) -> Path | None:
    hits = sorted((cache / "embeddings").glob(pattern), key=lambda p: p.stat().st_mtime)
    return hits[-1] if hits else None


def distributions(out: Path, per_model: dict[str, tuple[np.ndarray, np.ndarray]]) -> list[str]:
    n = len(per_model)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 2.8), sharey=True)
    rows = [
        "| loss | same-person mean ± std | different-person mean ± std | d′ (separation) | "
        "LFW pairs accuracy at best threshold |",
        "|---|---|---|---|---|",
    ]
    for ax, (name, (scores, same)) in zip(np.atleast_1d(axes), per_model.items()):
        pos, neg = scores[same], scores[~same]
        ax.hist(neg, bins=60, range=(-0.5, 1), alpha=0.6, density=True, label="different")
        ax.hist(pos, bins=60, range=(-0.5, 1), alpha=0.6, density=True, label="same")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("cosine similarity")
        d_prime = (pos.mean() - neg.mean()) / np.sqrt(0.5 * (pos.var() + neg.var()))
        t = metrics.best_threshold(scores, same)
        rows.append(
            f"| {name} | {pos.mean():.3f} ± {pos.std():.3f} | {neg.mean():.3f} ± {neg.std():.3f} | "
            f"{d_prime:.2f} | {100 * np.mean((scores > t) == same):.2f}% |"
        )
    np.atleast_1d(axes)[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "similarity_per_loss.png", dpi=110)
    plt.close(fig)
    return rows


def norms_section(out: Path, raw: dict[str, np.ndarray], pairs: list[lfw.Pair], images: Path) -> list[str]:
    """Do low-norm embeddings come from hard images? Verification accuracy by the pair's smaller norm."""
    norm = {k: float(np.linalg.norm(v)) for k, v in raw.items() if np.isfinite(v).all()}
    scores, same = lfw.pair_scores(raw, pairs)
    ok = np.array([p.a in norm and p.b in norm for p in pairs])
    low = np.array([min(norm[p.a], norm[p.b]) if k else np.nan for p, k in zip(pairs, ok)])
    t = metrics.best_threshold(scores[ok], same[ok])
    edges = np.quantile(low[ok], [0, 0.25, 0.5, 0.75, 1])
    rows = ["| pair's smaller norm (quartile) | pairs | accuracy | same-person mean similarity |", "|---|---|---|---|"]
    for q in range(4):
        sel = ok & (low >= edges[q]) & (low <= edges[q + 1])
        rows.append(
            f"| Q{q + 1}: {edges[q]:.1f}–{edges[q + 1]:.1f} | {sel.sum()} | "
            f"{100 * np.mean((scores[sel] > t) == same[sel]):.1f}% | {scores[sel & same].mean():.3f} |"
        )
    names = sorted(norm, key=norm.get)
    fig, axes = plt.subplots(2, 8, figsize=(12, 3.4))
    for ax, name in zip(axes[0], names[:8]):
        ax.imshow(lfw.read_rgb(images / name))
        ax.set_title(f"{norm[name]:.1f}", fontsize=8)
    for ax, name in zip(axes[1], names[-8:]):
        ax.imshow(lfw.read_rgb(images / name))
        ax.set_title(f"{norm[name]:.1f}", fontsize=8)
    for ax in axes.ravel():
        ax.axis("off")
    fig.suptitle("lowest (top) and highest (bottom) embedding norms, shipped model", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "norm_extremes.png", dpi=100)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.hist(list(norm.values()), bins=80)
    ax.set_xlabel("embedding norm (before normalisation)")
    fig.tight_layout()
    fig.savefig(out / "norm_hist.png", dpi=110)
    plt.close(fig)
    return rows


def tsne_map(
    out: Path, emb: dict[str, np.ndarray], people: dict[str, list[str]], n_people: int = 30, per_person: int = 15
) -> None:
    from sklearn.manifold import TSNE

    chosen = [
        p
        for p, imgs in sorted(people.items(), key=lambda kv: -len(kv[1]))
        if sum(np.isfinite(emb[i]).all() for i in imgs) >= per_person
    ][:n_people]
    names, labels = [], []
    for k, person in enumerate(chosen):
        imgs = [i for i in people[person] if np.isfinite(emb[i]).all()][:per_person]
        names += imgs
        labels += [k] * len(imgs)
    x = np.stack([emb[n] / np.linalg.norm(emb[n]) for n in names])
    xy = TSNE(n_components=2, metric="cosine", init="pca", perplexity=15, random_state=0).fit_transform(x)
    fig, ax = plt.subplots(figsize=(8, 7))
    cmap = plt.get_cmap("tab20")
    for k, person in enumerate(chosen):
        sel = np.array(labels) == k
        ax.scatter(xy[sel, 0], xy[sel, 1], s=14, color=cmap(k % 20), marker="o" if k < 20 else "^", label=person)
    ax.legend(fontsize=6, ncol=2, loc="best")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"t-SNE of {len(chosen)} LFW people x {per_person} photos (shipped model)")
    fig.tight_layout()
    fig.savefig(out / "tsne.png", dpi=110)
    plt.close(fig)


def worst_errors(
    out: Path, scores: np.ndarray, same: np.ndarray, pairs: list[lfw.Pair], images: Path, k: int = 6
) -> None:
    false_matches = [i for i in np.argsort(-scores) if not same[i]][:k]
    misses = [i for i in np.argsort(scores) if same[i]][:k]
    fig, axes = plt.subplots(2, 2 * k, figsize=(2 * k * 1.3, 3.4))
    for row, picks in enumerate((false_matches, misses)):
        for j, i in enumerate(picks):
            for side, name in enumerate((pairs[i].a, pairs[i].b)):
                ax = axes[row, 2 * j + side]
                ax.imshow(lfw.read_rgb(images / name))
                ax.axis("off")
                if side == 0:
                    ax.set_title(f"{scores[i]:.2f}", fontsize=8, loc="left")
    fig.suptitle(
        "top: worst false matches (different people, highest similarity); bottom: worst misses (same person, lowest)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(out / "worst_errors.png", dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--out", type=Path, default=Path("reports/embeddings"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = data_root() / "lfw"
    pairs = lfw.read_pairs(root / "pairs.txt")
    people = lfw.list_people(root / "images")
    args.out.mkdir(parents=True, exist_ok=True)
    per_model, used = {}, {}
    for label, pattern in MODELS.items():
        path = find(args.cache_dir, pattern)
        if path is None:
            log.warning("no cached embeddings for %s (%s); evaluate it first", label, pattern)
            continue
        per_model[label] = lfw.pair_scores(load_embeddings(path), pairs)
        used[label] = path.name
    shipped_path = find(args.cache_dir, shipped_pattern())
    if shipped_path is None:
        sys.exit("no cached embeddings of the shipped model: run training.evaluate on it first")
    shipped = load_embeddings(shipped_path)
    used["shipped"] = shipped_path.name
    dist_rows = distributions(args.out, per_model)
    norm_rows = norms_section(args.out, shipped, pairs, root / "images")
    tsne_map(args.out, shipped, people)
    scores, same = lfw.pair_scores(shipped, pairs)
    worst_errors(args.out, scores, same, pairs, root / "images")
    (args.out / "models.json").write_text(json.dumps(used, indent=2))
    text = [
        "# What the embeddings look like",
        "",
        "Regenerate: `python -m training.embedding_study --out reports/embeddings` (after `training.compare` and "
        "`training.evaluate` have cached each model's raw LFW embeddings). All figures use LFW's official "
        "6,000 `pairs.txt` pairs through the full pipeline (MTCNN → 5-point alignment → embedder).",
        "",
        "## Same-person vs different-person similarity, per loss",
        "",
        "Equal-budget models of `reports/losses.md` (1,500 steps, flip TTA off). d′ = (μ_same − μ_diff) / "
        "√(½(σ²_same + σ²_diff)): how far apart the two distributions sit in units of their spread.",
        "",
        *dist_rows,
        "",
        "![similarity per loss](similarity_per_loss.png)",
        "",
        "## Embedding norm as an image-quality signal (shipped model)",
        "",
        "Embeddings are compared as unit vectors, but the network's raw output norm carries information "
        "(MagFace and AdaFace make it explicit). Pairs are grouped by the smaller raw norm of their two "
        "embeddings; accuracy uses one threshold (best over all pairs).",
        "",
        *norm_rows,
        "",
        "![norm histogram](norm_hist.png)",
        "",
        "![lowest and highest norms](norm_extremes.png) (LFW photos: local only, never committed)",
        "",
        "## A 2-D map of 30 identities (t-SNE, cosine)",
        "",
        "![t-SNE](tsne.png)",
        "",
        "## Where the errors are (shipped model)",
        "",
        "![worst errors](worst_errors.png) (LFW photos: local only, never committed)",
        "",
    ]
    (args.out / "embeddings.md").write_text("\n".join(text))
    log.info("wrote %s", args.out / "embeddings.md")


if __name__ == "__main__":
    main()
