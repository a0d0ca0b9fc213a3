"""A cap on the whole request body, enforced while it streams in (before any multipart parsing)."""

from __future__ import annotations

import json


class _TooLarge(BaseException):
    # BaseException, not Exception: the framework's body parser turns an Exception into a generic 400,
    # and this must reach the middleware to become a 413 that names the limit.
    pass


class BodySizeLimit:
    """ASGI middleware: 413 for a declared Content-Length over ``max_bytes``, or a stream that passes it."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(send, int(declared))
            return
        received = 0
        started = False

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge
            return message

        async def tracking_send(message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._reject(send, received)

    async def _reject(self, send, size: int) -> None:
        body = json.dumps(
            {
                "error": {
                    "code": "request_too_large",
                    "limit": self.max_bytes,
                    "message": f"request body of {size:,}+ bytes is over the {self.max_bytes:,}-byte limit "
                    "(FACEREC_MAX_REQUEST_BYTES); send fewer or smaller photos per request",
                }
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
