"""End to end over HTTP: the committed weights, a real SQLite file and FAISS index, real photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.db import crud
from models import DEFAULT_WEIGHTS, runtime
from models.embedder import ModelCard, load_score_function
from models.metrics import idrate
from tests.helpers import EXPECTED, enroll_all, files, make_client, matched_names, top_candidates


def test_enroll_identify_delete_restart(known: Path, data: Path, tmp_path: Path, database_url: str):
    state = tmp_path / "state"
    with make_client(state, database_url=database_url) as client:
        ids = enroll_all(client, known)
        health = client.get("/health").json()
        assert health["faces_indexed"] == 9
        # where the networks run, as the service chose it on this machine (models.runtime.resolve)
        assert health["runtime"] == runtime.resolve("auto", "cpu")
        assert health["precision"] == ("bf16" if health["runtime"] == "openvino" else "fp32")
        assert health["threads"] == runtime.default_threads()

        for name, people in EXPECTED.items():
            names = matched_names(client, known / "test" / name)
            assert set(n for n in names if n) == people, (name, names)
            assert people <= set(top_candidates(client, known / "test" / name)), name

        # Never enrolled: answered as unknown.
        assert matched_names(client, data / "photos" / "known_people" / "lin-manuel-miranda.png") == [None]

        r = client.delete(f"/identities/{ids['obama']}")
        assert r.status_code == 200 and r.json()["faces_deleted"] == 2
        assert "obama" not in matched_names(client, known / "test" / "obama1.jpg")
        assert client.get(f"/identities/{ids['obama']}").status_code == 404

    # Restart on the same database and state: nothing lost, the saved index is reused.
    with make_client(state, database_url=database_url) as client:
        assert client.app.state.service.index_reused
        listed = {i["name"]: i["face_count"] for i in client.get("/identities").json()}
        assert listed == {"alex_lacamoire": 1, "biden": 2, "kit_harington": 2, "rose_leslie": 2}
        assert client.get("/health").json()["faces_indexed"] == 7
        assert set(n for n in matched_names(client, known / "test" / "kit_with_rose.jpg") if n) == {
            "kit_harington",
            "rose_leslie",
        }


def test_identify_reports_candidates_and_threshold(client, known: Path):
    enroll_all(client, known)
    r = client.post("/identify", files=files([known / "test" / "obama1.jpg"], "image"), data={"top_k": 3, "fpr": 1e-2})
    stages = dict(part.strip().split(";dur=") for part in r.headers["server-timing"].split(","))
    assert list(stages) == ["decode", "detect", "align", "embed", "search"] and all(
        float(v) >= 0 for v in stages.values()
    )
    body = r.json()
    face = body["faces"][0]
    assert len(face["candidates"]) == 3
    sims = [c["similarity"] for c in face["candidates"]]
    assert sims == sorted(sims, reverse=True)
    assert face["match"]["name"] == "obama" and face["match"]["similarity"] > body["threshold"]
    assert body["fpr"] == 1e-2 and len(face["landmarks"]) == 5


def test_identify_scores_with_the_model_cards_scoring(client, known: Path):
    """The candidate's similarity is the card's score (cohort-normalised cosine for the shipped model)
    of the photo's embedding (as /embed returns it) and the enrolled one (as stored)."""
    enrolled = sorted((known / "train" / "alex_lacamoire").iterdir())
    probe = known / "test" / "alex_lacamoire1.jpg"
    assert client.post("/enroll", data={"name": "alex"}, files=files(enrolled)).status_code == 201
    service = client.app.state.service
    with service.sessions() as session:
        g = crud.embeddings(session=session, model_version=service.model_version, dim=512)[2][0]
    q = client.post("/embed", files=files([probe], "image")).json()["faces"][0]["embedding"]
    score = load_score_function(DEFAULT_WEIGHTS, ModelCard.load(DEFAULT_WEIGHTS.with_suffix(".json")))
    expected = float(score(np.array([q]), np.array([g]))[0, 0])
    body = client.post("/identify", files=files([probe], "image"), data={"top_k": 1}).json()
    assert body["faces"][0]["candidates"][0]["similarity"] == pytest.approx(expected, abs=1e-4)
    scoring = client.get("/metrics/idrate").json()["scoring"]
    assert scoring["method"] in {"cosine", "cohort"}
    if scoring["method"] == "cohort":  # the cohort term is not zero: this is not the plain cosine
        assert abs(expected - float(np.dot(q, g))) > 1e-3


def test_embed_returns_unit_vectors(client, known: Path):
    r = client.post("/embed", files=files([known / "test" / "kit_with_rose.jpg"], "image"))
    faces = r.json()["faces"]
    assert len(faces) == 2
    for f in faces:
        assert len(f["embedding"]) == 512
        assert sum(v * v for v in f["embedding"]) == pytest.approx(1.0, abs=1e-4)


def test_a_large_jpeg_is_decoded_reduced_and_answers_in_its_own_pixels(client, known: Path):
    """A 4x upscaled photo (over twice the detector's side) takes the reduced-decode path; boxes and
    points must come back in the large photo's pixels and the embedding must barely move."""
    import io

    from PIL import Image

    from app.services.images import decode_image

    photo = Image.open(known / "test" / "obama1.jpg")
    big = io.BytesIO()
    photo.resize((photo.width * 4, photo.height * 4), Image.LANCZOS).save(big, "JPEG", quality=92)
    decoded = decode_image(big.getvalue(), "big.jpg", max_bytes=10**8, max_pixels=10**8, work_side=1280)
    assert decoded.scale in (0.5, 0.25, 0.125) and max(decoded.pixels.shape) >= 1280
    small_face = client.post("/embed", files=files([known / "test" / "obama1.jpg"], "image")).json()["faces"][0]
    r = client.post("/embed", files=[("image", ("big.jpg", big.getvalue(), "image/jpeg"))])
    big_face = r.json()["faces"][0]
    side = small_face["box"][2] - small_face["box"][0]
    assert all(abs(b / 4 - s) < 0.1 * side for b, s in zip(big_face["box"], small_face["box"]))
    assert sum(a * b for a, b in zip(big_face["embedding"], small_face["embedding"])) > 0.9


def test_a_face_too_small_to_enrol_is_refused_by_name_but_still_identified(client, known: Path):
    """Enrolment only counts faces of at least FACEREC_ENROLL_MIN_FACE (80 px); /identify keeps 40."""
    import io

    from PIL import Image

    photo = Image.open(known / "train" / "obama" / "obama.jpg")  # face ~340 px
    small = io.BytesIO()
    photo.resize((photo.width // 6, photo.height // 6), Image.LANCZOS).save(small, "JPEG", quality=95)  # ~56 px
    upload = [("images", ("small.jpg", small.getvalue(), "image/jpeg"))]
    r = client.post("/enroll", data={"name": "obama-small"}, files=upload)
    assert r.status_code == 422 and r.json()["error"]["code"] == "no_face"
    assert (
        "at least 80 px" in r.json()["error"]["message"] and "FACEREC_ENROLL_MIN_FACE" in r.json()["error"]["message"]
    )
    assert client.get("/identities").json() == []  # nothing half-written
    r = client.post("/embed", files=[("image", ("small.jpg", small.getvalue(), "image/jpeg"))])
    assert len(r.json()["faces"]) == 1


def test_add_faces_to_existing_identity(client, known: Path):
    photos = sorted((known / "train" / "biden").iterdir())
    first = client.post("/enroll", data={"name": "biden"}, files=files(photos[:1])).json()
    r = client.post("/enroll", data={"identity_id": first["identity"]["id"]}, files=files(photos[1:]))
    assert r.status_code == 201 and r.json()["identity"]["face_count"] == 2


def test_idrate_metrics_report_card_and_live_gallery(client, known: Path):
    before = client.get("/metrics/idrate").json()
    assert {p["fpr"] for p in before["evaluation"]["idrate"]} == {1e-1, 1e-2, 1e-3, 1e-4}
    assert before["evaluation"]["lfw_10fold_accuracy"]["mean"] > 0.5
    assert before["gallery"] is None
    enroll_all(client, known)
    live = client.get("/metrics/idrate").json()["gallery"]
    assert live["identities_with_2_plus_faces"] == 4 and live["faces"] == 9
    # The live figure is the seed's ID rate over the stored vectors, scored as the card says: the
    # four people with two faces give four positive pairs, so every TPR is a multiple of 1/4, and the
    # report equals the metric recomputed here from the database.
    service = client.app.state.service
    with service.sessions() as session:
        _, owners, vectors = crud.embeddings(session=session, model_version=service.model_version, dim=512)
    people, counts = np.unique(owners, return_counts=True)
    query = np.isin(owners, people[counts >= 2])
    expected = idrate(
        vectors[query], owners[query], vectors[~query], [1e-1, 1e-2, 1e-3, 1e-4], service.pipeline.embedder.score
    )
    assert [p["tpr"] for p in live["idrate"]] == pytest.approx([p.tpr for p in expected])
    assert all(4 * p["tpr"] == int(4 * p["tpr"]) for p in live["idrate"]) and live["idrate"][0]["tpr"] > 0
