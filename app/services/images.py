"""Upload decoding: bytes in, an RGB uint8 array out, or a clear error."""
from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from app.services.errors import EmptyUpload, ImageTooLarge, InvalidImage

ALLOWED_FORMATS = {"JPEG", "PNG", "WEBP", "BMP"}


def decode_image(data: bytes, filename: str, *, max_bytes: int, max_pixels: int) -> np.ndarray:
    """Decode an upload, honouring EXIF rotation; grayscale and alpha images become RGB.

    The pixel count is checked from the header before any pixel is decoded, so a small file that
    claims a huge canvas (a decompression bomb) costs nothing.
    """
    if not data:
        raise EmptyUpload(f"upload {filename!r} is empty (0 bytes); send a JPEG, PNG, WebP or BMP photo",
                          image=filename)
    if len(data) > max_bytes:
        raise ImageTooLarge(f"upload {filename!r} is {len(data):,} bytes; the limit is {max_bytes:,} "
                            "(FACEREC_MAX_UPLOAD_BYTES)", image=filename, limit=max_bytes)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"upload {filename!r} claims too many pixels ({exc})", image=filename,
                            limit=max_pixels) from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InvalidImage(f"upload {filename!r} is not a readable image ({exc}); send a JPEG, PNG, WebP or BMP",
                           image=filename) from None
    if image.format not in ALLOWED_FORMATS:
        raise InvalidImage(f"upload {filename!r} is {image.format}; allowed formats are {sorted(ALLOWED_FORMATS)}",
                           image=filename)
    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLarge(f"upload {filename!r} is {width}x{height} pixels; the limit is {max_pixels:,} pixels "
                            "(FACEREC_MAX_IMAGE_PIXELS)", image=filename, limit=max_pixels)
    try:
        image = ImageOps.exif_transpose(image)
        return np.asarray(image.convert("RGB"))
    except (OSError, ValueError, SyntaxError) as exc:  # truncated or corrupt pixel data
        raise InvalidImage(f"upload {filename!r} is corrupt or truncated ({exc}); re-export the photo",
                           image=filename) from None
