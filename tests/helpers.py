"""What several test files share: clients on the real app, the known people and their photos, and
reading the database directly. Test files import from here, never from each other."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from app.config import Settings
from app.main import create_app
from app.testing import ADMIN_KEY

__all__ = [
    "ADMIN_KEY",
    "EXPECTED",
    "FPR",
    "PEOPLE",
    "database_generation",
    "database_state",
    "database_url_for",
    "enroll_all",
    "files",
    "make_client",
    "matched_names",
    "one_face_photos",
    "tiny_identity_tree",
    "tiny_training_overrides",
    "top_candidates",
]

PEOPLE = ["alex_lacamoire", "biden", "kit_harington", "obama", "rose_leslie"]
# Test photo -> the enrolled people in it (johnsnow_test1 is Kit Harington as Jon Snow).
EXPECTED = {
    "alex_lacamoire1.jpg": {"alex_lacamoire"},
    "johnsnow_test1.jpg": {"kit_harington"},
    "kit_with_rose.jpg": {"kit_harington", "rose_leslie"},
    "obama1.jpg": {"obama"},
    "obama_and_biden.jpg": {"obama", "biden"},
}


# The operating point of these checks: the service's default (FACEREC_DEFAULT_FPR = 1e-3). The shipped
# embedder names every known face there and leaves the stranger unknown; rank-1 correctness is
# checked separately, threshold-free.
FPR = 1e-3


def make_client(state_dir: Path, key: str | None = ADMIN_KEY, **settings) -> TestClient:
    """A client for an app on the committed weights (or FACEREC_WEIGHTS) and ``state_dir``, sending ``key``."""
    app = create_app(Settings(state_dir=state_dir, **{"admin_key": ADMIN_KEY, **settings}))
    return TestClient(app, headers={"X-API-Key": key} if key else {})


def files(paths: list[Path], field: str = "images") -> list[tuple[str, tuple[str, bytes]]]:
    return [(field, (p.name, p.read_bytes())) for p in paths]


def enroll_all(client, known: Path, people: list[str] = PEOPLE) -> dict[str, int]:
    ids = {}
    for person in people:
        photos = sorted((known / "train" / person).iterdir())
        r = client.post("/enroll", data={"name": person}, files=files(photos))
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["identity"]["name"] == person and len(body["faces"]) == len(photos)
        ids[person] = body["identity"]["id"]
    return ids


def matched_names(client, photo: Path, fpr: float = FPR) -> list[str | None]:
    r = client.post("/identify", files=files([photo], "image"), data={"fpr": fpr})
    assert r.status_code == 200, r.text
    return [f["match"]["name"] if f["match"] else None for f in r.json()["faces"]]


def top_candidates(client, photo: Path) -> list[str]:
    """Rank-1 identity of every face, whatever its similarity."""
    r = client.post("/identify", files=files([photo], "image"), data={"top_k": 1})
    return [f["candidates"][0]["name"] for f in r.json()["faces"] if f["candidates"]]


def one_face_photos(data: Path) -> list[tuple[str, bytes]]:
    known = data / "photos" / "known_people"
    paths = [
        known / "obama_small.jpg",
        known / "knn_examples" / "train" / "kit_harington" / "john2.jpeg",
        known / "knn_examples" / "train" / "rose_leslie" / "img2.jpg",
    ]
    return [(p.name, p.read_bytes()) for p in paths]


def database_url_for(state: Path, database_url: str = "") -> str:
    """The URL a service on ``state`` with ``FACEREC_DATABASE_URL=database_url`` uses."""
    return database_url or f"sqlite:///{state / 'facerec.db'}"


def database_state(state: Path, database_url: str = "") -> tuple[dict[str, int], np.ndarray, np.ndarray]:
    """{name: face count}, face ids and vectors, read straight from the database (not the service)."""
    engine = create_engine(database_url_for(state, database_url))
    try:
        with engine.connect() as db:
            counts = dict(
                db.execute(
                    text(
                        "SELECT i.name, COUNT(f.id) FROM identities i LEFT JOIN faces f ON f.identity_id = i.id "
                        "GROUP BY i.id, i.name"
                    )
                ).all()
            )
            rows = db.execute(text("SELECT id, embedding FROM faces ORDER BY id")).all()
    finally:
        engine.dispose()
    ids = np.array([r[0] for r in rows], np.int64)
    vectors = (
        np.frombuffer(b"".join(bytes(r[1]) for r in rows), np.float32).reshape(len(rows), -1)
        if rows
        else np.zeros((0, 512), np.float32)
    )
    return counts, ids, vectors


def database_generation(state: Path, database_url: str = "") -> int:
    engine = create_engine(database_url_for(state, database_url))
    try:
        with engine.connect() as db:
            return int(db.execute(text("SELECT generation FROM gallery_state")).scalar_one())
    finally:
        engine.dispose()


def tiny_identity_tree(root: Path, people: int = 3, images: int = 5) -> Path:
    """``people`` synthetic identities of ``images`` noisy copies of one random picture each."""
    import cv2

    rng = np.random.default_rng(0)
    for person in range(people):
        folder = root / f"person_{person}"
        folder.mkdir(parents=True)
        base = rng.integers(0, 255, (112, 112, 3), dtype=np.uint8)
        for i in range(images):
            noisy = np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)
            cv2.imwrite(str(folder / f"{i}.jpg"), noisy)
    return root


def tiny_training_overrides(tree: Path, work: Path, steps: int) -> list[str]:
    """``--set`` overrides for a seconds-long run of a tiny network on ``tree``."""
    return [
        f"data_dir={tree}",
        f"out_dir={work / 'runs'}",
        "name=tiny",
        "arch=iresnet_tiny",
        "input_size=32",
        "embedding_dim=16",
        f"steps={steps}",
        "batch_size=8",
        "warmup_steps=2",
        f"cache_dir={work / 'cache'}",
        "threads=1",
    ]


class UnhandledSignal(Exception):
    """A SIGTERM that the code under test did not take (see :func:`sigterm_in_step`)."""


@contextlib.contextmanager
def sigterm_in_step(monkeypatch, module, step: int):
    """SIGTERM sent to this process while ``module``'s training loop runs step index ``step`` (from
    inside its ``lr_at``). While this is entered, a SIGTERM that the loop does not take raises
    :class:`UnhandledSignal` -- the test fails instead of the test process being killed."""
    lr_at = module.lr_at

    def lr_then_terminated(at: int, cfg):
        if at == step:
            os.kill(os.getpid(), signal.SIGTERM)
        return lr_at(at, cfg)

    def unhandled(signum, frame):
        raise UnhandledSignal(f"signal {signum} reached the test")

    monkeypatch.setattr(module, "lr_at", lr_then_terminated)
    previous = signal.signal(signal.SIGTERM, unhandled)
    try:
        yield
        assert signal.getsignal(signal.SIGTERM) is unhandled, "the loop did not put back the handler it found"
    finally:
        signal.signal(signal.SIGTERM, previous)
        monkeypatch.setattr(module, "lr_at", lr_at)
