"""Dependency aliases shared by the routes: the service, and the API-key check per role."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from app.services.auth import Principal
from app.services.recognition import RecognitionService

api_key_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="an API key: `read` (identify, embed, list, metrics) or `admin` (all)",
)


def get_service(request: Request) -> RecognitionService:
    return request.app.state.service


def _requires(need: str):
    def check(request: Request, key: Annotated[str | None, Security(api_key_header)]) -> Principal:
        if key is None:  # the same key as a bearer token, as Prometheus and many HTTP clients send it
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            key = token.strip() if scheme.lower() == "bearer" and token.strip() else None
        return request.app.state.keys.authenticate(key, need)

    check.__name__ = f"require_{need}_key"
    return check


ServiceDep = Annotated[RecognitionService, Depends(get_service)]
#: Route/router dependencies: any valid key, or an admin key.
READ = Depends(_requires("read"))
ADMIN = Depends(_requires("admin"))
