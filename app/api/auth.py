"""Who is asking: a tenant's API key on /v1/*, the operator's token on /v1/admin/*.

Both arrive as ``Authorization: Bearer ...``. A missing, unknown or revoked key is a 401
with ``WWW-Authenticate: Bearer``; the two cases differ only in the words.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.api.schemas import ErrorDetail
from app.store.tenants import KeyCheck, Principal

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="APIKey",
    description="A tenant's API key (dsk_...); the operator's DESCENT_ADMIN_TOKEN on "
    "/v1/admin/*.",
)
# What HTTPBearer parses is not used: as a dependency it puts the scheme in the OpenAPI, and
# presented_key reads the header for every route (the curve's too, which has no dependency).
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorDetail, "description": "Missing, unknown or revoked key"}
}


def refused(detail: str, error: str | None = None) -> HTTPException:
    challenge = "Bearer" if error is None else f'Bearer error="{error}"'
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": challenge})


def presented_key(request: Request) -> str:
    """The key of `Authorization: Bearer <key>`, or the 401 that says what is wrong."""
    sent = request.headers.get("authorization")
    if not sent:
        raise refused("this route needs an API key: send 'Authorization: Bearer <key>'")
    scheme, _, key = sent.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise refused("the Authorization header must be 'Bearer <key>'", "invalid_request")
    return key


async def tenant_of(request: Request, credentials: Credentials) -> Principal:
    """The tenant the request's key speaks for (a 401 otherwise)."""
    key = presented_key(request)
    check: KeyCheck = request.app.state.key_check
    principal = await check.authenticate(key)
    if principal is None:
        raise refused("unknown or revoked API key", "invalid_token")
    return principal


async def operator(request: Request, credentials: Credentials) -> None:
    """The operator's token (DESCENT_ADMIN_TOKEN), compared in constant time."""
    token = presented_key(request)
    expected = request.app.state.settings.admin_token
    if expected is None:
        raise refused(
            "the admin API is closed: the operator sets DESCENT_ADMIN_TOKEN to open it "
            "(or uses python -m app.admin)"
        )
    if not hmac.compare_digest(token.encode(), expected.get_secret_value().encode()):
        raise refused("wrong admin token", "invalid_token")


PrincipalDep = Annotated[Principal, Depends(tenant_of)]
