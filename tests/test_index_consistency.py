"""The FAISS index against the SQLite database: add, delete, restart, tamper -> rebuilt."""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

from app.services.index import IndexParams, SnapshotRead, VectorIndex, checksum
from tests.helpers import PEOPLE, enroll_all, files, make_client, matched_names


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


def never_called():
    raise AssertionError("the index should have been reused, not rebuilt from the database")


def test_vector_index_add_remove_search_and_reload(tmp_path: Path):
    index = VectorIndex(8, tmp_path / "i.faiss")
    vectors = unit(5)
    index.add(np.arange(10, 15), vectors)
    sims, ids = index.search(vectors[2:3], 2)
    assert ids[0, 0] == 12 and abs(sims[0, 0] - 1) < 1e-5
    index.remove(np.array([12]))
    assert 12 not in index.search(vectors[2:3], 5)[1]
    index.save(generation=7)
    again = VectorIndex(8, tmp_path / "i.faiss")
    assert again.load_or_rebuild(7, 4, never_called) is True
    assert len(again) == 4 and again.checksum() == index.checksum()
    # Another generation or count in the database: rebuilt from what the database holds.
    for generation, count in ((8, 4), (7, 5)):
        third = VectorIndex(8, tmp_path / "i.faiss")
        assert third.load_or_rebuild(generation, count, lambda: (np.arange(5), vectors)) is False
        assert len(third) == 5


def test_index_loads_from_a_read_started_earlier_and_only_of_its_own_file(tmp_path: Path):
    index = VectorIndex(8, tmp_path / "i.faiss")
    index.add(np.arange(5), unit(5))
    index.save(generation=3)
    read = SnapshotRead(tmp_path / "i.faiss")  # started before anything asks for it
    again = VectorIndex(8, tmp_path / "i.faiss")
    assert again.load(lambda generation: None, read) == 3
    assert again.checksum() == index.checksum()
    other = VectorIndex(8, tmp_path / "other.faiss")
    with pytest.raises(ValueError, match="cannot load the index at"):
        other.load(lambda generation: None, SnapshotRead(tmp_path / "i.faiss"))
    # A read of a file that is not there reports why instead of raising.
    loaded, crc, error = SnapshotRead(tmp_path / "missing.faiss").result()
    assert loaded is None and crc is None and error


def test_large_gallery_switches_to_hnsw_with_tombstones_and_persistence(tmp_path: Path):
    params = IndexParams(exact_max=500, ef_search=64)
    index = VectorIndex(16, tmp_path / "i.faiss", params)
    vectors = unit(2000, dim=16, seed=1)
    ids = np.arange(100, 2100)
    index.rebuild(ids[:400], vectors[:400])
    assert index.kind == "exact" and not index.needs_rebuild()
    index.add(ids[400:], vectors[400:])
    assert index.needs_rebuild()  # 2000 > exact_max
    index.rebuild(ids, vectors)
    assert index.kind == "hnsw" and not index.needs_rebuild()
    sims, found = index.search(vectors[:200], 1)
    assert np.mean(found[:, 0] == ids[:200]) > 0.97 and np.allclose(sims[found[:, 0] == ids[:200], 0], 1, atol=2e-3)
    index.remove(ids[:10])  # tombstones: never returned again, and their vectors are zeroed
    assert len(index) == 1990 and not np.isin(ids[:10], index.search(vectors[:10], 5)[1]).any()
    assert not index.index.reconstruct(int(ids[0])).any() and index.index.reconstruct(int(ids[10])).any()
    assert sorted(index.ids()) == list(ids[10:])
    index.save(generation=3)
    again = VectorIndex(16, tmp_path / "i.faiss", params)
    assert again.load_or_rebuild(3, 1990, never_called) and again.kind == "hnsw"
    assert again.tombstones == set(ids[:10].tolist()) and not np.isin(ids[:10], again.search(vectors[:10], 5)[1]).any()
    again.remove(ids[10:300])  # past a tenth of the graph: time to rebuild
    assert again.needs_rebuild()
    again.rebuild(*again.contents())
    assert len(again) == 1700 and not again.tombstones and again.index.ntotal == 1700
    # A removed id handed out again by the database cannot be revived in the graph: rebuild.
    again.remove(ids[400:401])
    assert not again.needs_rebuild()
    again.add(ids[400:401], vectors[400:401])
    assert again.needs_rebuild()


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

    # A change made to the database behind the service's back is logged by the triggers (migration
    # 0004): the snapshot catches up from the change log.
    with sqlite3.connect(state / "facerec.db") as db:
        face_id, blob = db.execute("SELECT id, embedding FROM faces ORDER BY id LIMIT 1").fetchone()
        changed = -np.frombuffer(blob, np.float32)
        db.execute("UPDATE faces SET embedding = ? WHERE id = ?", (changed.tobytes(), face_id))
    with make_client(state) as client:
        service = client.app.state.service
        assert service.index_reused and len(service.index) == 7
        assert service.index.search(changed[None], 1)[1][0, 0] == face_id

    # ... unless the log no longer reaches back to the snapshot: then it is rebuilt.
    with sqlite3.connect(state / "facerec.db") as db:
        db.execute("UPDATE faces SET embedding = ? WHERE id = ?", (blob, face_id))
        db.execute("DELETE FROM gallery_changes")
    with make_client(state) as client:
        service = client.app.state.service
        assert not service.index_reused and service.index.checksum() == db_checksum


def test_stale_snapshot_catches_up_on_a_write_it_never_saw(tmp_path: Path, known: Path):
    """A crash between the database commit and the index save leaves a stale snapshot: the change log
    brings it up to date at the next start."""
    state = tmp_path / "state"
    with make_client(state) as client:
        enroll_all(client, known, people=[p for p in PEOPLE if p != "biden"])
        client.app.state.service.flush_index()  # the saver's save of these writes, done now
        stale = {p: p.read_bytes() for p in state.glob("faces.faiss*")}
        enroll_all(client, known, people=["biden"])  # the write the snapshot never sees
    for path, raw in stale.items():  # index and header as they were before the last write
        path.write_bytes(raw)
    with make_client(state) as client:
        assert client.app.state.service.index_reused
        assert len(client.app.state.service.index) == 9
        # Biden's faces exist only in that write: found, so the snapshot caught up on it.
        assert set(matched_names(client, known / "test" / "obama_and_biden.jpg")) - {None} == {"biden", "obama"}


def test_service_moves_to_hnsw_when_the_gallery_grows_and_restarts_on_it(tmp_path: Path, known: Path):
    state = tmp_path / "state"
    with make_client(state, index_exact_max=4, index_sync_save_max=0, index_save_interval_s=3600) as client:
        enroll_all(client, known)  # 9 faces: past exact_max, so the index was rebuilt as HNSW
        assert client.app.state.service.index.kind == "hnsw"
        assert set(matched_names(client, known / "test" / "kit_with_rose.jpg")) == {"kit_harington", "rose_leslie"}
        # A large index is saved by the background saver or at shutdown, not on every write: a crash
        # now (a copy of the files as they are) must lead to a rebuild that loses nothing.
        with sqlite3.connect(state / "facerec.db") as db:
            (generation,) = db.execute("SELECT generation FROM gallery_state").fetchone()
        assert json.loads((state / "faces.faiss.json").read_text())["generation"] < generation
        crashed = tmp_path / "crashed"
        shutil.copytree(state, crashed)
    with make_client(crashed, index_exact_max=4) as client:  # caught up from the change log
        assert client.app.state.service.index_reused and len(client.app.state.service.index) == 9
    with make_client(state, index_exact_max=4) as client:
        service = client.app.state.service
        assert service.index_reused and service.index.kind == "hnsw" and len(service.index) == 9
        obama = client.get("/identities").json()[3]
        assert obama["name"] == "obama" and client.delete(f"/identities/{obama['id']}").status_code == 200
        assert "obama" not in matched_names(client, known / "test" / "obama1.jpg")
    with make_client(
        state, index_exact_max=4, index_sync_save_max=0, index_save_interval_s=0.2
    ) as client:  # tombstones survive
        assert client.app.state.service.index_reused
        assert "obama" not in matched_names(client, known / "test" / "obama1.jpg")
        r = client.post("/enroll", data={"name": "obama"}, files=files([known / "train" / "obama" / "obama.jpg"]))
        assert r.status_code == 201
        deadline = time.monotonic() + 30
        while client.app.state.service._unsaved is not None and time.monotonic() < deadline:
            time.sleep(0.1)  # the background saver picks the change up within its interval
        with sqlite3.connect(state / "facerec.db") as db:
            (generation,) = db.execute("SELECT generation FROM gallery_state").fetchone()
        assert json.loads((state / "faces.faiss.json").read_text())["generation"] == generation
        # A removal is saved at once, not left to the saver: the deleted vectors leave the disk now.
        client.app.state.service._stop.set()  # no background save can help
        biden = next(i for i in client.get("/identities").json() if i["name"] == "biden")
        assert client.delete(f"/identities/{biden['id']}").status_code == 200
        with sqlite3.connect(state / "facerec.db") as db:
            (generation,) = db.execute("SELECT generation FROM gallery_state").fetchone()
        assert json.loads((state / "faces.faiss.json").read_text())["generation"] == generation
