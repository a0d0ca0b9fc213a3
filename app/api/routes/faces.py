"""Enrol, identify and embed: the routes that take photos."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Response, UploadFile

from app.api.deps import ADMIN, READ, ServiceDep
from app.api.schemas import (
    EmbeddedFaceOut,
    EmbedOut,
    EnrollOut,
    ErrorOut,
    IdentifyOut,
    VerifyOut,
    detected,
    face_record_out,
    identify_out,
    identity_out,
    verify_out,
)
from app.api.uploads import read_upload

router = APIRouter(tags=["faces"])
ERRORS = {code: {"model": ErrorOut} for code in (400, 401, 403, 404, 409, 413, 415, 422)}


# Plain ``def`` routes: FastAPI runs them in its worker threads, so inference never blocks the event loop.
@router.post("/enroll", response_model=EnrollOut, status_code=201, responses=ERRORS, dependencies=[ADMIN])
def enroll(
    service: ServiceDep,
    images: Annotated[list[UploadFile], File(description="one or more photos, each with exactly one face")],
    name: Annotated[str | None, Form(description="name of a new identity")] = None,
    identity_id: Annotated[
        int | None, Form(ge=1, le=2**63 - 1, description="existing identity to add faces to")
    ] = None,
) -> EnrollOut:
    """Store one face embedding per photo for a new (``name``) or existing (``identity_id``) identity."""
    uploads = [read_upload(f, service.settings.max_upload_bytes) for f in images]
    identity, records, face_count = service.enroll(name=name, identity_id=identity_id, uploads=uploads)
    return EnrollOut(identity=identity_out(identity, face_count), faces=[face_record_out(r) for r in records])


@router.post("/identify", response_model=IdentifyOut, responses=ERRORS, dependencies=[READ])
def identify(
    service: ServiceDep,
    response: Response,
    image: Annotated[UploadFile, File(description="a photo with any number of faces")],
    top_k: Annotated[int, Form(description="candidates per face")] = 5,
    fpr: Annotated[
        float | None, Form(description="false-positive rate the match threshold is set for (default 1e-3)")
    ] = None,
) -> IdentifyOut:
    """Every face in the photo with its top-k enrolled identities and the match (or null: unknown).

    The ``Server-Timing`` header gives the time of each stage: decode, detect, align, embed, search."""
    upload = read_upload(image, service.settings.max_upload_bytes)
    result = service.identify(upload=upload, top_k=top_k, fpr=fpr)
    response.headers["Server-Timing"] = result.timings.header()
    return identify_out(result, service.model_version)


@router.post("/verify", response_model=VerifyOut, responses=ERRORS, dependencies=[READ])
def verify(
    service: ServiceDep,
    response: Response,
    image_a: Annotated[UploadFile, File(description="a photo; its highest-scoring face is compared")],
    image_b: Annotated[UploadFile | None, File(description="a second photo (or give identity_id)")] = None,
    identity_id: Annotated[
        int | None, Form(ge=1, le=2**63 - 1, description="an enrolled identity (or give image_b)")
    ] = None,
    fpr: Annotated[
        float | None, Form(description="false-positive rate the decision threshold is set for (default 1e-3)")
    ] = None,
) -> VerifyOut:
    """1:1 verification: the same person or not, with the service's own score (the model card's, which a
    client cannot reproduce from /embed vectors) and the threshold calibrated for ``fpr``. Against an
    identity, its best-scoring face made by the loaded model counts."""
    limit = service.settings.max_upload_bytes
    result = service.verify(
        upload_a=read_upload(image_a, limit),
        upload_b=None if image_b is None else read_upload(image_b, limit),
        identity_id=identity_id,
        fpr=fpr,
    )
    response.headers["Server-Timing"] = result.timings.header()
    return verify_out(result, service.model_version)


@router.post("/embed", response_model=EmbedOut, responses=ERRORS, dependencies=[READ])
def embed(
    service: ServiceDep,
    image: Annotated[UploadFile, File(description="a photo with any number of faces")],
) -> EmbedOut:
    """Every face in the photo with its box, five points and L2-normalised embedding."""
    faces, total = service.faces(read_upload(image, service.settings.max_upload_bytes))
    return EmbedOut(
        faces=[EmbeddedFaceOut(**detected(f), embedding=[float(v) for v in f.embedding]) for f in faces],
        faces_found=total,
        model_version=service.model_version,
    )
