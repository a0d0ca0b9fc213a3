"""POST /verify: 1:1 decisions with the service's own score, on real photos and the committed weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.db import crud
from models import DEFAULT_WEIGHTS
from models.embedder import ModelCard, load_score_function
from tests.helpers import files

pytestmark = pytest.mark.slow


def verify(client, a: Path, b: Path | None = None, **data):
    upload = files([a], "image_a") + (files([b], "image_b") if b else [])
    return client.post("/verify", files=upload, data=data)


def test_same_person_and_strangers_are_told_apart_with_the_cards_score(client, known: Path):
    obama_a, obama_b = known / "train" / "obama" / "obama2.jpg", known / "test" / "obama1.jpg"
    biden = known / "train" / "biden" / "biden.jpg"
    same = verify(client, obama_a, obama_b, fpr=1e-2)
    assert same.status_code == 200, same.text
    body = same.json()
    assert body["same"] is True and body["score"] > body["threshold"] and body["fpr"] == 1e-2
    assert body["faces_found_a"] == body["faces_found_b"] == 1 and body["faces_compared"] == 1
    different = verify(client, obama_a, biden).json()
    assert different["same"] is False and different["fpr"] == 1e-3 and different["score"] < body["score"]
    # The score is the card's (cohort-normalised) score of the two faces /embed returns, which plain
    # cosine of those vectors is not.
    vectors = [
        np.array(client.post("/embed", files=files([p], "image")).json()["faces"][0]["embedding"])
        for p in (obama_a, obama_b)
    ]
    card_score = load_score_function(DEFAULT_WEIGHTS, ModelCard.load(DEFAULT_WEIGHTS.with_suffix(".json")))
    assert body["score"] == pytest.approx(float(card_score(vectors[0][None], vectors[1][None])[0, 0]), abs=1e-4)
    assert body["score"] != pytest.approx(float(vectors[0] @ vectors[1]), abs=1e-3)


def test_a_photo_against_an_enrolled_identity_uses_its_best_face(client, known: Path):
    photos = sorted((known / "train" / "obama").iterdir())
    identity = client.post("/enroll", data={"name": "obama"}, files=files(photos)).json()["identity"]
    probe = known / "test" / "obama1.jpg"
    body = verify(client, probe, identity_id=identity["id"], fpr=1e-2).json()
    assert body["identity"] == {"id": identity["id"], "name": "obama"}
    assert body["faces_compared"] == len(photos) and body["face_b"] is None and body["same"] is True
    # Its best-scoring stored face (enrolment detects with its own minimum face, so the stored
    # vectors are not the ones a photo-vs-photo call would make).
    service = client.app.state.service
    with service.sessions() as session:
        _, _, stored = crud.embeddings(
            session=session, identity_id=identity["id"], model_version=service.model_version, dim=512
        )
    query = np.array(client.post("/embed", files=files([probe], "image")).json()["faces"][0]["embedding"])
    best = float(service.pipeline.embedder.score(query[None], stored)[0].max())
    assert body["score"] == pytest.approx(best, abs=1e-4)


@pytest.mark.parametrize(
    ("case", "status", "code", "named"),
    [
        ("neither", 422, "invalid_parameter", "image_b"),
        ("both", 422, "invalid_parameter", "image_b"),
        ("unknown identity", 404, "unknown_identity", "999"),
        ("no face in b", 422, "no_face", "image_b"),
        ("fpr out of range", 422, "invalid_parameter", "fpr"),
    ],
)
def test_bad_verify_requests_are_named_4xx(client, known: Path, data: Path, case, status, code, named):
    photo, dogs = known / "train" / "obama" / "obama2.jpg", data / "photos" / "crowds" / "dogs.jpg"
    r = {
        "neither": lambda: verify(client, photo),
        "both": lambda: verify(client, photo, photo, identity_id=1),
        "unknown identity": lambda: verify(client, photo, identity_id=999),
        "no face in b": lambda: verify(client, photo, dogs),
        "fpr out of range": lambda: verify(client, photo, photo, fpr=0.9),
    }[case]()
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code and named in r.json()["error"]["message"], r.text
