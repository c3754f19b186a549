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
    if error.get("type") == "missing":
        text = f"{field} is required"
    elif error.get("type") == "extra_forbidden":
        text = f"{field} is not a known field"
    elif error.get("type") == "json_invalid":
        text = f"the body is not valid JSON: {message}"
    elif message.startswith(field.split(".")[0]):
        text = message
    else:
        text = f"{field}: {message}, got {error.get('input')!r}"
    out = {"loc": list(error.get("loc", ())), "msg": text, "type": error.get("type")}
    if "input" in error and error.get("type") != "missing":
        out["input"] = json_safe(error["input"])
    return out


async def validation_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return unprocessable([_describe(dict(e)) for e in exc.errors()])


class BodyLimit:
    """Refuse request bodies over `max_bytes` with 413, before they are read whole."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send, int(declared))
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge(seen)
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge as exc:
            await self._refuse(send, exc.size)

    async def _refuse(self, send: Send, size: int) -> None:
        response = JSONResponse(
            status_code=413,
            content={
                "detail": f"request body of {size} bytes exceeds the limit of "
                f"{self.max_bytes} bytes (DESCENT_MAX_BODY_BYTES)"
            },
        )
        await response({"type": "http"}, _no_receive, send)


class _TooLarge(Exception):
    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}
