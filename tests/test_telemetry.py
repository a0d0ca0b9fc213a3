"""GET /metrics: Prometheus text that moves with real requests, behind a key."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import ADMIN_KEY, files

pytestmark = pytest.mark.slow


def scrape(client) -> dict[tuple[str, tuple], float]:
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain"), r.text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def test_counters_histograms_and_gauges_move_with_real_requests(client, known: Path, data: Path):
    before = scrape(client)
    photos = sorted((known / "train" / "obama").iterdir())
    assert client.post("/enroll", data={"name": "obama"}, files=files(photos)).status_code == 201
    group = known / "test" / "obama_and_biden.jpg"
    faces = client.post("/identify", files=files([group], "image")).json()["faces"]
    assert client.post("/identify", files=files([data / "photos" / "crowds" / "dogs.jpg"], "image")).status_code == 200
    assert client.get("/identities/999").status_code == 404
    after = scrape(client)

    def moved(name: str, **labels) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert moved("facerec_requests_total", route="/enroll", method="POST", status="201") == 1
    assert moved("facerec_requests_total", route="/identify", method="POST", status="200") == 2
    assert moved("facerec_requests_total", route="/identities/{identity_id}", method="GET", status="404") == 1
    assert moved("facerec_request_seconds_count", route="/identify") == 2
    assert moved("facerec_request_seconds_sum", route="/identify") > 0
    for stage in ("decode", "detect", "align", "embed"):  # every photo of the three requests
        assert moved("facerec_stage_seconds_count", stage=stage) == len(photos) + 2, stage
    assert moved("facerec_stage_seconds_count", stage="search") == 1  # dogs.jpg has no face to search
    matched = sum(f["match"] is not None for f in faces)
    assert moved("facerec_identified_faces_total", result="match") == matched
    assert moved("facerec_identified_faces_total", result="unknown") == len(faces) - matched
    assert moved("facerec_faces_per_photo_count") == len(photos) + 2
    assert after[("facerec_gallery_faces", ())] == len(photos)
    assert after[("facerec_gallery_identities", ())] == 1
    info = next(k for k in after if k[0] == "facerec_model_info")
    assert dict(info[1])["index_kind"] == "exact" and dict(info[1])["version"].startswith("arcface")
    assert after[("facerec_startup_seconds", ())] > 0


def test_metrics_need_a_key_and_accept_it_as_a_bearer_token(client):
    client.headers.pop("X-API-Key")
    assert client.get("/metrics").status_code == 401
    r = client.get("/metrics", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert r.status_code == 200 and "facerec_requests_total" in r.text
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong-key-0123456789"}).status_code == 401
