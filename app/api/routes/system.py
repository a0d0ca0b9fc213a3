"""Health and metrics."""
from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import ServiceDep
from app.api.schemas import HealthOut

router = APIRouter(tags=["system"])


@router.get("/health", response_model=HealthOut)
def health(service: ServiceDep) -> HealthOut:
    """Liveness plus what is loaded: device, model version, gallery size."""
    return HealthOut(status="ok", device=str(service.pipeline.embedder.device),
                     model_version=service.model_version, **service.counts())


@router.get("/metrics/idrate")
def idrate(service: ServiceDep) -> dict:
    """The loaded embedder's measured ID-rate report (from its model card) and, once the gallery has
    two identities with two faces each, the same TPR@FPR measured live over the enrolled faces."""
    card = service.pipeline.embedder.card.raw
    return {
        "model": {"name": card["name"], "version": card["version"], "training_data": card.get("training_data")},
        "evaluation": card.get("metrics"),
        "thresholds": card.get("thresholds"),
        "gallery": service.gallery_idrate(),
    }
