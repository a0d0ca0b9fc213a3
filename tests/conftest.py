"""Shared fixtures: the real data root, and the app built on real weights with a temporary state dir."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import make_client
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


@pytest.fixture
def client(tmp_path: Path):
    with make_client(tmp_path / "state") as c:
        yield c
