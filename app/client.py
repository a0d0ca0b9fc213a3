"""A small typed Python client of the service's HTTP API (what the ``facerec`` command line uses).

    from app.client import FacerecClient
    with FacerecClient("http://localhost:8000", api_key="...") as api:
        api.enroll(["obama1.jpg", "obama2.jpg"], name="obama")
        for face in api.identify("group.jpg")["faces"]:
            print(face["box"], face["match"])

Every method returns the JSON the API documents (``/docs``); an error answer raises
:class:`ApiError` with the API's ``code`` and message, never a bare HTTP exception.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

DEFAULT_URL = "http://localhost:8000"
Photo = str | Path


class ApiError(Exception):
    """An error answer of the service: HTTP ``status``, its stable ``code`` and its ``message``."""

    def __init__(self, status: int, code: str, message: str, detail: dict | None = None) -> None:
        super().__init__(f"{code} ({status}): {message}")
        self.status, self.code, self.message, self.detail = status, code, message, detail or {}


def _files(field: str, photos: list[Photo]) -> list[tuple[str, tuple[str, bytes]]]:
    return [(field, (Path(p).name, Path(p).read_bytes())) for p in photos]


def _form(**values: Any) -> dict[str, str]:
    return {k: str(v) for k, v in values.items() if v is not None}


class FacerecClient:
    """Talks to one service at ``url`` with ``api_key`` (``FACEREC_URL`` and ``FACEREC_API_KEY`` by default)."""

    def __init__(self, url: str | None = None, api_key: str | None = None, timeout: float = 120.0) -> None:
        self.url = (url or os.environ.get("FACEREC_URL") or DEFAULT_URL).rstrip("/")
        key = api_key if api_key is not None else os.environ.get("FACEREC_API_KEY")
        self.http = httpx.Client(base_url=self.url, headers={"X-API-Key": key} if key else {}, timeout=timeout)

    def __enter__(self) -> FacerecClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, path: str, **kwargs) -> Any:
        try:
            r = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ApiError(0, "unreachable", f"cannot reach {self.url}: {exc}") from exc
        if r.status_code >= 400:
            try:
                error = r.json()["error"]
                raise ApiError(r.status_code, error["code"], error["message"], error)
            except (ValueError, KeyError, TypeError):
                raise ApiError(r.status_code, "http_error", r.text[:200] or r.reason_phrase) from None
        return r.json()

    # -- the API ---------------------------------------------------------------------------------
    def health(self) -> dict:
        return self._call("GET", "/health")

    def enroll(self, photos: list[Photo], *, name: str | None = None, identity_id: int | None = None) -> dict:
        """A new identity (``name``) or more faces for one (``identity_id``): one face per photo, all or none."""
        return self._call(
            "POST", "/enroll", data=_form(name=name, identity_id=identity_id), files=_files("images", photos)
        )

    def identify(self, photo: Photo, *, top_k: int | None = None, fpr: float | None = None) -> dict:
        return self._call("POST", "/identify", data=_form(top_k=top_k, fpr=fpr), files=_files("image", [photo]))

    def verify(
        self, photo: Photo, other: Photo | None = None, *, identity_id: int | None = None, fpr: float | None = None
    ) -> dict:
        files = _files("image_a", [photo]) + (_files("image_b", [other]) if other is not None else [])
        return self._call("POST", "/verify", data=_form(identity_id=identity_id, fpr=fpr), files=files)

    def embed(self, photo: Photo) -> dict:
        return self._call("POST", "/embed", files=_files("image", [photo]))

    def identities(self, *, offset: int = 0, limit: int = 100, search: str | None = None) -> list[dict]:
        params = {"offset": offset, "limit": limit, **({"search": search} if search else {})}
        return self._call("GET", "/identities", params=params)

    def all_identities(self, page: int = 500, search: str | None = None) -> Iterator[dict]:
        """Every identity (whose name contains ``search``), fetched a page at a time."""
        offset = 0
        while batch := self.identities(offset=offset, limit=page, search=search):
            yield from batch
            offset += len(batch)

    def identity(self, identity_id: int) -> dict:
        return self._call("GET", f"/identities/{identity_id}")

    def delete_identity(self, identity_id: int) -> dict:
        return self._call("DELETE", f"/identities/{identity_id}")

    def outdated_identities(self) -> list[dict]:
        return self._call("GET", "/identities/outdated")

    def whoami(self) -> dict:
        return self._call("GET", "/whoami")

    def idrate(self) -> dict:
        return self._call("GET", "/metrics/idrate")
