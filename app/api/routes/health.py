"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.api.deps import RegistryDep, SettingsDep, StoreDep
from app.api.schemas import Health, Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz() -> dict[str, str]:
    """The API process answers."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Redis unreachable or no worker"}},
)
def readyz(store: StoreDep, registry: RegistryDep, settings: SettingsDep) -> JSONResponse:
    """Ready when Redis answers and at least one worker said it was alive recently."""
    try:
        redis_ok = store.ping()
        workers = registry.alive(within_seconds=3 * settings.heartbeat_seconds)
    except Exception as exc:  # any Redis failure means not ready
        body = {"status": "unavailable", "redis": False, "workers": 0, "detail": str(exc)}
        return JSONResponse(status_code=503, content=body)
    ready = redis_ok and bool(workers)
    body = {"status": "ready" if ready else "unavailable", "redis": redis_ok,
            "workers": len(workers)}
    if not workers:
        body["detail"] = "no worker is online: start one with `make run` or the compose file"
    return JSONResponse(status_code=200 if ready else 503, content=body)
