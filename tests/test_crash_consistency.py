"""Crash consistency: the real server is SIGKILLed at random moments while it enrols and deletes.

After every kill the database files are read directly, and after every restart the index is compared
with the database: every acknowledged write is there, no request is half-applied, and the index the
service searches holds exactly the database's vectors.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from pathlib import Path

import faiss
import httpx
import numpy as np

from app.services.index import checksum
from app.testing import LiveServer
from tests.helpers import database_state, one_face_photos

log = logging.getLogger(__name__)
CYCLES = 20
SEED = 20261130


class Ledger:
    """What the client sent and what the server acknowledged."""

    def __init__(self) -> None:
        self.sent: dict[str, int] = {}  # name -> images in its enrol request
        self.acked: dict[str, int] = {}  # name -> images, for 201 answers
        self.delete_sent: set[str] = set()
        self.deleted: set[str] = set()  # deletes answered 200
        self.ids: dict[str, int] = {}
        self.unexpected: list[str] = []

    def interrupted(self) -> int:
        """Requests the server never answered (it was killed while they were in flight)."""
        return len(set(self.sent) - set(self.acked)) + len(self.delete_sent - self.deleted)


def stream(server: LiveServer, ledger: Ledger, photos, cycle: int, rng: random.Random, stop: threading.Event) -> None:
    """Enrol new identities one after another (sometimes deleting an earlier one) until the server dies."""
    with server.client(timeout=30) as client:
        i = 0
        while not stop.is_set():
            try:
                deletable = sorted(set(ledger.acked) - ledger.delete_sent)
                if deletable and rng.random() < 0.2:
                    name = rng.choice(deletable)
                    ledger.delete_sent.add(name)
                    r = client.delete(f"/identities/{ledger.ids[name]}")
                    if r.status_code == 200:
                        ledger.deleted.add(name)
                    else:
                        ledger.unexpected.append(f"delete {name}: {r.status_code} {r.text}")
                    continue
                name, n = f"c{cycle}-{i}", rng.choice([1, 2, 3])
                i += 1
                ledger.sent[name] = n
                r = client.post("/enroll", data={"name": name}, files=[("images", p) for p in rng.sample(photos, n)])
                if r.status_code == 201:
                    ledger.acked[name] = n
                    ledger.ids[name] = r.json()["identity"]["id"]
                else:
                    ledger.unexpected.append(f"enroll {name}: {r.status_code} {r.text}")
            except httpx.TransportError:
                return  # the server was killed


def check_after_kill(state: Path, database_url: str, ledger: Ledger) -> None:
    counts, _, _ = database_state(state, database_url)
    for name, n in ledger.acked.items():
        if name in ledger.deleted:
            assert name not in counts, f"{name}: acknowledged delete, still in the database"
        elif name not in ledger.delete_sent:
            assert counts.get(name) == n, f"{name}: acknowledged with {n} faces, database has {counts.get(name)}"
    for name, have in counts.items():
        assert have == ledger.sent[name], f"{name}: half-written ({have} of {ledger.sent[name]} faces)"


def check_after_restart(server: LiveServer, state: Path, database_url: str) -> None:
    counts, ids, vectors = database_state(state, database_url)
    index = faiss.read_index(str(state / "faces.faiss"))
    index_ids = faiss.vector_to_array(index.id_map).astype(np.int64)
    index_vectors = index.index.reconstruct_n(0, index.ntotal) if index.ntotal else np.zeros((0, 512), np.float32)
    assert checksum(index_ids, index_vectors) == checksum(ids, vectors), "index disagrees with the database"
    with server.client() as client:
        health = client.get("/health").json()
        assert health["faces_indexed"] == len(ids) and health["identities"] == len(counts)
        listed = client.get("/identities", params={"limit": 1000}).json()
        assert {i["name"]: i["face_count"] for i in listed} == counts


def test_sigkill_at_random_moments_loses_nothing(tmp_path: Path, data: Path, database_url: str):
    rng = random.Random(SEED)
    photos = one_face_photos(data)
    state, ledger = tmp_path / "state", Ledger()
    server = LiveServer(state, tmp_path / "server.log", FACEREC_DATABASE_URL=database_url)
    for cycle in range(CYCLES):
        server.start()
        if cycle:
            check_after_restart(server, state, database_url)
        stop = threading.Event()
        worker = threading.Thread(
            target=stream, args=(server, ledger, photos, cycle, random.Random(rng.random()), stop)
        )
        worker.start()
        time.sleep(rng.uniform(0.3, 2.5))
        server.kill()
        stop.set()
        worker.join(60)
        assert not worker.is_alive()
        check_after_kill(state, database_url, ledger)
    server.start()
    try:
        check_after_restart(server, state, database_url)
    finally:
        server.stop()
    log.info(
        "%d cycles: %d enrolls acknowledged, %d deletes acknowledged, %d requests cut off by SIGKILL",
        CYCLES,
        len(ledger.acked),
        len(ledger.deleted),
        ledger.interrupted(),
    )
    assert not ledger.unexpected, ledger.unexpected[:5]
    # The run must have exercised something: many acknowledged writes, most kills landing mid-request.
    assert len(ledger.acked) >= CYCLES and ledger.deleted, (len(ledger.acked), len(ledger.deleted))
    assert ledger.interrupted() >= CYCLES // 2, ledger.interrupted()
