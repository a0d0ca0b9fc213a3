"""Prometheus metrics of the service (the official ``prometheus-client``), on ``GET /metrics``.

One registry per application (several apps in one process, as in the tests, never share counters).
What is measured: requests by route template, method and status; latency per route; time per
pipeline stage (decode, detect, landmarks, align, embed, search); faces per photo; photos through
the networks alone or sharing the cores (``app.services.gate``); faces identified vs unknown; the
gallery's size; the loaded model, device and index kind; start-up time.

``/metrics`` needs a key like every other data endpoint (a read key is enough): it reveals traffic
and gallery size, which a deployment may not want public. Prometheus sends one with
``authorization: {credentials: <key>}`` in its scrape config; ``Authorization: Bearer <key>`` is
accepted wherever ``X-API-Key`` is. It is served on the same port as the API, so a deployment that
exposes the API already exposes nothing new, and needs no second listener.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest

#: Seconds: from a 2 ms index search to a multi-second enrolment of many photos.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
FACE_BUCKETS = (0, 1, 2, 3, 5, 8, 13, 21, 34)


class Telemetry:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "facerec_requests",
            "HTTP requests by route template, method and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "facerec_request_seconds",
            "HTTP request latency by route template",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.stages = Histogram(
            "facerec_stage_seconds", "Time per pipeline stage and photo", ["stage"], buckets=STAGE_BUCKETS, registry=r
        )
        self.faces = Histogram(
            "facerec_faces_per_photo",
            "Faces found per photo (all routes that take photos)",
            buckets=FACE_BUCKETS,
            registry=r,
        )
        self.inference = Counter(
            "facerec_inference_photos",
            "Photos through the networks by threads: all (alone inside the inference gate) or one "
            "(another photo was inside: FACEREC_INFERENCE_SHARE_CORES)",
            ["threads"],
            registry=r,
        )
        self.identified = Counter(
            "facerec_identified_faces", "Faces /identify answered with a match or as unknown", ["result"], registry=r
        )
        self.gallery_faces = Gauge("facerec_gallery_faces", "Faces in the search index", registry=r)
        self.gallery_identities = Gauge("facerec_gallery_identities", "Enrolled identities", registry=r)
        self.model = Info("facerec_model", "The loaded embedder, device and index kind", registry=r)
        self.startup = Gauge(
            "facerec_startup_seconds", "Seconds from start-up to ready (models, database, index)", registry=r
        )

    def observe_stages(self, timings: dict[str, float]) -> None:
        """A request's per-stage milliseconds (``models.timing.Timings``)."""
        for stage, ms in timings.items():
            self.stages.labels(stage).observe(ms / 1000)

    def follow_gallery(self, faces: Callable[[], float], identities: Callable[[], float]) -> None:
        """Read the gallery's size at scrape time."""
        self.gallery_faces.set_function(faces)
        self.gallery_identities.set_function(identities)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class RequestMetrics:
    """ASGI middleware: counts every HTTP request by its route template and times it."""

    def __init__(self, app, telemetry: Telemetry) -> None:
        self.app, self.telemetry = app, telemetry

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status, t0 = [500], time.perf_counter()

        async def record_status(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.telemetry.requests.labels(template, scope["method"], str(status[0])).inc()
            self.telemetry.latency.labels(template).observe(time.perf_counter() - t0)
