"""Fuzzing the service through its own OpenAPI schema (schemathesis), with a fixed seed.

Every operation gets ``FUZZ_EXAMPLES`` generated requests -- valid and deliberately invalid ones --
against the real app (committed weights, a real SQLite file and FAISS index, a seeded gallery).
No answer may be a 5xx, and every answer must match the schema: status code, content type, body.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import hypothesis
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.config import Settings
from app.main import create_app
from tests.helpers import ADMIN_KEY, files

FUZZ_EXAMPLES = 300
SEED = 20261130
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


STATE = Path(tempfile.mkdtemp(prefix="facerec-fuzz-")) / "state"
app = create_app(Settings(state_dir=STATE, admin_key=ADMIN_KEY))
# The schema comes straight from the app object (no start-up at collection time); requests go to the
# app in-process, whose start-up schemathesis runs once, on the first request.
schema = schemathesis.openapi.from_dict(app.openapi())
schema.app = app


@pytest.fixture(scope="module", autouse=True)
def seeded_gallery(data: Path):
    """Two real identities, so that generated ids sometimes hit something that exists."""
    with TestClient(app, headers={"X-API-Key": ADMIN_KEY}) as client:
        known = data / "photos" / "known_people" / "knn_examples" / "train"
        for person in ("biden", "obama"):
            assert (
                client.post(
                    "/enroll", data={"name": person}, files=files(sorted((known / person).iterdir()))
                ).status_code
                == 201
            )
    yield
    shutil.rmtree(STATE.parent, ignore_errors=True)


@schema.parametrize()
@hypothesis.settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    derandomize=False,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
@hypothesis.seed(SEED)
def test_no_5xx_and_answers_match_the_schema(case):
    case.call_and_validate(headers={"X-API-Key": ADMIN_KEY}, checks=CHECKS)
