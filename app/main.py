"""The FastAPI application: ``uvicorn app.main:app``.

At start-up: settings are validated, migrations applied, the models loaded once (GPU when present,
else CPU) and the vector index checked against the database.
"""
from __future__ import annotations

import logging
from contextlib import asynccontextmanager

import torch
from fastapi import FastAPI

from app.api.errors import install_error_handlers
from app.api.routes import faces, identities, system
from app.config import Settings, get_settings
from app.db.session import make_engine, make_session_factory, upgrade_database
from app.services.recognition import RecognitionService
from models.aligner import FivePointAligner
from models.detector import MTCNNDetector
from models.embedder import Embedder
from models.pipeline import FacePipeline

log = logging.getLogger("app")


def pick_device(setting: str) -> torch.device:
    if setting == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("FACEREC_DEVICE=cuda but no CUDA device is available; use auto or cpu")
    if setting == "auto":
        setting = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(setting)


def build_service(settings: Settings) -> RecognitionService:
    """Everything the service needs, loaded once."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url)
    upgrade_database(engine)
    device = pick_device(settings.device)
    pipeline = FacePipeline(MTCNNDetector(device, min_score=settings.detector_min_score), FivePointAligner(),
                            Embedder(settings.weights, device))
    log.info("models loaded on %s; embedder %s", device, pipeline.embedder.version)
    service = RecognitionService(settings, pipeline, make_session_factory(engine))
    service.sync_index()
    return service


def create_app(settings: Settings | None = None) -> FastAPI:
    """The application for ``settings`` (default: from the environment)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.service = build_service(settings or get_settings())
        yield

    app = FastAPI(title="facerec", version="0.1.0", lifespan=lifespan,
                  description="Self-hosted face recognition: enrol people, identify faces in photos.")
    install_error_handlers(app)
    for module in (faces, identities, system):
        app.include_router(module.router)
    return app


logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
app = create_app()
