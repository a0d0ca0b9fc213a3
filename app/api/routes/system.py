"""Health and metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy.exc import SQLAlchemyError

from app.api.deps import READ, ServiceDep
from app.api.schemas import ErrorOut, HealthOut
from app.services.auth import Principal
from models.runtime import default_threads

router = APIRouter(tags=["system"])


@router.get("/health", response_model=HealthOut, responses={503: {"model": HealthOut}})
def health(service: ServiceDep, request: Request) -> HealthOut | JSONResponse:
    """Liveness plus what is loaded: device, runtime, precision and threads, model version, gallery size, whether
    keys are checked, which database and how far this replica's index has followed it. The only endpoint that needs no
    API key. 503 with ``status: "degraded"`` and the reason in ``database`` while the database cannot
    be read (load balancers take the replica out; it recovers by itself)."""
    base = {
        "device": str(service.pipeline.embedder.device),
        "runtime": service.pipeline.runtime,
        "precision": service.pipeline.precision,
        "threads": default_threads(),
        "model_version": service.model_version,
        "auth": "api_key" if request.app.state.keys.enabled else "disabled",
    }
    try:
        counts, generation = service.counts(), service.database_generation()
    except SQLAlchemyError as exc:
        problem = f"unreachable: {str(exc).splitlines()[0]}"
        body = HealthOut(
            status="degraded",
            **base,
            database=problem,
            replica=service.replica_state(None),
            faces_indexed=len(service.index),
        )
        return JSONResponse(body.model_dump(), status_code=503)
    return HealthOut(status="ok", **base, database="ok", replica=service.replica_state(generation), **counts)


@router.get("/whoami", responses={code: {"model": ErrorOut} for code in (401, 403)})
def whoami(principal: Annotated[Principal, READ]) -> dict:
    """The presented key's name and role (``read`` or ``admin``): what a client may show or offer."""
    return {"name": principal.name, "role": principal.role}


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}, **{code: {"model": ErrorOut} for code in (401, 403)}},
    dependencies=[READ],
)
def prometheus(request: Request) -> Response:
    """Prometheus text format: requests, latencies per route and pipeline stage, faces per photo,
    matches vs unknown, gallery size, model and start-up time. Needs a read key (``X-API-Key``, or
    ``Authorization: Bearer <key>`` as Prometheus sends it)."""
    service, telemetry = request.app.state.service, request.app.state.telemetry
    telemetry.model.info(
        {
            "version": service.model_version,
            "device": str(service.pipeline.embedder.device),
            "runtime": service.pipeline.runtime,
            "precision": service.pipeline.precision,
            "index_kind": service.index.kind,
        }
    )
    return Response(telemetry.render(), media_type=CONTENT_TYPE_LATEST)


@router.get("/metrics/idrate", responses={code: {"model": ErrorOut} for code in (401, 403)}, dependencies=[READ])
def idrate(service: ServiceDep) -> dict:
    """The loaded embedder's measured ID-rate report (from its model card) and, once the gallery has
    two identities with two faces each, the same TPR@FPR measured live over the enrolled faces."""
    card = service.pipeline.embedder.card.raw
    return {
        "model": {"name": card["name"], "version": card["version"], "training_data": card.get("training_data")},
        "evaluation": card.get("metrics"),
        "thresholds": card.get("thresholds"),
        "scoring": service.pipeline.embedder.card.scoring,
        "gallery": service.gallery_idrate(),
    }
