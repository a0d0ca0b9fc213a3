"""The service's one settings object, read from ``FACEREC_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.services.index_params import IndexParams
from models.pipeline import PipelineConfig

_PIPELINE = PipelineConfig()  # the pipeline's defaults are the service's defaults


class Settings(BaseSettings):
    """Validated at start-up; every field can be set as ``FACEREC_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="FACEREC_", extra="ignore")

    # Relative to the working directory, never to the installed package: an installed service must not
    # keep its database inside site-packages.
    state_dir: Path = Field(Path("state"), description="where the SQLite database and the index snapshots live")
    database_url: str = Field(
        "",
        description="the source of truth: empty for the SQLite file state_dir/facerec.db (one machine), or "
        "postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB shared by any number of replicas",
    )
    database_timeout_s: float = Field(
        5.0, gt=0, description="longest wait on the database (connect, pool, statement, lock) before a 503"
    )
    sync_interval_s: float = Field(
        0.2,
        gt=0,
        description="how often a replica polls the change log for other processes' writes; with "
        "PostgreSQL, LISTEN/NOTIFY wakes it at once and this is the fallback",
    )
    change_log_keep: int = Field(
        100_000, gt=0, description="change-log entries kept; a replica further behind rebuilds its index"
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    weights: Path = _PIPELINE.weights
    detector_min_score: float = Field(_PIPELINE.detector_min_score, ge=0.0, le=1.0)
    detector_min_face: int = Field(
        _PIPELINE.detector_min_face,
        ge=12,
        description="smallest face side in pixels the detector looks for; "
        "20 finds tiny faces at ~1.5x the detection time",
    )
    detector_pyramid_factor: float = Field(
        _PIPELINE.detector_pyramid_factor,
        gt=0.3,
        lt=1.0,
        description="ratio between the detector's pyramid levels; smaller searches fewer levels",
    )
    detector_pnet_threshold: float = Field(
        _PIPELINE.detector_pnet_threshold,
        gt=0.0,
        lt=1.0,
        description="score the detector's first stage needs to pass a window on; higher is faster, "
        "and past some point misses hard faces",
    )
    enroll_min_face: int = Field(
        80,
        ge=12,
        description="smallest face side in pixels accepted for enrolment "
        "(in the detector's image, at most 1280 px on its long side); smaller faces "
        "make poor templates and are ignored when counting an enrolment photo's faces",
    )
    aligner: Literal["mtcnn5", "landmarks68"] = Field(
        _PIPELINE.aligner, description="five points from MTCNN, or from our 68-point landmark network"
    )
    landmark_weights: Path = Field(_PIPELINE.landmark_weights, description="the 68-point network's weights")
    onnx_cache_dir: Path | None = Field(
        None,
        description="where the networks exported for the CPU runtimes (OpenVINO, ONNX Runtime) are kept (default: state_dir/onnx); "
        "exporting takes ~10 s and PyTorch, reading them back 0.2 s without it",
    )
    runtime: Literal["auto", "torch", "onnxruntime", "openvino"] = Field(
        _PIPELINE.runtime,
        description="where the networks run: auto = OpenVINO on a CPU (measured fastest; bf16 where the CPU "
        "computes it natively: AMX, AVX-512 BF16; P-Net on ONNX Runtime), PyTorch on a GPU",
    )
    embedder_int8: bool = Field(
        _PIPELINE.embedder_int8,
        description="run the card's int8 embedder on ONNX Runtime (training.quantize): a model version of its own",
    )
    inference_concurrency: int = Field(
        2,
        ge=0,
        description="photos whose networks may run at the same time (0: no limit); more only share the "
        "cores and thrash their thread pools (bench/inference_gate.py)",
    )
    inference_share_cores: bool = Field(
        True,
        description="a photo that enters the networks while another is inside runs them on one thread "
        "(ONNX Runtime): two photos then take a core each instead of contending for both (app.services.gate)",
    )
    max_upload_bytes: int = Field(15 * 1024 * 1024, gt=0)
    max_image_pixels: int = Field(40_000_000, gt=0)
    max_faces: int = Field(32, gt=0, description="faces processed per photo at /identify and /embed")
    max_images_per_enroll: int = Field(32, gt=0)
    default_fpr: float = Field(1e-3, gt=0.0, lt=1.0)
    max_top_k: int = Field(50, gt=0)
    max_name_length: int = Field(200, gt=0)
    max_request_bytes: int = Field(64 * 1024 * 1024, gt=0, description="whole request body, all files together")
    index_exact_max: int = Field(20_000, gt=0, description="exact search up to this many vectors, HNSW beyond")
    index_ef_search: int = Field(384, gt=0, description="HNSW candidates per query (recall vs speed)")
    index_save_interval_s: float = Field(
        30.0, gt=0, description="how often a large index with pending additions is saved; removals are saved at once"
    )
    index_sync_save_max: int = Field(
        2_000,
        ge=0,
        description="an index of up to this many vectors (4 MB) is saved right after every write, "
        "by the background saver (the request does not wait); a larger one every index_save_interval_s",
    )
    admin_key: SecretStr | None = Field(None, description="an admin API key given at start-up (automation)")
    insecure_dev_mode: bool = Field(False, description="serve with NO authentication; local development only")

    @field_validator("admin_key")
    @classmethod
    def _admin_key_strong(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None and len(key.get_secret_value()) < 16:
            raise ValueError(
                f"FACEREC_ADMIN_KEY is {len(key.get_secret_value())} characters; use at least 16, e.g. "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        return key

    @field_validator("weights")
    @classmethod
    def _weights_exist(cls, path: Path) -> Path:
        if not path.exists():
            raise ValueError(f"weight file {path} does not exist; point FACEREC_WEIGHTS at a .pt in models/weights")
        if not path.with_suffix(".json").exists():
            raise ValueError(f"model card {path.with_suffix('.json')} is missing; export weights with training.export")
        return path

    @model_validator(mode="after")
    def _default_database(self) -> "Settings":
        if not self.database_url:
            self.database_url = f"sqlite:///{self.state_dir / 'facerec.db'}"
        elif not self.database_url.startswith(("sqlite:", "postgresql")):
            raise ValueError(
                f"FACEREC_DATABASE_URL={self.database_url!r}: use postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB, "
                "or leave it empty for the SQLite file in FACEREC_STATE_DIR"
            )
        return self

    @model_validator(mode="after")
    def _landmarks_exist(self) -> "Settings":
        if self.aligner == "landmarks68" and not self.landmark_weights.exists():
            raise ValueError(
                f"FACEREC_ALIGNER=landmarks68 but {self.landmark_weights} does not exist; train and "
                "export it with training.train_landmarks, or set FACEREC_ALIGNER=mtcnn5"
            )
        return self

    @property
    def pipeline_config(self) -> PipelineConfig:
        """What the pipeline computes (``models.pipeline.build_pipeline`` builds it)."""
        return PipelineConfig(
            weights=self.weights,
            detector_min_score=self.detector_min_score,
            detector_min_face=self.detector_min_face,
            detector_pyramid_factor=self.detector_pyramid_factor,
            detector_pnet_threshold=self.detector_pnet_threshold,
            aligner=self.aligner,
            landmark_weights=self.landmark_weights,
            runtime=self.runtime,
            embedder_int8=self.embedder_int8,
        )

    @property
    def index_params(self) -> IndexParams:
        return IndexParams(exact_max=self.index_exact_max, ef_search=self.index_ef_search)

    @property
    def index_path(self) -> Path:
        return self.state_dir / "faces.faiss"


@lru_cache
def get_settings() -> Settings:
    return Settings()
