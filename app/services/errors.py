"""Domain errors. Each carries a stable ``code``, a message that names the bad value and the fix,
and the HTTP status the API layer maps it to."""

from __future__ import annotations


class ServiceError(Exception):
    """Base class: ``code`` and ``status`` are class attributes, ``detail`` extra JSON fields."""

    code = "bad_request"
    status = 400

    def __init__(self, message: str, **detail) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class InvalidImage(ServiceError):
    code, status = "invalid_image", 415


class EmptyUpload(ServiceError):
    code, status = "empty_upload", 400


class ImageTooLarge(ServiceError):
    code, status = "image_too_large", 413


class NoFaceFound(ServiceError):
    code, status = "no_face", 422


class MultipleFaces(ServiceError):
    code, status = "multiple_faces", 422


class UnknownIdentity(ServiceError):
    code, status = "unknown_identity", 404


class IdentityExists(ServiceError):
    code, status = "identity_exists", 409


class InvalidParameter(ServiceError):
    code, status = "invalid_parameter", 422


class MissingApiKey(ServiceError):
    code, status = "missing_api_key", 401


class InvalidApiKey(ServiceError):
    code, status = "invalid_api_key", 401


class Forbidden(ServiceError):
    code, status = "forbidden", 403
