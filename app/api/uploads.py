"""Reading multipart files into service uploads, bounded by the size limit."""

from __future__ import annotations

from fastapi import UploadFile

from app.services.errors import ImageTooLarge
from app.services.recognition import Upload


def read_upload(file: UploadFile, max_bytes: int) -> Upload:
    """Read at most ``max_bytes + 1`` bytes, so an oversized upload is refused without buffering it all."""
    name = file.filename or "upload"
    data = file.file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ImageTooLarge(
            f"upload {name!r} is over the {max_bytes:,}-byte limit (FACEREC_MAX_UPLOAD_BYTES)",
            image=name,
            limit=max_bytes,
        )
    return Upload(name, data)
