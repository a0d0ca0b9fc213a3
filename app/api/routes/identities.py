"""The gallery: list, inspect and delete identities."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from app.api.deps import ADMIN, READ, ServiceDep
from app.api.schemas import (
    DeleteOut,
    ErrorOut,
    IdentityDetailOut,
    IdentityOut,
    OutdatedIdentityOut,
    face_record_out,
    identity_out,
)

router = APIRouter(prefix="/identities", tags=["identities"])
AUTH_ERRORS = {code: {"model": ErrorOut} for code in (401, 403)}
#: Ids are SQLite integers: positive and at most 2**63 - 1 (larger values cannot even be looked up).
IdentityId = Annotated[int, Path(ge=1, le=2**63 - 1, description="identity id")]


@router.get("", response_model=list[IdentityOut], responses=AUTH_ERRORS, dependencies=[READ])
def list_identities(
    service: ServiceDep,
    offset: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    search: Annotated[str | None, Query(max_length=200, description="only names containing this, any case")] = None,
) -> list[IdentityOut]:
    """Enrolled identities by id, with their face counts (paged; optionally filtered by name)."""
    return [identity_out(i, n) for i, n in service.list_identities(offset=offset, limit=limit, search=search)]


@router.get("/outdated", response_model=list[OutdatedIdentityOut], responses=AUTH_ERRORS, dependencies=[ADMIN])
def outdated_identities(service: ServiceDep) -> list[OutdatedIdentityOut]:
    """Identities holding faces made by another model version, which are never searched (vectors of two
    models cannot be compared). Re-enrol each from its photos with ``identity_id``; an identity with no
    current faces cannot be identified until then."""
    return [
        OutdatedIdentityOut(id=i.id, name=i.name, outdated_faces=n, current_faces=c, outdated_versions=v)
        for i, n, c, v in service.outdated_identities()
    ]


@router.get(
    "/{identity_id}",
    response_model=IdentityDetailOut,
    responses={404: {"model": ErrorOut}, **AUTH_ERRORS},
    dependencies=[READ],
)
def get_identity(service: ServiceDep, identity_id: IdentityId) -> IdentityDetailOut:
    """One identity and its face records (no photos are stored)."""
    identity, faces = service.get_identity(identity_id)
    return IdentityDetailOut(
        **identity_out(identity, len(faces)).model_dump(), faces=[face_record_out(f) for f in faces]
    )


@router.delete(
    "/{identity_id}",
    response_model=DeleteOut,
    responses={404: {"model": ErrorOut}, **AUTH_ERRORS},
    dependencies=[ADMIN],
)
def delete_identity(service: ServiceDep, identity_id: IdentityId) -> DeleteOut:
    """Delete an identity, its rows and its vectors in the index."""
    return DeleteOut(id=identity_id, faces_deleted=service.delete_identity(identity_id))
