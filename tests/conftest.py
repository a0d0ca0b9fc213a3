"""Shared fixtures: the real data root, a real PostgreSQL server, and the app built on real weights
with a temporary state dir -- on each database (``database_url``: SQLite, then PostgreSQL)."""

from __future__ import annotations

import itertools
import os
import tempfile
from pathlib import Path

import pytest

from app.testing import PostgresServer, postgres_bindir
from tests.helpers import make_client
from training.config import data_root

_databases = itertools.count()
# Every test starts services on fresh state directories: they share one folder of networks exported
# for ONNX Runtime (keyed by the weights' hash) instead of exporting them again each time (~10 s).
os.environ.setdefault("FACEREC_ONNX_CACHE_DIR", str(Path(tempfile.gettempdir()) / "facerec-test-onnx"))


@pytest.fixture(scope="session")
def data() -> Path:
    root = data_root()
    if not (root / "photos").is_dir():
        pytest.skip(f"shared data not found at {root}; set FACEREC_DATA")
    return root


@pytest.fixture(scope="session")
def known(data: Path) -> Path:
    return data / "photos" / "known_people" / "knn_examples"


@pytest.fixture(scope="session")
def postgres():
    """One throwaway PostgreSQL cluster for the session (each test gets its own database in it)."""
    if postgres_bindir() is None:
        if os.environ.get("FACEREC_REQUIRE_POSTGRES"):
            pytest.fail("FACEREC_REQUIRE_POSTGRES is set but PostgreSQL is not installed (apt-get install postgresql)")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql); .ci/run installs it")
    server = PostgresServer().start()
    yield server
    server.cleanup()


@pytest.fixture
def fresh_postgres_url(postgres) -> str:
    """A new, empty database on the session's PostgreSQL server."""
    return postgres.create_database(f"test_{os.getpid()}_{next(_databases)}")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request) -> str:
    """The service's FACEREC_DATABASE_URL: empty for its SQLite default, else a fresh PostgreSQL database."""
    return "" if request.param == "sqlite" else request.getfixturevalue("fresh_postgres_url")


@pytest.fixture
def client(tmp_path: Path, database_url: str):
    with make_client(tmp_path / "state", database_url=database_url) as c:
        yield c
