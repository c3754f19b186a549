"""Sweeps: submit, list, read (with the leaderboard), cancel, the trials' curves and the
overlay picture."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response

from app.api import pictures
from app.api.auth import UNAUTHORIZED, PrincipalDep, tenant_of
from app.api.catalog import Catalog
from app.api.deps import DefaultQuotasDep, SettingsDep, UploadsDep
from app.api.errors import not_found, unprocessable
from app.api.routes.jobs import quota_refusal
from app.api.schemas import ErrorDetail, QuotaRefusal, Unprocessable
from app.api.sweep_admission import admit_sweep
from app.api.sweep_schemas import Sweep, SweepCurves, SweepList, SweepSpec
from app.store.keys import SWEEP_TERMINAL
from app.store.records import QuotaExceeded
from app.store.sweeps import SweepAlreadyEnded, SweepNotFound, SweepStore
from app.sweeps import objective_at

router = APIRouter(
    prefix="/v1/sweeps", tags=["sweeps"], dependencies=[Depends(tenant_of)],
    responses=UNAUTHORIZED,
)
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorDetail, "description": "No such sweep"}
}


def get_sweeps(request: Request) -> SweepStore:
    store: SweepStore = request.app.state.store
    return store


SweepsDep = Annotated[SweepStore, Depends(get_sweeps)]


def _not_found(sweep_id: str) -> HTTPException:
    return not_found("sweep", sweep_id)


@router.post(
    "",
    status_code=202,
    response_model=Sweep,
    responses={
        413: {"model": ErrorDetail, "description": "Body too large"},
        422: {"model": Unprocessable, "description": "Invalid sweep; each entry names the "
              "field (base.*, space.*, trials, ...) and the value"},
        429: {"model": QuotaRefusal, "description": "Over submissions_per_minute (a sweep is "
              "one submission); Retry-After says when to try again"},
    },
)
def submit_sweep(
    spec: SweepSpec,
    response: Response,
    sweeps: SweepsDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    defaults: DefaultQuotasDep,
    uploads: UploadsDep,
) -> Any:
    """Validate the sweep and its every trial, store it and make its first trials (at
    most `max_concurrent` unfinished at once), which the fair queue dispatches as jobs."""
    quotas = principal.tenant.quotas(defaults)
    verdict = admit_sweep(spec, settings, quotas, Catalog(settings, uploads, principal.tenant.id))
    if verdict.errors:
        return unprocessable(verdict.errors)
    stored = spec.model_dump()
    # The base as its trials store it: an upload by its id (a DELETE looks for that).
    stored["base"]["dataset"] = verdict.dataset
    stored["estimated_seconds"] = verdict.estimated_seconds
    try:
        sweep = sweeps.create_sweep(stored, verdict.trials, tenant=principal.tenant.id,
                                    name=spec.name, quotas=quotas)
    except QuotaExceeded as exc:
        return quota_refusal(exc)
    response.headers["Location"] = f"/v1/sweeps/{sweep['id']}"
    return sweep


@router.get("", response_model=SweepList)
def list_sweeps(
    sweeps: SweepsDep,
    principal: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[
        str | None,
        Query(pattern=r"^[1-9][0-9]{0,17}$", description="The next_cursor of an earlier page"),
    ] = None,
) -> Any:
    """The tenant's sweeps, newest first (without their leaderboards); pass `next_cursor`
    back as `cursor` for the next page."""
    items, next_cursor = sweeps.list_sweeps(tenant=principal.tenant.id, limit=limit,
                                            cursor=cursor)
    return {"items": items, "next_cursor": next_cursor}


@router.get("/{sweep_id}", response_model=Sweep, responses=NOT_FOUND)
def get_sweep(sweep_id: str, sweeps: SweepsDep, principal: PrincipalDep) -> Any:
    """The sweep and its leaderboard: every trial, best first by the objective at its
    chosen epoch; the winner and its test metrics once known."""
    sweep = sweeps.get_sweep(sweep_id, tenant=principal.tenant.id)
    if sweep is None:
        raise _not_found(sweep_id)
    return sweep


@router.post(
    "/{sweep_id}/cancel",
    status_code=202,
    response_model=Sweep,
    responses={**NOT_FOUND,
               409: {"model": ErrorDetail, "description": "The sweep (or every trial of it) "
                     "has already ended"}},
)
def cancel_sweep(sweep_id: str, sweeps: SweepsDep, principal: PrincipalDep) -> Any:
    """Cancel the trials that have not ended; the sweep ends `cancelled` once they have."""
    try:
        return sweeps.request_cancel_sweep(sweep_id, tenant=principal.tenant.id)
    except SweepNotFound as exc:
        raise _not_found(sweep_id) from exc
    except SweepAlreadyEnded as exc:
        raise HTTPException(
            status_code=409, detail=f"sweep {sweep_id} cannot be cancelled: it already "
            f"ended {exc.status}") from exc


@router.get("/{sweep_id}/curves", response_model=SweepCurves, responses=NOT_FOUND)
def sweep_curves(sweep_id: str, sweeps: SweepsDep, principal: PrincipalDep) -> Any:
    """Each made trial's objective per epoch: what the overlay picture and the dashboard's
    chart draw."""
    found = sweeps.get_sweep_and_rows(sweep_id, tenant=principal.tenant.id)
    if found is None:
        raise _not_found(sweep_id)
    sweep, rows = found
    objective = sweep["objective"]
    trials = []
    for view in sorted(sweep["trials"], key=lambda v: v["trial"]):
        if view["job_id"] is None:
            continue
        epochs = sorted(rows.get(view["trial"], {}).items())
        trials.append({"trial": view["trial"], "job_id": view["job_id"],
                       "status": view["status"],
                       "epochs": [epoch for epoch, _ in epochs],
                       "values": [objective_at(row, objective) for _, row in epochs]})
    return {"objective": objective, "status": sweep["status"],
            "winner": (sweep["winner"] or {}).get("trial"), "trials": trials}


def _picture(sweep_id: str, fmt: str, sweeps: SweepStore, tenant: str) -> Response:
    found = sweeps.get_sweep_and_rows(sweep_id, tenant=tenant)
    if found is None:
        raise _not_found(sweep_id)
    sweep, rows = found
    done = sweep["status"] in SWEEP_TERMINAL
    key = f"sweep:{sweep_id}"
    body = pictures.cached(key, fmt) if done else None
    if body is None:
        body = pictures.render_sweep(sweep, rows, fmt)
        if done:
            pictures.keep(key, fmt, body)
    cache = "private, max-age=86400" if done else "no-store"
    return Response(body, media_type=pictures.FORMATS[fmt], headers={"Cache-Control": cache})


def _picture_responses(media: str) -> dict[int | str, dict[str, Any]]:
    return pictures.responses(media, "Every trial's validation curve, the winner marked",
                              NOT_FOUND)


@router.get("/{sweep_id}/plot.png", response_class=Response,
            responses=_picture_responses("image/png"))
def sweep_png(sweep_id: str, sweeps: SweepsDep, principal: PrincipalDep) -> Response:
    """Every trial's objective per epoch, the winner marked (PNG)."""
    return _picture(sweep_id, "png", sweeps, principal.tenant.id)


@router.get("/{sweep_id}/plot.svg", response_class=Response,
            responses=_picture_responses("image/svg+xml"))
def sweep_svg(sweep_id: str, sweeps: SweepsDep, principal: PrincipalDep) -> Response:
    """Every trial's objective per epoch, the winner marked (SVG)."""
    return _picture(sweep_id, "svg", sweeps, principal.tenant.id)
