"""Several replicas on one database stay in step (app.services.replication states the protocol).

Real uvicorn processes on loopback ports, a real PostgreSQL server (and, for workers sharing one
machine's state directory, the SQLite file): what one replica writes, the others serve within the
bound; a race on one name makes one identity; a replica killed mid-stream comes back with every
acknowledged write; a database outage is a JSON 503 and the replicas recover by themselves.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path

import faiss
import httpx
import numpy as np
import pytest

from app.config import Settings
from app.keys import key_store
from app.keys import main as keys_main
from app.main import share_cpus_among_workers
from app.services.index import checksum
from app.testing import LiveServer, PostgresServer
from models.runtime import default_threads
from tests.helpers import database_state, files, matched_names

#: The staleness bound: an enrolment on one replica is identified on another within it.
LAG_BOUND_S = 1.0


def identified_as(client: httpx.Client, photo: Path) -> list[str | None]:
    r = client.post("/identify", files=files([photo], "image"), data={"fpr": 1e-2})
    assert r.status_code == 200, r.text
    return [f["match"]["name"] if f["match"] else None for f in r.json()["faces"]]


def wait_until(check, bound_s: float) -> float:
    """Seconds until ``check()`` is true; fails past ``bound_s``."""
    t0 = time.perf_counter()
    while not check():
        assert time.perf_counter() - t0 < bound_s, f"not visible within {bound_s} s"
        time.sleep(0.02)
    return time.perf_counter() - t0


@contextlib.contextmanager
def replicas(tmp_path: Path, n: int, database_url: str = "", shared_state: bool = False):
    """``n`` live servers on one database: each with its own state directory, or all on one."""
    servers = [
        LiveServer(
            tmp_path / ("state" if shared_state else f"state{i}"),
            tmp_path / f"server{i}.log",
            FACEREC_DATABASE_URL=database_url,
        )
        for i in range(n)
    ]
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


def check_writes_cross_replicas(a: LiveServer, b: LiveServer, known: Path) -> None:
    with a.client() as ca, b.client() as cb:
        obama = known / "train" / "obama" / "obama.jpg"
        r = ca.post("/enroll", data={"name": "obama"}, files=files([obama]))
        assert r.status_code == 201, r.text
        probe = known / "test" / "obama1.jpg"
        assert identified_as(ca, probe) == ["obama"]  # on the replica that took it: before the answer
        wait_until(lambda: identified_as(cb, probe) == ["obama"], LAG_BOUND_S)
        # A deletion stops matching on the other replica at once (faces are resolved in the database).
        assert ca.delete(f"/identities/{r.json()['identity']['id']}").status_code == 200
        assert identified_as(cb, probe) == [None]
        # ... and its vectors leave the other replica's index and snapshot soon after.
        wait_until(lambda: cb.get("/health").json()["faces_indexed"] == 0, LAG_BOUND_S)
        health = cb.get("/health").json()
        assert health["replica"]["lag"] == 0 and health["identities"] == 0


def test_a_write_on_one_replica_is_served_by_another_within_the_bound(tmp_path: Path, known: Path, fresh_postgres_url):
    with replicas(tmp_path, 2, fresh_postgres_url) as (a, b):
        with b.client() as cb:
            assert cb.get("/health").json()["replica"]["listening"]  # woken by NOTIFY, not only polling
        check_writes_cross_replicas(a, b, known)
        check_writes_cross_replicas(b, a, known)


def test_worker_processes_asked_for_in_the_environment_share_the_cpus(tmp_path: Path, known: Path, monkeypatch):
    """WEB_CONCURRENCY=2 (uvicorn's worker count from the environment, as docker compose passes it): each
    worker's networks run on half the CPUs, unless OMP_NUM_THREADS says how many."""
    cpus = len(os.sched_getaffinity(0))
    for env, expected in (({"WEB_CONCURRENCY": "2"}, max(1, cpus // 2)), ({"WEB_CONCURRENCY": "x"}, cpus),
                          ({"WEB_CONCURRENCY": "2", "OMP_NUM_THREADS": "3"}, 3), ({}, cpus)):  # fmt: skip
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        default_threads.cache_clear()  # as in a fresh process
        try:
            assert share_cpus_among_workers() == expected, env
        finally:
            monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # the rest of this process keeps its CPUs
            default_threads.cache_clear()
    with LiveServer(tmp_path / "state", tmp_path / "server.log", WEB_CONCURRENCY="2", OMP_NUM_THREADS="") as server:
        children = [c for t in Path(f"/proc/{server.pid}/task").iterdir() for c in (t / "children").read_text().split()]
        workers = [c for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]
        assert len(workers) == 2  # (the other child is multiprocessing's resource tracker)
        with server.client() as client:
            assert {client.get("/health").json()["threads"] for _ in range(4)} == {max(1, cpus // 2)}
            photo = known / "train" / "obama" / "obama.jpg"
            assert client.post("/enroll", data={"name": "obama"}, files=files([photo])).status_code == 201
            assert "obama" in matched_names(client, known / "test" / "obama1.jpg")


def test_workers_on_one_state_directory_keep_their_own_snapshots_in_step(tmp_path: Path, known: Path):
    """Two processes on one SQLite file and one state directory (as ``uvicorn --workers 2``)."""
    with replicas(tmp_path, 2, shared_state=True) as (a, b):
        with a.client() as ca, b.client() as cb:
            snapshots = {
                ca.get("/health").json()["replica"]["snapshot"],
                cb.get("/health").json()["replica"]["snapshot"],
            }
            assert snapshots == {"faces.faiss", "faces.1.faiss"}
        check_writes_cross_replicas(a, b, known)


def test_one_name_enrolled_on_two_replicas_at_once_makes_one_identity(tmp_path: Path, known: Path, fresh_postgres_url):
    photo = known / "train" / "biden" / "biden.jpg"
    with replicas(tmp_path, 2, fresh_postgres_url) as servers:
        for attempt in range(3):
            name = f"biden-{attempt}"
            start = threading.Barrier(2)
            codes: list[int] = []

            def enrol(server: LiveServer) -> None:
                with server.client() as c:
                    start.wait()
                    codes.append(c.post("/enroll", data={"name": name}, files=files([photo])).status_code)

            threads = [threading.Thread(target=enrol, args=(s,)) for s in servers]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert sorted(codes) == [201, 409]
            counts, _, _ = database_state(tmp_path, fresh_postgres_url)
            assert counts[name] == 1


def test_api_keys_and_their_revocation_reach_every_replica_at_once(
    tmp_path: Path, fresh_postgres_url, capsys: pytest.CaptureFixture
):
    settings = Settings(state_dir=tmp_path / "cli", database_url=fresh_postgres_url)
    with replicas(tmp_path, 2, fresh_postgres_url) as servers:
        assert keys_main(["create", "--name", "camera", "--role", "read"], settings=settings) == 0
        key = next(line.split()[-1] for line in capsys.readouterr().out.splitlines() if "frk_" in line)
        for server in servers:
            assert httpx.get(server.url + "/whoami", headers={"X-API-Key": key}).json()["name"] == "camera"
        key_id = next(k.id for k in key_store(settings).list() if k.name == "camera")
        assert keys_main(["revoke", str(key_id)], settings=settings) == 0
        for server in servers:
            assert httpx.get(server.url + "/whoami", headers={"X-API-Key": key}).status_code == 401


def test_a_replica_killed_mid_stream_comes_back_with_every_acknowledged_write(
    tmp_path: Path, known: Path, data: Path, fresh_postgres_url
):
    photos = [p for p in sorted((known / "train").glob("*/*"))]
    acked: dict[str, int] = {}
    deleted: set[str] = set()
    # A delete whose response the kill swallowed may or may not have committed: either is correct.
    undecided: set[str] = set()
    with replicas(tmp_path, 2, fresh_postgres_url) as (a, b):
        stop = threading.Event()

        def stream(server: LiveServer, prefix: str) -> None:
            i = 0
            with server.client(timeout=30) as c:
                while not stop.is_set():
                    name = f"{prefix}{i}"
                    i += 1
                    try:
                        r = c.post("/enroll", data={"name": name}, files=files([photos[i % len(photos)]]))
                        if r.status_code == 201:
                            acked[name] = r.json()["identity"]["id"]
                            if i % 3 == 0:
                                undecided.add(name)
                                if c.delete(f"/identities/{acked[name]}").status_code == 200:
                                    deleted.add(name)
                                undecided.discard(name)
                    except httpx.TransportError:
                        return  # this replica was killed

        workers = [threading.Thread(target=stream, args=(s, p)) for s, p in ((a, "a"), (b, "b"))]
        for w in workers:
            w.start()
        time.sleep(4)
        b.kill()
        time.sleep(2)
        stop.set()
        for w in workers:
            w.join(60)
        b.start()
        expected = {name for name in acked if name not in deleted | undecided}
        counts, ids, vectors = database_state(tmp_path, fresh_postgres_url)
        assert expected <= set(counts) and not (deleted & set(counts))
        for server in (a, b):
            with server.client() as c:
                listed = {i["name"] for i in c.get("/identities", params={"limit": 1000}).json()}
                assert listed == set(counts)
                wait_until(lambda: c.get("/health").json()["faces_indexed"] == len(ids), LAG_BOUND_S)

        # The restarted replica's snapshot holds exactly the database's vectors (once its background
        # saver has written the last additions: a small index is saved right after each).
        def snapshot_checksum() -> str:
            snapshot = faiss.read_index(str(tmp_path / "state1" / "faces.faiss"))
            held = faiss.vector_to_array(snapshot.id_map).astype(np.int64)
            return checksum(held, snapshot.index.reconstruct_n(0, snapshot.ntotal))

        wait_until(lambda: snapshot_checksum() == checksum(ids, vectors), LAG_BOUND_S)
        assert len(acked) > 4, "the stream made too few writes to test anything"


def test_a_database_outage_is_a_json_503_and_the_replicas_recover(tmp_path: Path, known: Path):
    """PostgreSQL stopped in the middle of a stream: requests fail fast with a 503 that says why,
    /health says what is wrong, nothing acknowledged is lost, and service resumes by itself."""
    rose, kit = known / "train" / "rose_leslie" / "img1.jpg", known / "train" / "kit_harington" / "john2.jpeg"
    probe = known / "test" / "kit_with_rose.jpg"
    with PostgresServer() as pg:
        url = pg.create_database("outage")
        with replicas(tmp_path, 2, url) as (a, b):
            with a.client(timeout=30) as ca, b.client(timeout=30) as cb:
                assert ca.post("/enroll", data={"name": "before"}, files=files([rose])).status_code == 201
                pg.stop()
                for c in (ca, cb):
                    t0 = time.perf_counter()
                    r = c.post("/enroll", data={"name": "during"}, files=files([kit]))
                    assert r.status_code == 503 and r.json()["error"]["code"] == "database_unavailable", r.text
                    assert time.perf_counter() - t0 < 15
                    r = c.post("/identify", files=files([probe], "image"))
                    assert r.status_code == 503, r.text
                    health = c.get("/health")
                    assert health.status_code == 503 and health.json()["status"] == "degraded"
                    assert health.json()["database"].startswith("unreachable")
                pg.start()
                for c in (ca, cb):
                    wait_until(lambda: c.get("/health").status_code == 200, 15)
                    assert {i["name"] for i in c.get("/identities").json()} == {"before"}
                    assert "before" in identified_as(c, probe)
                assert ca.post("/enroll", data={"name": "after"}, files=files([kit])).status_code == 201
                wait_until(lambda: set(identified_as(cb, probe)) == {"before", "after"}, LAG_BOUND_S)


def _migrate(url: str) -> None:
    from app.db.session import make_engine, upgrade_database

    upgrade_database(make_engine(url))


def test_replicas_started_together_on_a_new_database_migrate_it_once(tmp_path: Path, database_url: str):
    """Workers or replicas starting at the same moment each run the migrations: one at a time."""
    import multiprocessing

    url = database_url or f"sqlite:///{tmp_path / 'facerec.db'}"
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_migrate, args=(url,)) for _ in range(4)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(120)
    assert [p.exitcode for p in processes] == [0, 0, 0, 0]
    counts, _, _ = database_state(tmp_path, database_url)
    assert counts == {}
