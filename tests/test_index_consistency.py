"""The FAISS index against the SQLite database: add, delete, restart, tamper -> rebuilt."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from app.services.index import VectorIndex, checksum
from tests.conftest import make_client
from tests.test_api_e2e import enroll_all, files, matched_names


def unit(n: int, dim: int = 8, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_checksum_ignores_order_but_not_content():
    ids, vectors = np.array([3, 1, 2]), unit(3)
    order = np.array([2, 0, 1])
    assert checksum(ids, vectors) == checksum(ids[order], vectors[order])
    tampered = vectors.copy()
    tampered[0, 0] += 1e-3
    assert checksum(ids, vectors) != checksum(ids, tampered)


def test_vector_index_add_remove_search_and_reload(tmp_path: Path):
    index = VectorIndex(8, tmp_path / "i.faiss")
    vectors = unit(5)
    index.add(np.arange(10, 15), vectors)
    sims, ids = index.search(vectors[2:3], 2)
    assert ids[0, 0] == 12 and abs(sims[0, 0] - 1) < 1e-5
    index.remove(np.array([12]))
    assert 12 not in index.search(vectors[2:3], 5)[1]
    index.save()
    again = VectorIndex(8, tmp_path / "i.faiss")
    assert again.load_or_rebuild(*index.contents()) is True
    assert len(again) == 4


def test_index_agrees_with_database_across_restarts_and_is_rebuilt_when_tampered(tmp_path: Path, known: Path):
    state = tmp_path / "state"
    with make_client(state) as client:
        ids = enroll_all(client, known)
        client.delete(f"/identities/{ids['biden']}")
        service = client.app.state.service
        assert len(service.index) == 7
        db_checksum = service.index.checksum()

    with make_client(state) as client:  # clean restart: the saved index is reused
        service = client.app.state.service
        assert service.index_reused
        assert len(service.index) == 7 and service.index.checksum() == db_checksum

    index_file = state / "faces.faiss"
    raw = bytearray(index_file.read_bytes())
    raw[-40:-20] = bytes(20)  # overwrite part of the stored vectors
    index_file.write_bytes(bytes(raw))
    with make_client(state) as client:
        service = client.app.state.service
        assert not service.index_reused
        assert len(service.index) == 7 and service.index.checksum() == db_checksum
        assert set(matched_names(client, known / "test" / "kit_with_rose.jpg")) == {"kit_harington", "rose_leslie"}

    index_file.write_bytes(b"garbage")  # unreadable: rebuilt
    with make_client(state) as client:
        assert not client.app.state.service.index_reused
        assert client.app.state.service.index.checksum() == db_checksum

    index_file.unlink()  # missing: rebuilt
    with make_client(state) as client:
        assert len(client.app.state.service.index) == 7


def test_index_rebuilt_after_a_write_the_index_never_saw(tmp_path: Path, known: Path):
    """A crash between the database commit and the index save leaves a stale index file."""
    state = tmp_path / "state"
    with make_client(state) as client:
        enroll_all(client, known)
        stale = (state / "faces.faiss").read_bytes()
        client.post("/enroll", data={"name": "again"}, files=files([known / "train" / "obama" / "obama2.jpg"]))
    (state / "faces.faiss").write_bytes(stale)
    with make_client(state) as client:
        assert not client.app.state.service.index_reused
        assert len(client.app.state.service.index) == 10
