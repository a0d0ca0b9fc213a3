"""A gallery enrolled with one model, served by another: the old vectors are never compared with the
new ones, /health counts them, and an admin can list who needs re-enrolment."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from models import DEFAULT_WEIGHTS
from tests.helpers import files, make_client, matched_names

pytestmark = pytest.mark.slow


def other_version(tmp_path: Path) -> Path:
    """The committed embedder under another version name: the same network, so any match below could
    only come from comparing vectors across versions, which must not happen."""
    folder = tmp_path / "weights"
    folder.mkdir()
    for path in DEFAULT_WEIGHTS.parent.glob(DEFAULT_WEIGHTS.stem + ".*"):
        shutil.copy(path, folder / path.name)
    card_path = folder / DEFAULT_WEIGHTS.with_suffix(".json").name
    card = json.loads(card_path.read_text())
    card["version"] += "-next"
    card_path.write_text(json.dumps(card))
    return folder / DEFAULT_WEIGHTS.name


def test_faces_of_another_model_are_counted_excluded_and_listed(tmp_path: Path, known: Path):
    state = tmp_path / "state"
    obama = sorted((known / "train" / "obama").iterdir())
    with make_client(state) as client:
        assert client.post("/enroll", data={"name": "obama"}, files=files(obama)).status_code == 201
        r = client.post("/enroll", data={"name": "biden"}, files=files([known / "train" / "biden" / "biden.jpg"]))
        assert r.status_code == 201
        assert client.get("/health").json()["faces_other_model"] == 0
        assert client.get("/identities/outdated").json() == []

    with make_client(state, weights=other_version(tmp_path)) as client:
        health = client.get("/health").json()
        assert health["faces_other_model"] == len(obama) + 1 and health["faces_indexed"] == 0
        assert matched_names(client, known / "test" / "obama1.jpg") == [None]
        outdated = client.get("/identities/outdated").json()
        assert [(o["name"], o["outdated_faces"], o["current_faces"]) for o in outdated] == [
            ("obama", len(obama), 0),
            ("biden", 1, 0),
        ]
        assert outdated[0]["outdated_versions"][0].endswith("-flip")
        # Re-enrolment with the identity's id adds current faces; the old ones stay unsearched.
        r = client.post("/enroll", data={"identity_id": outdated[0]["id"]}, files=files(obama))
        assert r.status_code == 201
        assert matched_names(client, known / "test" / "obama1.jpg", fpr=1e-1) == ["obama"]
        outdated = client.get("/identities/outdated").json()
        assert [(o["name"], o["current_faces"]) for o in outdated] == [("obama", len(obama)), ("biden", 0)]
        health = client.get("/health").json()
        assert health["faces_indexed"] == len(obama) and health["faces_other_model"] == len(obama) + 1  # + the old

    # Back on the first model: the faces the other one made are now the other model's, whichever
    # side of this version their version sorts on, and the first model's faces are searched again.
    with make_client(state) as client:
        health = client.get("/health").json()
        assert health["faces_other_model"] == len(obama) and health["faces_indexed"] == len(obama) + 1
        assert matched_names(client, known / "test" / "obama1.jpg") == ["obama"]
