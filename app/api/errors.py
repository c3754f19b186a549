"""HTTP error answers and the middleware around them: 422/413/503/500 answers, the body
limit, and each path's methods (OPTIONS, HEAD, a 405's Allow)."""

from __future__ import annotations

import logging
from typing import Any

import redis
from fastapi import HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.wording import clean, describe
from app.store.base import UNREACHABLE

logger = logging.getLogger(__name__)


def field_error(
    field: str, message: str, value: Any, kind: str = "value_error", where: str = "body"
) -> dict[str, Any]:
    return {"loc": [where, field], "msg": clean(message), "type": kind, "input": clean(value)}


def not_found(kind: str, ident: str) -> HTTPException:
    """The 404 of an unknown id (or another tenant's: the same words), the id cut short."""
    shown = ident if len(ident) <= 64 else ident[:64] + "…"
    return HTTPException(status_code=404, detail=f"{kind} {shown!r} not found")


def unprocessable(errors: list[dict[str, Any]]) -> JSONResponse:
    return JSONResponse(status_code=422, content={"detail": errors})


async def validation_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    known = body_fields(request)
    json_body = "json" in request.headers.get("content-type", "")
    return unprocessable([describe(dict(e), known, json_body) for e in exc.errors()])


def body_fields(request: Request) -> list[str]:
    """The field names of the route's JSON body model, for "did you mean" hints."""
    body = getattr(request.scope.get("route"), "body_field", None)
    model = getattr(getattr(body, "field_info", None), "annotation", None)
    fields = getattr(model, "model_fields", None)
    return list(fields) if isinstance(fields, dict) else []


async def http_error_handler(request: Request, exc: Exception) -> Response:
    """FastAPI's own 400 for a body it could not even decode is, to clients, one more
    invalid body: a 422 that says what is wrong, like every other."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, RecursionError):
            reason = "it nests too deeply"
        elif isinstance(cause, UnicodeDecodeError):
            reason = "it is not UTF-8 text"
        else:
            reason = "it could not be parsed"
        message = f"the body is not valid JSON: {reason}"
        return unprocessable([{"loc": ["body"], "msg": message, "type": "json_invalid"}])
    return await http_exception_handler(request, exc)


STORE_UNAVAILABLE = (*UNREACHABLE, redis.ReadOnlyError)


def _refusing_writes(exc: Exception) -> bool:
    """Redis answers but refuses for now: out of memory (noeviction), a replica, no master."""
    text = str(exc)
    return isinstance(exc, redis.ResponseError) and text.startswith(("OOM", "MASTERDOWN"))


async def redis_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """An unreachable job store is a temporary 503 (nothing half-written); any other Redis
    error is a bug: a 500, logged with its trace."""
    if isinstance(exc, STORE_UNAVAILABLE) or _refusing_writes(exc):
        return JSONResponse(
            status_code=503,
            content={"detail": f"the job store (Redis) is unavailable: {type(exc).__name__}"},
            headers={"Retry-After": "5"},
        )
    logger.error("Redis error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(status_code=500, content={"detail": "internal error"})


METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


class MethodsMiddleware:
    """Every method of a path, whichever route serves it (FastAPI keeps one route per
    method): OPTIONS answers 204 listing them, a 405's Allow lists them all, and HEAD is
    answered wherever GET is (the GET answer's headers, without its body)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        if method == "OPTIONS":
            allowed = _allowed(scope)
            if allowed:
                headers = {"Allow": ", ".join(sorted(allowed))}
                await Response(status_code=204, headers=headers)(scope, receive, send)
                return
        elif method == "HEAD" and "GET" in _allowed(scope):
            as_get = {**scope, "method": "GET"}
            await self.app(as_get, receive, _without_body(send))
            if "route" in as_get:  # what the router found, for those outside (metrics)
                scope["route"] = as_get["route"]
            return
        # The router rewrites the scope as it goes (a mount's root_path): decide the 405's
        # Allow on the request as it came.
        await self.app(scope, receive, _fixing_405(dict(scope), send))


def _allowed(scope: Scope) -> set[str]:
    """The methods of the API's routes that serve this path. Mounted apps (static files)
    match every method, so they are asked about GET only."""
    routes = scope["app"].router.routes
    allowed = set()
    for route in routes:
        methods = METHODS if not isinstance(route, Mount) else ("GET",)
        allowed |= {m for m in methods
                    if route.matches({**scope, "method": m})[0] == Match.FULL}
    if allowed:
        allowed |= {"OPTIONS"} | ({"HEAD"} if "GET" in allowed else set())
    return allowed


def _without_body(send: Send) -> Send:
    async def head_send(message: Message) -> None:
        if message["type"] == "http.response.body":
            message = {**message, "body": b""}
        await send(message)

    return head_send


def _fixing_405(scope: Scope, send: Send) -> Send:
    async def fixed_send(message: Message) -> None:
        if message["type"] == "http.response.start" and message["status"] == 405:
            headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
            headers.append((b"allow", ", ".join(sorted(_allowed(scope))).encode()))
            message = {**message, "headers": headers}
        await send(message)

    return fixed_send


class BodyLimit:
    """Refuse request bodies over `max_bytes` with 413, before the app sees any of them.

    The body is read (at most `max_bytes` of it) before the app runs, so a chunked body
    without Content-Length is refused with the same 413 rather than with whatever error
    the app makes of a receive() that fails halfway.
    """

    def __init__(self, app: ASGIApp, max_bytes: int,
                 larger: tuple[tuple[str, int, str], ...] = (),
                 streamed: tuple[tuple[str, str], ...] = ()) -> None:
        self.app = app
        self.max_bytes = max_bytes
        # (a path's ending, its own limit, the setting's name): predictions' big bodies
        self.names = larger
        # (method, path): routes that read their body as it streams, with their own limit
        self.streamed = streamed

    def limit_of(self, path: str) -> int:
        return next((limit for ending, limit, _ in self.names if path.endswith(ending)),
                    self.max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (scope["method"], scope["path"]) in self.streamed:
            await self.app(scope, receive, send)
            return
        max_bytes = self.limit_of(scope.get("path", ""))
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            await self._refuse(send, f"{int(declared)} bytes", max_bytes)
            return
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > max_bytes:
                await self._refuse(send, f"at least {seen} bytes", max_bytes)
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

    async def _refuse(self, send: Send, size: str, max_bytes: int) -> None:
        setting = ("DESCENT_MAX_BODY_BYTES" if max_bytes == self.max_bytes
                   else next(name for ending, limit, name in self.names if limit == max_bytes))
        response = JSONResponse(
            status_code=413,
            content={
                "detail": f"request body of {size} exceeds the limit of "
                f"{max_bytes} bytes ({setting})"
            },
        )
        await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}
