"""Cold start with a large gallery: time from launching the server to the first answered /identify.

    python bench/cold_start.py --faces 1000000 --out bench/results/cold_start.json

Fills a fresh state dir's SQLite database with ``--faces`` synthetic identities (one face each,
vectors with the structure of real embeddings, see ``bench/index_scale.py``) plus the five known
people enrolled through the API, lets a first start build and save the index, and then restarts the
server ``--restarts`` times, timing process launch -> first /identify answered. The restarts reuse the
saved index: the check is the database's generation and count against the index header, and a CRC
of the index file; no embedding is read. With ``--state DIR`` the filled state dir is kept there and
a later run with the same ``--faces`` starts at the restarts (filling 1M faces and building their
index took 25 min here, with other jobs on the two cores).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.db.session import make_engine, upgrade_database  # noqa: E402
from app.services.index import VectorIndex  # noqa: E402
from app.testing import LiveServer  # noqa: E402
from bench.index_scale import GalleryModel, real_embeddings  # noqa: E402
from models import DEFAULT_WEIGHTS  # noqa: E402
from models.embedder import ModelCard  # noqa: E402
from training.config import data_root  # noqa: E402

log = logging.getLogger("bench.cold_start")


def fill(state: Path, n: int, model: GalleryModel, version: str) -> None:
    """``n`` synthetic identities with one face each (ids 1..n, the same vectors as
    ``bench/index_scale.py`` draws for size ``n``), written straight into the database."""
    state.mkdir(parents=True, exist_ok=True)
    upgrade_database(make_engine(f"sqlite:///{state / 'facerec.db'}"))
    vectors, _ = model.sample(n, np.random.default_rng(n))
    now = "2026-11-30 00:00:00.000000"
    with sqlite3.connect(state / "facerec.db") as db:
        db.execute("PRAGMA journal_mode=WAL")
        for start in range(0, n, 100_000):
            m = min(100_000, n - start)
            gallery = vectors[start : start + m]
            db.executemany(
                "INSERT INTO identities (id, name, created_at) VALUES (?, ?, ?)",
                ((start + i + 1, f"synthetic-{start + i + 1}", now) for i in range(m)),
            )
            db.executemany(
                "INSERT INTO faces (id, identity_id, model_version, embedding, box, det_score, source, created_at) "
                "VALUES (?, ?, ?, ?, '[0,0,1,1]', 1.0, 'synthetic', ?)",
                ((start + i + 1, start + i + 1, version, gallery[i].tobytes(), now) for i in range(m)),
            )
            log.info("filled %d / %d", start + m, n)


def adopt_index(state: Path, index_file: Path) -> None:
    """Use an HNSW index already built over exactly these vectors (``bench/index_scale.py --reuse-dir``)
    instead of building it at the first start: load it (checked against its own header) and save it
    into the state dir for the database's current generation. Only valid because the vectors are the
    same ones (same seed, same ids)."""
    with sqlite3.connect(state / "facerec.db") as db:
        (generation,) = db.execute("SELECT generation FROM gallery_state").fetchone()
        (count,) = db.execute("SELECT COUNT(*) FROM faces").fetchone()

    def refuse():
        raise RuntimeError(
            f"{index_file} is not an index of these {count:,} vectors; build it with "
            f"bench/index_scale.py --sizes {count} --reuse-dir DIR"
        )

    index = VectorIndex(512, index_file)
    index.load_or_rebuild(1, count, refuse)
    index.path = state / "faces.faiss"
    index.save(generation)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=data_root())
    parser.add_argument("--faces", type=int, default=1_000_000)
    parser.add_argument("--restarts", type=int, default=3)
    parser.add_argument(
        "--index-from",
        type=Path,
        default=None,
        help="an HNSW index file built by bench/index_scale.py for the same size (skips the first start's build)",
    )
    parser.add_argument(
        "--state", type=Path, default=None, help="keep the filled state dir here, and reuse it when it is complete"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "cold_start.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    known = args.data / "photos" / "known_people" / "knn_examples"
    probe = known / "test" / "obama1.jpg"
    version = ModelCard.load(DEFAULT_WEIGHTS.with_suffix(".json")).version
    with tempfile.TemporaryDirectory() as tmp:
        state = args.state or Path(tmp) / "state"
        made = state / "cold_start_state.json"  # written once the state dir is complete
        prepared = json.loads(made.read_text()) if made.exists() else {}
        if prepared.get("faces") == args.faces:
            log.info("reusing %s (%s)", state, prepared)
        else:
            if state.exists():
                shutil.rmtree(state)
            t0 = time.perf_counter()
            fill(state, args.faces, GalleryModel(*real_embeddings(args.data, DEFAULT_WEIGHTS)), version)
            fill_s = time.perf_counter() - t0
            if args.index_from:
                adopt_index(state, args.index_from)
            server = LiveServer(state, Path(tmp) / "server.log")
            t0 = time.perf_counter()
            server.start(timeout=3600)  # the first start builds the index from the database
            first_start_s = time.perf_counter() - t0
            with server.client() as client:
                for person in sorted((known / "train").iterdir()):
                    files = [("images", (p.name, p.read_bytes())) for p in sorted(person.iterdir())]
                    client.post("/enroll", data={"name": person.name}, files=files).raise_for_status()
                kind = client.get("/health").json()
            server.stop()
            prepared = {
                "faces": args.faces,
                "fill_s": round(fill_s, 1),
                "first_start_s": round(first_start_s, 1),
                "health": kind,
            }
            made.write_text(json.dumps(prepared))
        timings, answers, reused = [], [], []
        for i in range(args.restarts):
            server = LiveServer(state, Path(tmp) / f"restart{i}.log")
            t0 = time.perf_counter()
            server.start(timeout=600)
            with server.client() as client:
                r = client.post("/identify", files={"image": (probe.name, probe.read_bytes())})
                r.raise_for_status()
            timings.append(time.perf_counter() - t0)
            answers.append([f["match"]["name"] if f["match"] else None for f in r.json()["faces"]])
            server.stop()
            log.info("restart: first /identify answered after %.2f s (%s)", timings[-1], answers[-1])
            reused.append("caught up to" in server.log_path.read_text())  # the snapshot was loaded, not rebuilt
    result = {
        "faces": args.faces + 9,
        "fill_s": prepared["fill_s"],
        "index_adopted": bool(args.index_from),
        "first_start_s": prepared["first_start_s"],
        "health": prepared["health"],
        "cold_start_to_first_identify_s": [round(t, 2) for t in timings],
        "median_s": round(statistics.median(timings), 2),
        "index_reused": all(reused),
        "answers": answers,
        "command": "python bench/cold_start.py " + " ".join(sys.argv[1:]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    log.info("%s", result)


if __name__ == "__main__":
    main()
