"""Training jobs: submit, list, read, follow the curve, read the metrics, cancel."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Response
from fastapi.responses import JSONResponse

from app.api.admission import admit
from app.api.auth import UNAUTHORIZED, PrincipalDep, tenant_of
from app.api.catalog import Catalog
from app.api.deps import DefaultQuotasDep, SettingsDep, StoreDep, UploadsDep
from app.api.errors import field_error, not_found, unprocessable
from app.api.schemas import (
    ErrorDetail,
    Job,
    JobList,
    JobSpec,
    Metrics,
    MetricsNotReady,
    QuotaRefusal,
    Status,
    Unprocessable,
)
from app.store.keys import STATUSES
from app.store.records import (
    DatasetGone,
    IdempotencyConflict,
    JobAlreadyFinished,
    JobNotFound,
    QuotaExceeded,
)

logger = logging.getLogger(__name__)

router = APIRouter(
    prefix="/v1/jobs", tags=["jobs"], dependencies=[Depends(tenant_of)], responses=UNAUTHORIZED
)

MAX_CURVE_POINTS = 100_000
LARGE_CURVE = 10_000  # points past which a curve is written out on a worker thread
# The curve's cursor can never pass the most iterations a job may run (DESCENT_MAX_ITERATIONS
# is at most this), so no `since` reaches Redis as an offset it cannot represent.
MAX_SINCE = 10**9
# A curve's cursor and size, for the curve and the event stream.
Since = Annotated[int, Query(ge=0, le=MAX_SINCE, description="After this iteration")]
MaxPoints = Annotated[
    int, Query(ge=1, le=MAX_CURVE_POINTS, description="At most this many points, evenly "
               "downsampled (the last kept)")
]
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorDetail, "description": "No such job"}
}
IdempotencyKey = Annotated[
    str | None,
    Header(
        min_length=1,
        max_length=200,
        pattern=r"^[\x21-\x7e]+$",
        description="1 to 200 visible ASCII characters; a retry with the same key and body "
        "returns the first job instead of making another.",
    ),
]


def quota_refusal(exc: QuotaExceeded) -> JSONResponse:
    """A 429 that names the quota, its limit and the tenant's count, with Retry-After."""
    what = {
        "max_active_jobs": "queued and running jobs",
        "submissions_per_minute": "submissions in the last minute",
    }.get(exc.quota, exc.quota)
    detail = (
        f"quota {exc.quota} is {exc.limit} and you have {exc.count} {what}: "
        f"retry in {exc.retry_after} s"
    )
    return JSONResponse(
        status_code=429,
        headers={"Retry-After": str(exc.retry_after)},
        content={"detail": detail, "quota": exc.quota, "limit": exc.limit,
                 "current": exc.count, "retry_after_seconds": exc.retry_after},
    )


def _not_found(job_id: str) -> HTTPException:
    return not_found("job", job_id)


@router.post(
    "",
    status_code=202,
    response_model=Job,
    responses={
        409: {"model": ErrorDetail,
              "description": "Idempotency-Key reused with a different body"},
        413: {"model": ErrorDetail, "description": "Body too large"},
        422: {"model": Unprocessable,
              "description": "Invalid spec; each entry names the field and the value"},
        429: {"model": QuotaRefusal,
              "description": "Over a quota (max_active_jobs, submissions_per_minute); "
              "Retry-After says when to try again"},
        503: {"model": ErrorDetail, "description": "The job store or the queue is unreachable"},
    },
)
def submit_job(
    spec: JobSpec,
    response: Response,
    store: StoreDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    defaults: DefaultQuotasDep,
    uploads: UploadsDep,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """Validate the spec and store the job as `queued`: sent to the workers at once, or,
    when the tenant's max_running_jobs are taken, as soon as one of its jobs ends."""
    quotas = principal.tenant.quotas(defaults)
    catalog = Catalog(settings, uploads, principal.tenant.id)
    admission = admit(spec, settings, catalog, quotas["max_job_seconds"])
    if admission.errors:
        return unprocessable(admission.errors)
    try:
        job, created = store.create_job(
            admission.spec(spec),
            tenant=principal.tenant.id,
            name=spec.name,
            idempotency_key=idempotency_key,
            iterations=admission.iterations,
            quotas=quotas,
        )
    except IdempotencyConflict as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from exc
    except QuotaExceeded as exc:
        return quota_refusal(exc)
    except DatasetGone:
        return unprocessable([field_error("dataset", f"dataset {spec.dataset!r} was deleted "
                                          "while the job was being submitted", spec.dataset)])
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    response.headers["Location"] = f"/v1/jobs/{job['id']}"
    return job


@router.get("", response_model=JobList)
def list_jobs(
    store: StoreDep,
    principal: PrincipalDep,
    status: Annotated[Status | None, Query(description=f"One of {', '.join(STATUSES)}")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[
        str | None,
        Query(pattern=r"^[1-9][0-9]{0,17}$", description="The next_cursor of an earlier page"),
    ] = None,
) -> Any:
    """Your jobs, newest first; pass `next_cursor` back as `cursor` for the next page."""
    try:
        items, next_cursor = store.list_jobs(
            tenant=principal.tenant.id, status=status, limit=limit, cursor=cursor
        )
    except ValueError as exc:
        return unprocessable(
            [{"loc": ["query", "cursor"], "msg": str(exc), "type": "value_error",
              "input": cursor}]
        )
    return {"items": items, "next_cursor": next_cursor}


@router.get("/{job_id}", response_model=Job, responses=NOT_FOUND)
def get_job(job_id: str, store: StoreDep, principal: PrincipalDep) -> Any:
    job = store.get_job(job_id, tenant=principal.tenant.id)
    if job is None:
        raise _not_found(job_id)
    return job


@router.get(
    "/{job_id}/metrics",
    response_model=Metrics,
    responses={
        **NOT_FOUND,
        409: {"model": MetricsNotReady, "description": "The job has not succeeded (yet)"},
    },
)
def get_metrics(job_id: str, store: StoreDep, principal: PrincipalDep) -> Any:
    """The final test-set metrics of a succeeded job."""
    tenant = principal.tenant.id
    job = store.get_job(job_id, tenant=tenant)
    if job is None:
        raise _not_found(job_id)
    metrics = store.get_metrics(job_id, tenant=tenant) if job["status"] == "succeeded" else None
    if metrics is None:
        return JSONResponse(
            status_code=409,
            content={
                "detail": f"job {job_id} has no metrics: its status is {job['status']!r}; "
                "metrics exist once it has succeeded",
                "status": job["status"],
            },
        )
    return metrics


@router.post(
    "/{job_id}/cancel",
    status_code=202,
    response_model=Job,
    responses={
        **NOT_FOUND,
        409: {"model": ErrorDetail, "description": "The job already succeeded or failed"},
    },
)
def cancel_job(job_id: str, store: StoreDep, principal: PrincipalDep) -> Any:
    """Ask the job to stop; a running job stops within one mini-batch and ends `cancelled`."""
    try:
        return store.request_cancel(job_id, tenant=principal.tenant.id)
    except JobNotFound as exc:
        raise _not_found(job_id) from exc
    except JobAlreadyFinished as exc:
        raise HTTPException(
            status_code=409,
            detail=f"job {job_id} cannot be cancelled: it already {exc.status}",
        ) from exc
