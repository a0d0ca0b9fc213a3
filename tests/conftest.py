"""Shared fixtures: the real data root, and the app built on real weights with a temporary state dir."""
from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from tests.live import ADMIN_KEY
from training.config import data_root


@pytest.fixture(scope="session")
def data() -> Path:
    root = data_root()
    if not (root / "photos").is_dir():
        pytest.skip(f"shared data not found at {root}; set FACEREC_DATA")
    return root


@pytest.fixture(scope="session")
def known(data: Path) -> Path:
    return data / "photos" / "known_people" / "knn_examples"




def make_client(state_dir: Path, key: str | None = ADMIN_KEY, **settings) -> TestClient:
    """A client for an app on the committed weights (or FACEREC_WEIGHTS) and ``state_dir``, sending ``key``."""
    app = create_app(Settings(state_dir=state_dir, **{"admin_key": ADMIN_KEY, **settings}))
    return TestClient(app, headers={"X-API-Key": key} if key else {})


@pytest.fixture
def client(tmp_path: Path):
    with make_client(tmp_path / "state") as c:
        yield c
