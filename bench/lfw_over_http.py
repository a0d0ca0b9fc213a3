"""LFW measured from outside: every photo of pairs.txt through the real service's ``POST /embed``.

    python bench/lfw_over_http.py --out bench/results/lfw_over_http.json

Starts the service (uvicorn, its default settings, the committed weights) on a fresh state dir, sends
the 7,701 photos of LFW's View 2 pairs to ``/embed``, keeps the face nearest each photo's centre (the
labelled face; the face choice ``training.evaluate`` makes), and scores the 6,000 pairs two ways:
plain cosine of the returned vectors (what a client can do) and the model card's own score (cohort
normalisation, computed here with the card's cohort file), each with the 10-fold protocol.
``training.evaluate`` builds its pipeline with the same factory and settings, so both figures should
equal its report's; where they differ, the vectors are compared photo by photo.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.testing import LiveServer  # noqa: E402
from models import DEFAULT_WEIGHTS  # noqa: E402
from models.embedder import ModelCard, load_score_function  # noqa: E402
from models.metrics import cosine_matrix, kfold_accuracy  # noqa: E402
from training import lfw  # noqa: E402
from training.config import data_root  # noqa: E402

log = logging.getLogger("bench.lfw_over_http")


def central(faces: list[dict], width: int, height: int) -> np.ndarray | None:
    """The embedding of the face whose box centre is nearest the photo's centre."""
    if not faces:
        return None
    centre = np.array([width, height]) / 2
    best = min(faces, key=lambda f: np.linalg.norm((np.array(f["box"][:2]) + f["box"][2:]) / 2 - centre))
    return np.asarray(best["embedding"], np.float32)


def pair_accuracy(emb: dict[str, np.ndarray | None], pairs: list[lfw.Pair], score) -> dict:
    dim = next(v for v in emb.values() if v is not None).shape[0]
    nan = np.full(dim, np.nan, np.float32)
    a = np.stack([emb[p.a] if emb[p.a] is not None else nan for p in pairs])
    b = np.stack([emb[p.b] if emb[p.b] is not None else nan for p in pairs])
    scores = np.array([score(a[i : i + 1], b[i : i + 1])[0, 0] for i in range(len(pairs))], np.float64)
    scores = np.nan_to_num(scores, neginf=-1e9)
    mean, std, _ = kfold_accuracy(scores, np.array([p.same for p in pairs]), np.array([p.fold for p in pairs]))
    return {"mean": round(mean, 4), "std": round(std, 4)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS, help="FACEREC_WEIGHTS of the service")
    parser.add_argument("--clients", type=int, default=2, help="concurrent requests")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "lfw_over_http.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = data_root() / "lfw"
    pairs = lfw.read_pairs(root / "pairs.txt")
    names = sorted({n for p in pairs for n in (p.a, p.b)})
    emb: dict[str, np.ndarray | None] = {}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        server = LiveServer(Path(tmp) / "state", Path(tmp) / "server.log", FACEREC_WEIGHTS=str(args.weights))
        with server, server.client(timeout=120) as client:
            version = client.get("/health").json()["model_version"]

            def embed(name: str) -> tuple[str, np.ndarray | None]:
                path = root / "images" / name
                r = client.post("/embed", files=[("image", (path.name, path.read_bytes()))])
                r.raise_for_status()
                image = lfw.read_rgb(path)
                return name, central(r.json()["faces"], image.shape[1], image.shape[0])

            with ThreadPoolExecutor(args.clients) as pool:
                for i, (name, vector) in enumerate(pool.map(embed, names)):
                    emb[name] = vector
                    if (i + 1) % 1000 == 0:
                        log.info("%d / %d photos", i + 1, len(names))
    card = ModelCard.load(args.weights.with_suffix(".json"))
    result = {
        "command": "python bench/lfw_over_http.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "model_version": version,
        "photos": len(names),
        "no_face": sum(v is None for v in emb.values()),
        "seconds": round(time.perf_counter() - t0, 1),
        "lfw_cosine": pair_accuracy(emb, pairs, cosine_matrix),
        "lfw_card_score": pair_accuracy(emb, pairs, load_score_function(args.weights, card)),
        "card_scoring": card.scoring.get("method"),
        "card_lfw": card.raw.get("metrics", {}).get("lfw_10fold_accuracy"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    log.info("%s", json.dumps(result))


if __name__ == "__main__":
    main()
