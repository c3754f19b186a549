"""Assembles the FastAPI application: settings, stores, routers, error handlers."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import redis
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from fastapi_offline import FastAPIOffline
from prometheus_client import CollectorRegistry
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.staticfiles import StaticFiles

from app.api.errors import (
    BodyLimit,
    MethodsMiddleware,
    http_error_handler,
    redis_error_handler,
    validation_handler,
)
from app.api.events import EventHub
from app.api.monitoring import HttpMetrics, StoreCollector
from app.api.predict import ModelCache
from app.api.routes import (
    admin,
    curve,
    datasets,
    events,
    gradcheck,
    health,
    jobs,
    me,
    metrics,
    models,
    pictures,
    sweeps,
)
from app.settings import Settings, get_settings
from app.store.base import connect, connect_async
from app.store.feed import FeedReader
from app.store.registry import WorkerRegistry
from app.store.sweeps import SweepStore
from app.store.tenants import KeyCheck, TenantStore
from app.store.uploads import UploadStore

UI_DIR = Path(__file__).resolve().parent.parent / "ui"
_frozen = False


# The cycle collector's first threshold: allocations (net of frees) between two young
# collections. CPython's 700 made one every ~0.7 ms under 100 pollers, each walking the
# objects of every request in flight, so they reached the older generations too: 5-10 ms
# middle-generation collections several times a second and 10-30 ms full ones every
# second, finding nothing (the requests' objects are freed by reference counting).
GC_YOUNG_THRESHOLD = 50_000


def _freeze_startup_objects() -> None:
    """Once per process, when the first app has started: what exists then lives as long
    as the process, so it is moved out of the cycle collector's sight and a full
    collection no longer walks it. Under 100 pollers each full collection took ~75 ms
    (every request in flight waited) about every 3 s; after this ~6 ms
    (bench/service/polling.py). And the young generation collects after GC_YOUNG_THRESHOLD
    allocations rather than 700. Once only: a test process makes many apps, and a frozen
    object is never collected."""
    global _frozen
    if not _frozen:
        _frozen = True
        gc.collect()
        gc.freeze()
        gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def package_version() -> str:
    try:
        return version("descent")
    except PackageNotFoundError:  # a checkout that is not installed
        return "0+unknown"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = connect(settings)
        app.state.settings = settings
        # SweepStore is a JobStore with sweeps: the jobs' routes and the sweeps' share it.
        app.state.store = SweepStore.from_settings(settings, client)
        app.state.tenants = TenantStore.from_settings(settings, client)
        app.state.uploads = UploadStore.from_settings(settings, client)
        # What the API awaits on its event loop: the key check and the event stream.
        async_client = connect_async(settings)
        app.state.key_check = KeyCheck(async_client, settings.key_prefix)
        app.state.event_hub = EventHub(async_client, FeedReader(async_client, settings.key_prefix))
        app.state.event_hub.start()
        app.state.registry = WorkerRegistry(client, settings.key_prefix)
        app.state.models = ModelCache(settings.model_cache_bytes)
        collector = StoreCollector(app.state.store, app.state.registry, settings)
        registry.register(collector)
        _freeze_startup_objects()
        yield
        registry.unregister(collector)
        app.state.store.messages.close()
        await app.state.event_hub.stop()
        await async_client.aclose()
        client.close()

    # FastAPIOffline: /docs and /redoc serve Swagger UI and ReDoc from the installed
    # package, so the docs work on a machine without internet access.
    app = FastAPIOffline(
        title="Descent",
        summary="Gradient descent as a service: small networks trained with NumPy SGD.",
        version=package_version(),
        lifespan=lifespan,
    )
    registry = CollectorRegistry()
    app.state.metrics_registry = registry
    app.add_exception_handler(RequestValidationError, validation_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    app.add_exception_handler(redis.RedisError, redis_error_handler)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes, larger=(
        ("/predict", settings.max_predict_body_bytes, "DESCENT_MAX_PREDICT_BODY_BYTES"),),
        streamed=(("POST", "/v1/datasets"),))  # uploads: refused while they stream in
    app.add_middleware(MethodsMiddleware)
    app.add_middleware(HttpMetrics, registry=registry)  # outermost: it times everything
    app.include_router(curve.router)  # first: the pollers' route is matched at once
    app.include_router(jobs.router)
    app.include_router(events.router)
    app.include_router(pictures.router)
    app.include_router(datasets.router)
    app.include_router(gradcheck.router)
    app.include_router(sweeps.router)
    app.include_router(models.router)
    app.include_router(me.router)
    app.include_router(admin.router)
    app.include_router(health.router)
    app.include_router(metrics.router)
    # The dashboard: static files, public (they hold no data; the page asks for a key).
    app.mount("/ui", StaticFiles(directory=UI_DIR, html=True), name="ui")

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse("/ui/")

    return app


app = create_app()
