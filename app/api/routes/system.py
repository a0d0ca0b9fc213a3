"""Health and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request

from app.api.deps import READ, ServiceDep
from app.api.schemas import ErrorOut, HealthOut

router = APIRouter(tags=["system"])


@router.get("/health", response_model=HealthOut)
def health(service: ServiceDep, request: Request) -> HealthOut:
    """Liveness plus what is loaded: device, model version, gallery size, whether keys are checked.
    The only endpoint that needs no API key."""
    return HealthOut(
        status="ok",
        device=str(service.pipeline.embedder.device),
        model_version=service.model_version,
        auth="api_key" if request.app.state.keys.enabled else "disabled",
        **service.counts(),
    )


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
