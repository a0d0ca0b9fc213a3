"""The vector index at gallery sizes of 10k, 100k and 1M identities: search latency, recall against
exact search, memory and build time.

    python bench/index_scale.py --sizes 10000 100000 1000000 --out bench/results/index_scale.json

Random unit vectors are far too easy (every pair is nearly orthogonal), so galleries are synthesised
with the structure of real embeddings: the shipped embedder embeds the aligned training crops; the
identity means give a between-identity covariance (sampled in its principal subspace) and the
residuals of real photos around their identity's mean give within-identity variation. Each synthetic
identity is one centre; its gallery face and its probe are that centre plus two different real
residuals. ``recall@k`` compares the index's top-k ids with exact inner-product search over the same
vectors; ``rank1_correct`` is how often the probe's own identity comes first (exact search).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import faiss
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.services.index import IndexParams, VectorIndex  # noqa: E402
from models import DEFAULT_WEIGHTS  # noqa: E402
from models.embedder import Embedder  # noqa: E402
from training.config import data_root  # noqa: E402

log = logging.getLogger("bench.index")
CACHE = Path.home() / ".cache" / "facerec"


def real_embeddings(data: Path, weights: Path, per_identity: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """(unit embeddings, identity labels) of up to ``per_identity`` aligned training crops per person."""
    embedder = Embedder(weights)
    cache = CACHE / f"bench_train_embeddings_{embedder.version}_{per_identity}.npz"
    if cache.exists():
        with np.load(cache) as z:
            return z["vectors"], z["labels"]
    folders = sorted(p for p in (data / "recognition" / "train").iterdir() if p.is_dir())
    vectors, labels = [], []
    for label, folder in enumerate(folders):
        crops = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in sorted(folder.iterdir())[:per_identity]]
        vectors.append(embedder.embed(crops))
        labels += [label] * len(crops)
    vectors, labels = np.concatenate(vectors), np.array(labels)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, vectors=vectors, labels=labels)
    return vectors, labels


class GalleryModel:
    """Between-identity spread from real identity means, within-identity noise from real residuals."""

    def __init__(self, vectors: np.ndarray, labels: np.ndarray) -> None:
        people = np.unique(labels)
        means = np.stack([vectors[labels == p].mean(0) for p in people])
        self.mu = means.mean(0)
        _, s, vt = np.linalg.svd(means - self.mu, full_matrices=False)
        self.basis = vt * (s[:, None] / np.sqrt(len(people) - 1))  # rows scaled to the std per component
        multi = np.array([np.sum(labels == p) >= 2 for p in people])
        keep = np.isin(labels, people[multi])
        self.residuals = vectors[keep] - means[np.searchsorted(people, labels[keep])]

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(gallery, probe) unit vectors for ``n`` synthetic identities, row i of each the same person."""
        gallery = np.empty((n, self.mu.size), np.float32)
        probes = np.empty_like(gallery)
        for start in range(0, n, 100_000):
            m = min(100_000, n - start)
            centres = self.mu + rng.standard_normal((m, len(self.basis)), np.float32) @ self.basis
            for out in (gallery, probes):
                v = centres + self.residuals[rng.integers(0, len(self.residuals), m)]
                out[start : start + m] = v / np.linalg.norm(v, axis=1, keepdims=True)
        return gallery, probes


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def exact_top(gallery: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    flat = faiss.IndexFlatIP(gallery.shape[1])
    flat.add(gallery)
    _, ids = flat.search(queries, k)
    return ids


def measure(index: VectorIndex, queries: np.ndarray, truth: np.ndarray, ids: np.ndarray) -> dict:
    """Single-query latency (batch of one, as /identify searches) and recall against ``truth``."""
    times, found = [], []
    index.search(queries[:10], 10)  # warm-up
    for q in queries:
        t0 = time.perf_counter()
        _, top = index.search(q[None], 10)
        times.append(1000 * (time.perf_counter() - t0))
        found.append(top[0])
    found = np.stack(found)
    truth_ids = ids[truth]
    return {
        "p50_ms": round(statistics.median(times), 3),
        "p95_ms": round(float(np.percentile(times, 95)), 3),
        "recall_at_1": float(np.mean(found[:, 0] == truth_ids[:, 0])),
        "recall_at_10": float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth_ids)])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=data_root())
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--ef-search", type=int, nargs="+", default=[32, 64, 128, 256])
    parser.add_argument(
        "--exact-max",
        type=int,
        default=IndexParams().exact_max,
        help="sizes above this also get an HNSW index (default: the service's setting)",
    )
    parser.add_argument(
        "--reuse-dir",
        type=Path,
        default=None,
        help="keep each size's HNSW index in DIR/<n>/ and reuse it when present (same seed, same "
        "vectors), so more efSearch values can be measured without rebuilding",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "index_scale.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    vectors, labels = real_embeddings(args.data, args.weights)
    model = GalleryModel(vectors, labels)
    log.info("structure from %d real embeddings of %d identities", len(vectors), len(np.unique(labels)))
    # Sizes not measured in this run keep their earlier results (the command of each is recorded).
    command = "python bench/index_scale.py " + " ".join(sys.argv[1:])
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    results = {
        "threads": faiss.omp_get_max_threads(),
        "cpus": os.cpu_count(),
        "sizes": previous.get("sizes", {}),
        "command": command,
    }
    for n in args.sizes:
        rng = np.random.default_rng(n)
        gallery, probes = model.sample(n, rng)
        ids = np.arange(1, n + 1, dtype=np.int64)
        pick = rng.choice(n, args.queries, replace=False)
        queries = probes[pick]
        truth = exact_top(gallery, queries, 10)
        same, diff = (gallery[pick] * queries).sum(1), (gallery[rng.integers(0, n, len(queries))] * queries).sum(1)
        row = {
            "rank1_correct_exact": float(np.mean(truth[:, 0] == pick)),
            "similarity_same_mean": float(same.mean()),
            "similarity_other_mean": float(diff.mean()),
        }
        exact = VectorIndex(gallery.shape[1], Path(tempfile.mkdtemp()) / "x", IndexParams(exact_max=n))
        exact.rebuild(ids, gallery)
        row["exact"] = measure(exact, queries, truth, ids)
        row["exact"]["memory_mb"] = round(gallery.nbytes / 2**20, 1)
        del exact
        if n > args.exact_max:
            before = rss_mb()
            path = (args.reuse_dir / str(n) if args.reuse_dir else Path(tempfile.mkdtemp())) / "faces.faiss"
            path.parent.mkdir(parents=True, exist_ok=True)
            index = VectorIndex(gallery.shape[1], path, IndexParams(exact_max=args.exact_max))
            t0 = time.perf_counter()
            if args.reuse_dir:
                reused = index.load_or_rebuild(1, n, lambda: (ids, gallery))  # rebuilds when it cannot reuse
            else:
                index.rebuild(ids, gallery)
                reused = False
            if not reused:
                row["hnsw_build_s"] = round(time.perf_counter() - t0, 1)
                row["hnsw_rss_delta_mb"] = round(rss_mb() - before, 1)
            else:
                before_row = previous.get("sizes", {}).get(str(n), {})
                row["hnsw_build_s"] = before_row.get("hnsw_build_s")
                row["hnsw_rss_delta_mb"] = before_row.get("hnsw_rss_delta_mb")
            index.save(generation=1)
            row["hnsw_file_mb"] = round(path.stat().st_size / 2**20, 1)
            row["hnsw"] = {}
            for ef in args.ef_search:
                index.set_ef_search(ef)
                row["hnsw"][ef] = measure(index, queries, truth, ids)
                log.info("n=%d efSearch=%d: %s", n, ef, row["hnsw"][ef])
            t0 = time.perf_counter()  # what a restart pays: header check, CRC and read
            again = VectorIndex(gallery.shape[1], path, IndexParams(exact_max=args.exact_max))
            assert again.load_or_rebuild(1, n, lambda: (ids, gallery))
            row["hnsw_load_s"] = round(time.perf_counter() - t0, 2)
            del index, again
        log.info("n=%d: %s", n, {k: v for k, v in row.items() if k != "hnsw"})
        row["command"] = command
        results["sizes"][str(n)] = row
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
