"""Bad input gets a JSON 4xx that names the problem, and changes nothing."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import files, make_client
from training.config import data_root


def png_bytes(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), 128, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def snapshot(client) -> tuple:
    return client.get("/identities").json(), client.get("/health").json()["faces_indexed"]


@pytest.fixture
def seeded(client, known: Path):
    photo = known / "train" / "biden" / "biden.jpg"
    r = client.post("/enroll", data={"name": "biden"}, files=files([photo]))
    assert r.status_code == 201
    return client


def bad_requests(known: Path, data: Path) -> list[tuple[str, str, dict, int, str]]:
    good = known / "train" / "obama" / "obama2.jpg"
    crowd = data / "photos" / "crowds"
    jpeg = good.read_bytes()
    return [
        (
            "not an image",
            "/enroll",
            {"data": {"name": "x"}, "files": [("images", ("a.jpg", b"hello world"))]},
            415,
            "invalid_image",
        ),
        (
            "empty upload",
            "/enroll",
            {"data": {"name": "x"}, "files": [("images", ("a.jpg", b""))]},
            400,
            "empty_upload",
        ),
        (
            "truncated jpeg",
            "/identify",
            {"files": [("image", ("t.jpg", jpeg[: len(jpeg) // 3]))]},
            415,
            "invalid_image",
        ),
        ("no face", "/enroll", {"data": {"name": "dog"}, "files": files([crowd / "dogs.jpg"])}, 422, "no_face"),
        (
            "several faces",
            "/enroll",
            {"data": {"name": "two"}, "files": files([data / "photos" / "known_people" / "two_people.jpg"])},
            422,
            "multiple_faces",
        ),
        (
            "one bad image of two",
            "/enroll",
            {"data": {"name": "mixed"}, "files": files([good, crowd / "dogs.jpg"])},
            422,
            "no_face",
        ),
        (
            "unknown identity",
            "/enroll",
            {"data": {"identity_id": 999}, "files": files([good])},
            404,
            "unknown_identity",
        ),
        (
            "name and id",
            "/enroll",
            {"data": {"name": "x", "identity_id": 1}, "files": files([good])},
            422,
            "invalid_parameter",
        ),
        ("neither name nor id", "/enroll", {"files": files([good])}, 422, "invalid_parameter"),
        ("blank name", "/enroll", {"data": {"name": "   "}, "files": files([good])}, 422, "invalid_parameter"),
        ("name too long", "/enroll", {"data": {"name": "n" * 201}, "files": files([good])}, 422, "invalid_parameter"),
        ("duplicate name", "/enroll", {"data": {"name": "biden"}, "files": files([good])}, 409, "identity_exists"),
        ("no images field", "/enroll", {"data": {"name": "x"}}, 422, "invalid_parameter"),
        ("top_k zero", "/identify", {"data": {"top_k": 0}, "files": files([good], "image")}, 422, "invalid_parameter"),
        (
            "top_k text",
            "/identify",
            {"data": {"top_k": "many"}, "files": files([good], "image")},
            422,
            "invalid_parameter",
        ),
        (
            "top_k too large",
            "/identify",
            {"data": {"top_k": 51}, "files": files([good], "image")},
            422,
            "invalid_parameter",
        ),
        ("fpr negative", "/identify", {"data": {"fpr": -1}, "files": files([good], "image")}, 422, "invalid_parameter"),
        (
            "fpr not a number",
            "/identify",
            {"data": {"fpr": "low"}, "files": files([good], "image")},
            422,
            "invalid_parameter",
        ),
        (
            "fpr out of range",
            "/identify",
            {"data": {"fpr": 0.9}, "files": files([good], "image")},
            422,
            "invalid_parameter",
        ),
        ("decompression bomb", "/identify", {"files": [("image", ("bomb.png", png_bomb()))]}, 413, "image_too_large"),
        ("gif format", "/embed", {"files": [("image", ("a.gif", gif_bytes()))]}, 415, "invalid_image"),
        ("unknown identity to delete", "DELETE /identities/999", {}, 404, "unknown_identity"),
        ("unknown identity to get", "GET /identities/999", {}, 404, "unknown_identity"),
        ("identity id not a number", "GET /identities/abc", {}, 422, "invalid_parameter"),
        (
            "upload over the byte limit",
            "/identify",
            {"files": [("image", ("big.jpg", b"\xff" * (15 * 2**20 + 1)))]},
            413,
            "image_too_large",
        ),
        ("file in the wrong field", "/identify", {"files": files([good], "photo")}, 422, "invalid_parameter"),
        (
            "html named .png",
            "/identify",
            {"files": [("image", ("page.png", b"<html><body>hi</body></html>"))]},
            415,
            "invalid_image",
        ),
        (
            "enrol with a wrong API key",
            "/enroll",
            {"data": {"name": "intruder"}, "files": files([good]), "headers": {"X-API-Key": "frk_not-a-key"}},
            401,
            "invalid_api_key",
        ),
    ]


def png_bomb() -> bytes:
    """A tiny PNG whose header claims 50,000 x 50,000 pixels (the pixel data never follows)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", 50_000, 50_000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def gif_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(buf, format="GIF")
    return buf.getvalue()


def pytest_generate_tests(metafunc):
    """One test per row of :func:`bad_requests`, named by its label (no hand-kept count)."""
    if "bad_request" in metafunc.fixturenames:
        root = data_root()
        cases = (
            bad_requests(root / "photos" / "known_people" / "knn_examples", root) if (root / "photos").is_dir() else []
        )
        metafunc.parametrize("bad_request", cases, ids=[c[0] for c in cases])


def test_bad_input_is_refused_and_changes_nothing(seeded, bad_request):
    label, target, kwargs, status, code = bad_request
    before = snapshot(seeded)
    if " " in target:
        method, path = target.split(" ")
        r = seeded.request(method, path)
    else:
        r = seeded.post(target, **kwargs)
    assert r.status_code == status, (label, r.status_code, r.text)
    body = r.json()
    assert body["error"]["code"] == code, (label, body)
    assert len(body["error"]["message"]) > 10
    assert snapshot(seeded) == before, label


def test_grayscale_and_alpha_images_are_handled(seeded, known: Path):
    rgb = Image.open(known / "train" / "obama" / "obama2.jpg")
    for mode, fmt in (("L", "JPEG"), ("RGBA", "PNG")):
        buf = io.BytesIO()
        rgb.convert(mode).save(buf, format=fmt)
        r = seeded.post("/embed", files=[("image", (f"x.{fmt.lower()}", buf.getvalue()))])
        assert r.status_code == 200, r.text
        assert len(r.json()["faces"]) == 1


def test_exif_rotation_is_honoured(seeded, known: Path):
    """A photo stored sideways with an EXIF 'rotate' tag is seen upright: the face is still found."""
    upright = Image.open(known / "train" / "obama" / "obama2.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 CW to display
    buf = io.BytesIO()
    upright.transpose(Image.Transpose.ROTATE_90).save(buf, format="JPEG", exif=exif.tobytes())
    r = seeded.post("/embed", files=[("image", ("rotated.jpg", buf.getvalue()))])
    assert r.status_code == 200 and len(r.json()["faces"]) == 1
    w, h = upright.size
    x1, y1, x2, y2 = r.json()["faces"][0]["box"]
    assert x2 <= w + 5 and y2 <= h + 5  # boxes are in upright coordinates


def test_no_face_at_identify_is_an_empty_list(seeded, data: Path):
    r = seeded.post("/identify", files=files([data / "photos" / "crowds" / "dogs.jpg"], "image"))
    assert r.status_code == 200 and r.json()["faces"] == []


def test_request_body_over_the_limit_is_refused_before_parsing(tmp_path: Path, known: Path):
    """The whole-body cap answers 413 both for a declared Content-Length and for a chunked stream."""
    photo = known / "train" / "obama" / "obama2.jpg"
    with make_client(tmp_path / "state", max_request_bytes=50_000) as client:
        r = client.post("/enroll", data={"name": "big"}, files=files([photo] * 3))
        assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large", r.text
        assert "FACEREC_MAX_REQUEST_BYTES" in r.json()["error"]["message"]

        def chunks():
            for _ in range(20):
                yield b"x" * 10_000

        r = client.post("/identify", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"})
        assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large", r.text
        assert client.get("/identities").json() == []
