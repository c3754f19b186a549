"""GET /v1/jobs/{id}/curve: the pollers' hot path, kept lean.

One Redis round trip checks the key and reads the curve (lua.AUTHENTICATED_CURVE), awaited
on the event loop with no hop to a worker thread; NumPy arrays go straight to orjson, with
no re-validation against the response model. The route reads the key itself rather than
through the jobs router's tenant_of dependency: measured in process, the dependency chain
and its separate key check took about half of a poll's CPU.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from app.api.auth import UNAUTHORIZED, presented_key, refused
from app.api.routes.jobs import LARGE_CURVE, NOT_FOUND, MaxPoints, Since, _not_found
from app.api.schemas import Curve
from app.store.curve import dumps
from app.store.tenants import KeyCheck

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=UNAUTHORIZED)


@router.get("/{job_id}/curve", response_model=Curve, responses=NOT_FOUND,
            openapi_extra={"security": [{"APIKey": []}]})
async def get_curve(
    job_id: str,
    request: Request,
    since: Since = 0,
    max_points: MaxPoints = 1000,
) -> Any:
    """Mini-batch losses after `since` (evenly downsampled, the last kept) and epoch rows."""
    check: KeyCheck = request.app.state.key_check
    principal, curve = await check.curve(presented_key(request), job_id, since, max_points)
    if principal is None:
        raise refused("unknown or revoked API key", "invalid_token")
    if curve is None:
        raise _not_found(job_id)
    if len(curve["iterations"]) > LARGE_CURVE:  # a big answer: not on the event loop
        return Response(await run_in_threadpool(dumps, curve), media_type="application/json")
    return Response(dumps(curve), media_type="application/json")
