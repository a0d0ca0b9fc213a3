"""16 concurrent clients against the real server: enrol, identify, list and delete interleaved.

No 5xx, no lost write, a final state that matches what was acknowledged, and the event loop free
while inference runs (a health probe is answered faster than an identification). And the gate
that keeps more photos than the cores can serve out of the networks."""

from __future__ import annotations

import logging
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import faiss
import numpy as np
import pytest

from app.services.gate import InferenceGate
from app.services.index import checksum
from app.services.recognition import Upload
from app.testing import LiveServer
from models import runtime
from tests.helpers import database_state, make_client, one_face_photos

log = logging.getLogger(__name__)
CLIENTS = 16


def client_script(server: LiveServer, k: int, photos) -> dict:
    """Eight requests: two enrolments, three identifications, two listings, one delete."""
    out = {"statuses": [], "identify_s": [], "kept": None}
    photo = photos[k % len(photos)]
    with server.client(timeout=120) as c:

        def go(method: str, path: str, **kw):
            t0 = time.perf_counter()
            r = c.request(method, path, **kw)
            out["statuses"].append((method, path, r.status_code))
            if path == "/identify":
                out["identify_s"].append(time.perf_counter() - t0)
            return r

        first = go("POST", "/enroll", data={"name": f"client{k}-a"}, files=[("images", photo)])
        go("POST", "/identify", files=[("image", photo)])
        go("GET", "/identities", params={"limit": 1000})
        second = go("POST", "/enroll", data={"name": f"client{k}-b"}, files=[("images", photo)])
        go("POST", "/identify", files=[("image", photo)], data={"top_k": 3})
        go("DELETE", f"/identities/{first.json()['identity']['id']}")
        go("GET", "/identities", params={"limit": 1000})
        go("POST", "/identify", files=[("image", photo)])
        out["kept"] = second.json()["identity"]["name"]
    return out


def test_sixteen_concurrent_clients(tmp_path: Path, data: Path, database_url: str):
    photos = one_face_photos(data)
    state = tmp_path / "state"
    health_s: list[float] = []
    stop = threading.Event()

    def probe(server: LiveServer) -> None:
        with server.client() as c:
            while not stop.is_set():
                t0 = time.perf_counter()
                assert c.get("/health").status_code == 200
                health_s.append(time.perf_counter() - t0)
                time.sleep(0.05)

    with LiveServer(state, tmp_path / "server.log", FACEREC_DATABASE_URL=database_url) as server:
        prober = threading.Thread(target=probe, args=(server,))
        prober.start()
        with ThreadPoolExecutor(CLIENTS) as pool:
            results = list(pool.map(lambda k: client_script(server, k, photos), range(CLIENTS)))
        stop.set()
        prober.join()
        with server.client() as c:
            health = c.get("/health").json()
            listed = {i["name"]: i["face_count"] for i in c.get("/identities", params={"limit": 1000}).json()}

    statuses = [s for r in results for s in r["statuses"]]
    assert len(statuses) == CLIENTS * 8
    assert not [s for s in statuses if s[2] >= 500], "server errors"
    assert all(code in (200, 201) for _, _, code in statuses), [s for s in statuses if s[2] not in (200, 201)]
    # Exactly the acknowledged writes survive: each client's second identity, one face each.
    assert listed == {r["kept"]: 1 for r in results}
    assert health["faces_indexed"] == CLIENTS and health["identities"] == CLIENTS
    _, ids, vectors = database_state(state, database_url)
    index = faiss.read_index(str(state / "faces.faiss"))
    assert checksum(
        faiss.vector_to_array(index.id_map).astype(np.int64), index.index.reconstruct_n(0, index.ntotal)
    ) == checksum(ids, vectors)
    identify = [t for r in results for t in r["identify_s"]]
    log.info(
        "%d requests, no 5xx; /identify p50 %.0f ms under load, /health p50 %.0f ms (%d probes)",
        len(statuses),
        1000 * statistics.median(identify),
        1000 * statistics.median(health_s),
        len(health_s),
    )
    # Inference runs in worker threads: the event loop keeps answering while identifications queue.
    assert len(health_s) >= 3 and statistics.median(health_s) < statistics.median(identify)


@pytest.mark.parametrize("limit", [1, 2, 0])
def test_at_most_inference_concurrency_photos_are_in_the_networks_at_once(tmp_path: Path, data: Path, limit: int):
    """The gate around detection and embedding (FACEREC_INFERENCE_CONCURRENCY; 0: none). The real
    pipeline runs; a counter around its detect call records how many photos were inside at once."""
    photo = one_face_photos(data)[0]
    with make_client(tmp_path / "state", inference_concurrency=limit) as client:
        service = client.app.state.service
        detect, inside, most = service.pipeline.detect, [0], [0]
        lock = threading.Lock()

        def counted(*args, **kwargs):
            with lock:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            try:
                time.sleep(0.05)  # widen the window in which a second photo could enter
                return detect(*args, **kwargs)
            finally:
                with lock:
                    inside[0] -= 1

        service.pipeline.detect = counted
        upload = Upload(*photo)
        with ThreadPoolExecutor(6) as pool:
            found = list(pool.map(lambda _: service.faces(upload)[1], range(12)))
    assert found == [1] * 12
    if limit:
        assert most[0] <= limit
    else:
        assert most[0] > 2  # without the gate the photos do overlap, so the bound above is the gate's


@pytest.mark.parametrize("share", [True, False])
def test_a_photo_that_enters_the_networks_while_another_is_inside_runs_them_on_one_thread(
    tmp_path: Path, data: Path, share: bool
):
    """FACEREC_INFERENCE_SHARE_CORES (app.services.gate): a photo alone keeps every core; one that enters
    while another is inside runs single-threaded; with the setting off, none does. The real pipeline
    runs; its detect call records the thread mode, and /metrics counts the photos by it."""
    photo = one_face_photos(data)[0]
    with make_client(tmp_path / "state", inference_concurrency=2, inference_share_cores=share) as client:
        service = client.app.state.service
        assert service.pipeline.runtime == runtime.resolve("auto", "cpu")  # a CPU runtime: cores are shared
        detect, seen = service.pipeline.detect, []

        def recorded(*args, **kwargs):
            seen.append(runtime.running_single_threaded())
            time.sleep(0.05)  # keep the photo inside long enough for the next one to find it there
            return detect(*args, **kwargs)

        service.pipeline.detect = recorded
        upload = Upload(*photo)
        alone = service.faces(upload)[1]
        with ThreadPoolExecutor(4) as pool:
            found = list(pool.map(lambda _: service.faces(upload)[1], range(8)))
        assert not runtime.running_single_threaded()  # the mode never leaks out of the gate
        counted = {
            mode: service.telemetry.registry.get_sample_value("facerec_inference_photos_total", {"threads": mode}) or 0
            for mode in ("one", "all")
        }
    assert alone == 1 and found == [1] * 8
    assert seen[0] is False  # the first photo was alone
    if share:
        assert any(seen[1:])
    else:
        assert not any(seen)
    assert counted == {"one": sum(seen), "all": len(seen) - sum(seen)}


def test_a_photo_shares_the_cores_when_another_has_arrived_though_it_is_not_inside_yet():
    """app.services.gate: a photo being decoded (arrived, not yet in the networks) counts as another."""
    gate = InferenceGate(2, share_cores=True)
    with gate.arrive(), gate() as shared:
        assert not shared  # alone: every core
    with gate.arrive():
        with gate.arrive():  # a second photo is being decoded ...
            with gate() as shared:  # ... while this one enters the networks
                assert shared
        with gate() as shared:
            assert not shared  # the other one has gone
    assert gate.arrived == gate.inside == 0
    off = InferenceGate(2, share_cores=False)
    with off.arrive(), off.arrive(), off() as shared:
        assert not shared  # FACEREC_INFERENCE_SHARE_CORES=0
