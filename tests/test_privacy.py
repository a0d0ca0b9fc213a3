"""What is stored, and that deleting an identity really removes it: no photo is ever written, and
after a delete neither the index nor the database files hold its vectors; its own photo no longer finds it."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pytest

from tests.helpers import database_state, files, make_client


def obama_faces(client, identity_id: int) -> set[int]:
    return {f["id"] for f in client.get(f"/identities/{identity_id}").json()["faces"]}


@pytest.mark.parametrize("exact_max", [20_000, 1], ids=["exact-index", "hnsw-index"])
def test_no_photo_is_stored_and_delete_leaves_nothing(tmp_path: Path, known: Path, exact_max: int, database_url: str):
    state = tmp_path / "state"
    obama = sorted((known / "train" / "obama").iterdir())
    with make_client(state, index_exact_max=exact_max, database_url=database_url) as client:
        r = client.post("/enroll", data={"name": "obama"}, files=files(obama))
        assert r.status_code == 201
        obama_id = r.json()["identity"]["id"]
        assert (
            client.post(
                "/enroll", data={"name": "biden"}, files=files([known / "train" / "biden" / "biden.jpg"])
            ).status_code
            == 201
        )
        if exact_max == 1:  # enough other faces that obama's two stay tombstones (under a tenth of the graph)
            others = sorted(p for p in (known / "train").glob("*/*") if p.parent.name != "obama")
            for copy in range(3):
                for photo in others:
                    r = client.post(
                        "/enroll", data={"name": f"{photo.parent.name}-{photo.stem}-{copy}"}, files=files([photo])
                    )
                    assert r.status_code == 201
        client.app.state.service.flush_index()  # the background saver's save, done now
        assert sorted(p.name for p in state.iterdir() if not p.name.startswith("facerec.db")) == [
            "faces.faiss",
            "faces.faiss.json",
            "faces.faiss.lock",
        ]  # the index snapshot, its header (generation, count, checksum) and this process's claim on it
        # (the networks exported for ONNX Runtime go to FACEREC_ONNX_CACHE_DIR, set by the tests)
        stored = b"".join(p.read_bytes() for p in state.iterdir() if p.is_file())
        for photo in obama:  # not even a slice of the photo's bytes is kept
            data = photo.read_bytes()
            assert data[1000:1400] not in stored

        before, ids, all_vectors = database_state(state, database_url)
        assert before["obama"] == 2
        vectors = [all_vectors[i].tobytes() for i, face in enumerate(ids) if face in obama_faces(client, obama_id)]
        assert len(vectors) == 2

        assert client.delete(f"/identities/{obama_id}").status_code == 200
        # Its own photo no longer finds it, at any threshold, in any rank.
        r = client.post("/identify", files=files([obama[0]], "image"), data={"top_k": 50, "fpr": 1e-1})
        assert "obama" not in [c["name"] for f in r.json()["faces"] for c in f["candidates"]]

    index = faiss.read_index(str(state / "faces.faiss"))
    assert index.ntotal == (1 if exact_max > 1 else 24)  # HNSW keeps the deleted nodes, zeroed
    for v in vectors:
        sims, _ = index.search(np.frombuffer(v, np.float32)[None], 1)
        assert sims[0, 0] < 0.99
    assert "obama" not in database_state(state, database_url)[0]
    # Database, write-ahead log and index: the deleted vectors' bytes are gone, as float32 (the
    # database, the exact index) and as float16 (the HNSW index's storage). With PostgreSQL the
    # state directory holds only the snapshot; the database server's own files keep dead rows until
    # VACUUM reuses their space (README, "Scaling out").
    encodings = vectors + [np.frombuffer(v, np.float32).astype(np.float16).tobytes() for v in vectors]
    for path in (p for p in state.iterdir() if p.is_file()):
        raw = path.read_bytes()
        assert not any(v in raw for v in encodings), path.name
