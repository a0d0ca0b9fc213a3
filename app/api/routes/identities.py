"""The gallery: list, inspect and delete identities."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import ServiceDep
from app.api.schemas import DeleteOut, ErrorOut, IdentityDetailOut, IdentityOut, face_record_out, identity_out

router = APIRouter(prefix="/identities", tags=["identities"])


@router.get("", response_model=list[IdentityOut])
def list_identities(service: ServiceDep, offset: Annotated[int, Query(ge=0)] = 0,
                    limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[IdentityOut]:
    """Enrolled identities by id, with their face counts."""
    return [identity_out(i, n) for i, n in service.list_identities(offset=offset, limit=limit)]


@router.get("/{identity_id}", response_model=IdentityDetailOut, responses={404: {"model": ErrorOut}})
def get_identity(service: ServiceDep, identity_id: int) -> IdentityDetailOut:
    """One identity and its face records (no photos are stored)."""
    identity, faces = service.get_identity(identity_id)
    return IdentityDetailOut(**identity_out(identity, len(faces)).model_dump(),
                             faces=[face_record_out(f) for f in faces])


@router.delete("/{identity_id}", response_model=DeleteOut, responses={404: {"model": ErrorOut}})
def delete_identity(service: ServiceDep, identity_id: int) -> DeleteOut:
    """Delete an identity, its rows and its vectors in the index."""
    return DeleteOut(id=identity_id, faces_deleted=service.delete_identity(identity_id))
