"""Response bodies, and the conversions from service results to them."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from app.db.models import FaceRecord, Identity
from app.services.recognition import Candidate, IdentifyResult, VerifyResult
from models.types import Face


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorOut(BaseModel):
    error: ErrorDetail


class IdentityOut(BaseModel):
    id: int
    name: str
    created_at: datetime
    face_count: int


class FaceRecordOut(BaseModel):
    id: int = Field(description="face id; also its id in the vector index")
    identity_id: int
    model_version: str
    box: list[float]
    det_score: float
    source: str = Field(description="the uploaded file's name (the photo itself is not stored)")
    created_at: datetime


class EnrollOut(BaseModel):
    identity: IdentityOut
    faces: list[FaceRecordOut]


class IdentityDetailOut(IdentityOut):
    faces: list[FaceRecordOut]


class CandidateOut(BaseModel):
    identity_id: int
    name: str
    similarity: float = Field(
        description="the model's match score (GET /metrics/idrate: `scoring`): cosine similarity, or "
        "cosine minus the face pair's cohort term; `threshold` is on the same scale"
    )


class DetectedFaceOut(BaseModel):
    box: list[float] = Field(description="x1, y1, x2, y2 in pixels of the (EXIF-rotated) photo")
    score: float = Field(description="detection score")
    landmarks: list[list[float]] = Field(description="the 5 alignment points: eyes, nose tip, mouth corners")
    landmarks68: list[list[float]] | None = Field(
        None,
        description="68 points (iBUG 300-W order) when the 68-point aligner is in use (FACEREC_ALIGNER=landmarks68)",
    )


class IdentifiedFaceOut(DetectedFaceOut):
    candidates: list[CandidateOut]
    match: CandidateOut | None = Field(description="best candidate if above the threshold, else null (unknown)")


class IdentifyOut(BaseModel):
    faces: list[IdentifiedFaceOut]
    faces_found: int
    skipped: list[dict]
    fpr: float
    threshold: float
    model_version: str


class IdentityRefOut(BaseModel):
    id: int
    name: str


class VerifyOut(BaseModel):
    same: bool = Field(description="score above the threshold calibrated for fpr: the same person")
    score: float = Field(description="the model card's score (cohort-normalised cosine for the shipped card)")
    threshold: float
    fpr: float
    face_a: DetectedFaceOut = Field(description="the highest-scoring face of image_a, the one compared")
    faces_found_a: int
    face_b: DetectedFaceOut | None = Field(None, description="the highest-scoring face of image_b")
    faces_found_b: int | None = None
    identity: IdentityRefOut | None = Field(None, description="the enrolled identity compared with")
    faces_compared: int = Field(description="faces of the identity scored (its best counts); 1 for two photos")
    model_version: str


class EmbeddedFaceOut(DetectedFaceOut):
    embedding: list[float]


class EmbedOut(BaseModel):
    faces: list[EmbeddedFaceOut]
    faces_found: int
    model_version: str


class DeleteOut(BaseModel):
    id: int
    faces_deleted: int


class ReplicaOut(BaseModel):
    database: str = Field(description="'sqlite' or 'postgresql' (the source of truth)")
    snapshot: str = Field(description="this process's index snapshot file in the state directory")
    generation: int = Field(description="the gallery generation this replica's index reflects")
    database_generation: int | None = Field(description="the database's generation (null while unreachable)")
    lag: int | None = Field(description="changes the database has that this index has not applied yet")
    listening: bool = Field(description="PostgreSQL only: woken by NOTIFY; else (or meanwhile) polling")


class HealthOut(BaseModel):
    status: str = Field(description="'ok', or 'degraded' (HTTP 503) while the database cannot be read")
    device: str
    runtime: str = Field(description="where the networks run: 'openvino', 'onnxruntime' (a CPU) or 'torch'")
    precision: str = Field(description="'bf16' or 'fp32': what the networks compute in (the same model version)")
    threads: int = Field(
        description="threads each network of this process runs on: OMP_NUM_THREADS, else the CPUs shared "
        "among WEB_CONCURRENCY worker processes"
    )
    model_version: str
    auth: str = Field(description="'api_key', or 'disabled' in insecure development mode")
    database: str = Field(description="'ok', or what is wrong with it")
    replica: ReplicaOut
    identities: int | None = None
    faces_indexed: int
    faces_other_model: int | None = Field(
        None,
        description="enrolled faces made by another model version: never searched, since vectors of two "
        "models cannot be compared; GET /identities/outdated lists whom to re-enrol",
    )


class OutdatedIdentityOut(BaseModel):
    id: int
    name: str
    outdated_faces: int = Field(description="faces made by another model version (not searched)")
    current_faces: int = Field(description="faces made by the loaded model (searched)")
    outdated_versions: list[str]


def verify_out(result: VerifyResult, model_version: str) -> VerifyOut:
    return VerifyOut(
        same=result.same,
        score=round(result.score, 5),
        threshold=round(result.threshold, 5),
        fpr=result.fpr,
        face_a=DetectedFaceOut(**detected(result.face_a)),
        faces_found_a=result.faces_found_a,
        face_b=None if result.face_b is None else DetectedFaceOut(**detected(result.face_b)),
        faces_found_b=result.faces_found_b,
        identity=None if result.identity is None else IdentityRefOut(id=result.identity.id, name=result.identity.name),
        faces_compared=result.faces_compared,
        model_version=model_version,
    )


def identity_out(identity: Identity, face_count: int) -> IdentityOut:
    return IdentityOut(id=identity.id, name=identity.name, created_at=identity.created_at, face_count=face_count)


def face_record_out(r: FaceRecord) -> FaceRecordOut:
    return FaceRecordOut(
        id=r.id,
        identity_id=r.identity_id,
        model_version=r.model_version,
        box=r.box,
        det_score=r.det_score,
        source=r.source,
        created_at=r.created_at,
    )


def detected(face: Face) -> dict:
    return {
        "box": [round(float(v), 2) for v in face.box],
        "score": round(float(face.score), 5),
        "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in face.points],
        "landmarks68": None
        if face.landmarks68 is None
        else [[round(float(x), 2), round(float(y), 2)] for x, y in face.landmarks68],
    }


def candidate_out(c: Candidate) -> CandidateOut:
    return CandidateOut(identity_id=c.identity_id, name=c.name, similarity=round(c.similarity, 5))


def identify_out(result: IdentifyResult, model_version: str) -> IdentifyOut:
    faces = [
        IdentifiedFaceOut(
            **detected(f.face),
            candidates=[candidate_out(c) for c in f.candidates],
            match=candidate_out(f.match) if f.match else None,
        )
        for f in result.faces
    ]
    return IdentifyOut(
        faces=faces,
        faces_found=result.faces_found,
        skipped=result.skipped,
        fpr=result.fpr,
        threshold=round(result.threshold, 5),
        model_version=model_version,
    )
