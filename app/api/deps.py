"""Dependency aliases shared by the routes."""
from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.services.recognition import RecognitionService


def get_service(request: Request) -> RecognitionService:
    return request.app.state.service


ServiceDep = Annotated[RecognitionService, Depends(get_service)]
