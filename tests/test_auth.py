"""Access control: every endpoint but /health needs a key; read keys cannot change the gallery;
keys are stored hashed, revocable, and the service will not start with none unless told it is insecure."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.keys import main as keys_cli
from app.main import create_app
from app.services.replication import SnapshotSlot
from tests.helpers import ADMIN_KEY, files, make_client

# (method, path, role needed)
ENDPOINTS = [
    ("POST", "/enroll", "admin"),
    ("POST", "/identify", "read"),
    ("POST", "/embed", "read"),
    ("GET", "/identities", "read"),
    ("GET", "/identities/1", "read"),
    ("DELETE", "/identities/1", "admin"),
    ("GET", "/metrics/idrate", "read"),
]


def create_key(state: Path, role: str, capsys) -> str:
    capsys.readouterr()
    assert keys_cli(["create", "--name", f"{role}-key", "--role", role], Settings(state_dir=state)) == 0
    return capsys.readouterr().out.strip()


def call(client: TestClient, method: str, path: str, key: str | None, photo: Path):
    headers = {"X-API-Key": key} if key is not None else {}
    if path in ("/identify", "/embed"):
        return client.request(method, path, headers=headers, files=files([photo], "image"))
    if path == "/enroll":
        return client.request(method, path, headers=headers, data={"name": "someone"}, files=files([photo]))
    return client.request(method, path, headers=headers)


@pytest.fixture
def photo(known: Path) -> Path:
    return known / "train" / "biden" / "biden.jpg"


def test_no_key_and_wrong_key_are_refused_everywhere_but_health(tmp_path: Path, photo: Path):
    with make_client(tmp_path / "state", key=None) as client:
        assert client.get("/health").status_code == 200
        for method, path, _ in ENDPOINTS:
            for key, code in (
                (None, "missing_api_key"),
                ("", "missing_api_key"),
                ("frk_wrong", "invalid_api_key"),
                (ADMIN_KEY + "x", "invalid_api_key"),
            ):
                r = call(client, method, path, key, photo)
                assert r.status_code == 401, (method, path, key, r.text)
                assert r.json()["error"]["code"] == code
        assert client.get("/identities", headers={"X-API-Key": ADMIN_KEY}).json() == []  # nothing was enrolled


def test_roles_and_revocation(tmp_path: Path, photo: Path, capsys):
    state = tmp_path / "state"
    with make_client(state) as admin:  # creates the database
        assert admin.post("/enroll", data={"name": "biden"}, files=files([photo])).status_code == 201
    read_key, admin_key = create_key(state, "read", capsys), create_key(state, "admin", capsys)
    assert read_key.startswith("frk_") and len(read_key) > 40
    with make_client(state, key=None) as client:
        for method, path, need in ENDPOINTS:
            r = call(client, method, path, read_key, photo)
            if need == "admin":
                assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", (path, r.text)
            else:
                assert r.status_code == 200, (path, r.text)
        assert len(client.get("/identities", headers={"X-API-Key": read_key}).json()) == 1  # read key changed nothing
        r = call(client, "POST", "/enroll", admin_key, photo)
        assert r.status_code == 201, r.text
        # Revoked keys stop working at once, without a restart.
        assert keys_cli(["revoke", "1"], Settings(state_dir=state)) == 0
        r = call(client, "GET", "/identities", read_key, photo)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        assert call(client, "GET", "/identities", admin_key, photo).status_code == 200
    capsys.readouterr()
    assert keys_cli(["list"], Settings(state_dir=state)) == 0
    listing = capsys.readouterr().out
    assert "read-key" in listing and "admin-key" in listing and listing.count("revoked: -") == 1
    assert keys_cli(["revoke", "99"], Settings(state_dir=state)) == 1
    # Only hashes are stored: neither key appears anywhere in the database files.
    for path in state.glob("facerec.db*"):
        raw = path.read_bytes()
        assert read_key.encode() not in raw and admin_key.encode() not in raw
    with sqlite3.connect(state / "facerec.db") as db:
        hashes = [h for (h,) in db.execute("SELECT key_hash FROM api_keys")]
    assert len(hashes) == 2 and all(len(h) == 64 for h in hashes)


def test_database_key_works_without_admin_key(tmp_path: Path, photo: Path, capsys):
    state = tmp_path / "state"
    key = create_key(state, "admin", capsys)
    app = create_app(Settings(state_dir=state, admin_key=None))
    with TestClient(app, headers={"X-API-Key": key}) as client:
        assert client.get("/identities").status_code == 200
        assert client.get("/identities", headers={"X-API-Key": ADMIN_KEY}).status_code == 401


def test_refuses_to_start_without_any_key(tmp_path: Path):
    app = create_app(Settings(state_dir=tmp_path / "state", admin_key=None))
    with pytest.raises(RuntimeError, match="FACEREC_ADMIN_KEY"), TestClient(app):
        pass
    # The index snapshot slot it had claimed is free again: the next start takes the first one.
    assert SnapshotSlot(tmp_path / "state").path.name == "faces.faiss"


def test_short_admin_key_is_refused():
    with pytest.raises(ValueError, match="at least 16"):
        Settings(admin_key="short")


def test_insecure_dev_mode_is_loud_and_open(tmp_path: Path, caplog):
    app = create_app(Settings(state_dir=tmp_path / "state", admin_key=None, insecure_dev_mode=True))
    with caplog.at_level(logging.WARNING), TestClient(app) as client:
        assert client.get("/identities").status_code == 200
        assert client.get("/health").json()["auth"] == "disabled"
    assert any("NO API KEY IS CHECKED" in r.getMessage() for r in caplog.records)
