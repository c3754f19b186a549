"""HTTP error answers: 422 bodies that name the field and the value, and the 413 body limit."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.curve import json_safe


def field_error(field: str, message: str, value: Any, kind: str = "value_error") -> dict[str, Any]:
    return {"loc": ["body", field], "msg": message, "type": kind, "input": json_safe(value)}


def unprocessable(errors: list[dict[str, Any]]) -> JSONResponse:
    return JSONResponse(status_code=422, content={"detail": errors})


def _describe(error: dict[str, Any]) -> dict[str, Any]:
    """Pydantic's message, prefixed with the field and followed by the value it got."""
    loc = [str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path")]
    field = ".".join(loc) or "body"
    message = str(error.get("msg", "invalid"))
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    value = error.get("input")
    if isinstance(value, bytes | bytearray):  # a body FastAPI did not parse as JSON
        value = bytes(value[:200]).decode("utf-8", errors="replace")
    if error.get("type") == "missing":
        text = f"{field} is required"
    elif error.get("type") == "extra_forbidden":
        text = f"{field} is not a known field"
    elif error.get("type") == "json_invalid":
        reason = (error.get("ctx") or {}).get("error", message)
        where = loc[0] if loc else "?"
        text = f"the body is not valid JSON: {reason} at character {where}"
    elif isinstance(error.get("input"), bytes | bytearray):
        text = (
            f"{field} must be a JSON object sent with Content-Type: application/json, "
            f"got {value!r}"
        )
    elif message.startswith(field.split(".")[0]):
        text = message
    else:
        text = f"{field}: {message}, got {value!r}"
    out = {"loc": list(error.get("loc", ())), "msg": text, "type": error.get("type")}
    # A missing field has no value, and FastAPI's placeholder for unparsable JSON is {}.
    if "input" in error and error.get("type") not in ("missing", "json_invalid"):
        out["input"] = json_safe(value)
    return out


async def validation_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return unprocessable([_describe(dict(e)) for e in exc.errors()])


async def redis_unavailable_handler(request: Request, exc: Exception) -> JSONResponse:
    """The job store is unreachable: a temporary 503, never a 500, and nothing half-written."""
    return JSONResponse(
        status_code=503,
        content={"detail": f"the job store (Redis) is unavailable: {type(exc).__name__}"},
        headers={"Retry-After": "5"},
    )


class BodyLimit:
    """Refuse request bodies over `max_bytes` with 413, before the app sees any of them.

    The body is read (at most `max_bytes` of it) before the app runs, so a chunked body
    without Content-Length is refused with the same 413 rather than with whatever error
    the app makes of a receive() that fails halfway.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send, f"{int(declared)} bytes")
            return
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.max_bytes:
                await self._refuse(send, f"at least {seen} bytes")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body: Message | None = {"type": "http.request", "body": b"".join(chunks),
                                "more_body": False}

        async def replay() -> Message:
            nonlocal body
            if body is not None:
                message, body = body, None
                return message
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send, size: str) -> None:
        response = JSONResponse(
            status_code=413,
            content={
                "detail": f"request body of {size} exceeds the limit of "
                f"{self.max_bytes} bytes (DESCENT_MAX_BODY_BYTES)"
            },
        )
        await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}
