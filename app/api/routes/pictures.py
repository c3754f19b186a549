"""GET /v1/jobs/{id}/curve.png and curve.svg: the curve as a picture (app.api.pictures)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Response

from app.api import pictures
from app.api.auth import UNAUTHORIZED, PrincipalDep, tenant_of
from app.api.deps import StoreDep
from app.api.routes.jobs import MAX_CURVE_POINTS, NOT_FOUND, _not_found
from app.store.keys import TERMINAL_STATUSES

router = APIRouter(
    prefix="/v1/jobs", tags=["pictures"], dependencies=[Depends(tenant_of)],
    responses=UNAUTHORIZED,
)


def picture(job_id: str, fmt: str, store: Any, tenant: str) -> Response:
    job = store.get_job(job_id, tenant=tenant)
    if job is None:
        raise _not_found(job_id)
    done = job["status"] in TERMINAL_STATUSES
    body = pictures.cached(job_id, fmt) if done else None
    if body is None:
        curve = store.read_curve(job_id, tenant=tenant, max_points=MAX_CURVE_POINTS)
        if curve is None:
            raise _not_found(job_id)
        body = pictures.render(job, curve, fmt)
        if done:  # a finished job's picture never changes
            pictures.keep(job_id, fmt, body)
    cache = "private, max-age=86400" if done else "no-store"
    return Response(body, media_type=pictures.FORMATS[fmt], headers={"Cache-Control": cache})


def _responses(media: str) -> dict[int | str, dict[str, Any]]:
    return pictures.responses(media, "The loss curve (raw and moving average, epochs' train "
                              "and validation loss) over the train and validation accuracy",
                              NOT_FOUND)


@router.get("/{job_id}/curve.png", response_class=Response, responses=_responses("image/png"))
def curve_png(job_id: str, store: StoreDep, principal: PrincipalDep) -> Response:
    """The job's curve as a PNG picture (cached once the job has ended)."""
    return picture(job_id, "png", store, principal.tenant.id)


@router.get("/{job_id}/curve.svg", response_class=Response,
            responses=_responses("image/svg+xml"))
def curve_svg(job_id: str, store: StoreDep, principal: PrincipalDep) -> Response:
    """The job's curve as an SVG picture (cached once the job has ended)."""
    return picture(job_id, "svg", store, principal.tenant.id)
