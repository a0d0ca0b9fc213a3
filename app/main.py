"""The FastAPI application: ``uvicorn app.main:app``.

At start-up: settings are validated, migrations applied, the models loaded once (GPU when present,
else CPU) and the vector index checked against the database.
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.datastructures import MutableHeaders
from threadpoolctl import threadpool_limits

from app.api.errors import install_error_handlers
from app.api.limits import BodySizeLimit
from app.api.routes import faces, identities, system
from app.config import Settings, get_settings
from app.db.session import make_engine, make_session_factory, upgrade_database
from app.services.auth import KeyStore
from app.services.index import SnapshotRead
from app.services.recognition import RecognitionService
from app.services.replication import SnapshotSlot
from app.telemetry import RequestMetrics, Telemetry
from models.pipeline import build_pipeline
from models.runtime import share_cpus

log = logging.getLogger("app")
UI_DIR = Path(__file__).resolve().parent / "ui"
CONSOLE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


#: Device files a GPU driver makes (NVIDIA; NVIDIA under WSL; AMD's ROCm, which PyTorch serves as cuda).
GPU_DEVICE_FILES = ("/dev/nvidiactl", "/dev/dxg", "/dev/kfd")


def pick_device(setting: str) -> str:
    """The device the networks run on: ``cpu``, ``cuda``, or for ``auto`` a GPU when PyTorch sees one.

    Where no GPU driver's device file exists, ``auto`` is the CPU without asking PyTorch: importing it
    took 1.7-2.7 s of each start here, and a CPU service on cached ONNX networks needs it for nothing."""
    if setting == "cpu" or (setting == "auto" and not any(Path(f).exists() for f in GPU_DEVICE_FILES)):
        return "cpu"
    import torch

    if setting == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("FACEREC_DEVICE=cuda but no CUDA device is available; use auto or cpu")
    return "cuda" if torch.cuda.is_available() else "cpu"


def share_cpus_among_workers() -> int:
    """The threads each network of this process runs on, set for the whole process.

    ``OMP_NUM_THREADS`` when set; else, under ``WEB_CONCURRENCY=N`` (uvicorn's worker count read from
    the environment, as ``docker compose`` passes it), the CPUs divided among the N processes, written
    to ``OMP_NUM_THREADS`` so every runtime of this worker agrees. N workers that each spread a photo
    over every core would fight for them; each on its share, two workers measured 81.4 / 73.5 req/s
    with 4 clients and 73.9 / 73.9 with 16, against one process's 62.7 / 65.7 and 60.1 / 62.0
    (README, "Where the throughput stops")."""
    try:
        workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
    except ValueError:
        workers = 1  # uvicorn refuses such a value itself; a process started otherwise keeps its CPUs
    return share_cpus(workers)


INSECURE_BANNER = (
    "\n" + "!" * 78 + "\n!! FACEREC_INSECURE_DEV_MODE is on: NO API KEY IS CHECKED. Anyone who can reach "
    "this port\n!! can read and change the gallery. Never run like this outside local development.\n" + "!" * 78
)


def build_keys(settings: Settings, sessions) -> KeyStore:
    """The key store; refuses to go on with no key at all unless insecure dev mode was asked for."""
    admin = settings.admin_key.get_secret_value() if settings.admin_key else None
    keys = KeyStore(sessions, admin, enabled=not settings.insecure_dev_mode)
    if settings.insecure_dev_mode:
        log.warning(INSECURE_BANNER)
    elif not keys.has_any_key():
        raise RuntimeError(
            "no API key is configured, so nobody could use the service: set FACEREC_ADMIN_KEY "
            "(16+ characters), or create a key with `python -m app.keys create --name NAME "
            "--role admin`, or set FACEREC_INSECURE_DEV_MODE=1 for local development only"
        )
    return keys


def build_service(settings: Settings, telemetry: Telemetry | None = None) -> tuple[RecognitionService, KeyStore]:
    """Everything the service needs, loaded once: the key store first (it fails fast), then the models.

    The saved index is read from the start, alongside the rest: FAISS reads it with the GIL
    released, so the database check and the models load meanwhile. On a CPU whose exported networks
    are cached (``settings.onnx_cache_dir``), PyTorch is not imported at all (``models.runtime``;
    ``tests/test_service_rules.py`` keeps it so); with 1M faces (a 1.3 GB file) the read alone took
    1.1 s (``bench/cold_start.py``; README, "Performance").
    """
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    slot = SnapshotSlot(settings.state_dir)
    try:
        read = SnapshotRead(slot.path)
        engine = make_engine(settings.database_url, settings.database_timeout_s)
        upgrade_database(engine)
        sessions = make_session_factory(engine)
        keys = build_keys(settings, sessions)
        device = pick_device(settings.device)
        # numpy's OpenBLAS threads spin-wait after every call and take the cores from the networks that
        # run next (bench/pipeline_speed.py with cohort scoring: group photo 124 -> 103 ms, 4 clients
        # 31 -> 42 req/s once limited). The service's numpy products are small; one BLAS thread is
        # enough; the networks' runtimes keep their own pools.
        threadpool_limits(1, user_api="blas")
        threads = share_cpus_among_workers()
        # Networks exported for ONNX Runtime are kept beside the index, so a restart does not export again.
        pipeline = build_pipeline(
            settings.pipeline_config, device, cache_dir=settings.onnx_cache_dir or settings.state_dir / "onnx"
        )
        log.info(
            "models loaded on %s (%s, %s, %d threads); embedder %s",
            device,
            pipeline.runtime,
            pipeline.precision,
            threads,
            pipeline.embedder.version,
        )
        service = RecognitionService(settings, pipeline, sessions, telemetry, slot)
        service.sync_index(read)
    except BaseException:
        slot.release()  # another attempt in this process (or another process) may take it
        raise
    service.telemetry.follow_gallery(lambda: len(service.index), lambda: service.counts()["identities"])
    service.start_background(engine)
    return service, keys


class ConsoleHeaders:
    """ASGI middleware: the console runs only its own files (no inline script or style, nothing from
    elsewhere), shows the chosen photo from a blob, talks only to this service, and cannot be framed.

    Plain ASGI rather than ``@app.middleware("http")``: that wraps every request of every route in a
    streamed copy of its response, 0.32 ms a request for nothing outside ``/ui`` (a bare route through
    each, in process: 559 us without middleware, 878 with that one, 560 with this)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/ui"):
            await self.app(scope, receive, send)
            return

        async def with_headers(message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Content-Security-Policy"] = CONSOLE_POLICY
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Referrer-Policy"] = "no-referrer"
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The application for ``settings`` (default: from the environment)."""
    settings = settings or get_settings()

    telemetry = Telemetry()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        t0 = time.perf_counter()
        app.state.service, app.state.keys = build_service(settings, telemetry)
        telemetry.startup.set(time.perf_counter() - t0)
        yield
        app.state.service.close()

    # FastAPIOffline: FastAPI whose /docs (Swagger UI) and /redoc pages load their script and style from
    # files shipped in the fastapi-offline wheel, served here, instead of a public CDN -- so the API
    # docs work on a machine with no internet, like the rest of the service.
    app = FastAPIOffline(
        static_url="/docs-assets",
        title="facerec",
        version="0.1.0",
        lifespan=lifespan,
        description="Self-hosted face recognition: enrol people, identify faces in photos.",
    )
    app.state.telemetry = telemetry
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    app.add_middleware(RequestMetrics, telemetry=telemetry)  # outermost: counts refused requests too
    for module in (faces, identities, system):
        app.include_router(module.router)
    # The web console: static files shipped in the package, no CDN, no build step.
    app.mount("/ui", StaticFiles(directory=UI_DIR, html=True), name="ui")

    app.add_middleware(ConsoleHeaders)

    @app.get("/", include_in_schema=False)
    @app.get("/ui", include_in_schema=False)
    def console() -> RedirectResponse:
        return RedirectResponse("/ui/")

    return app


logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
app = create_app()
