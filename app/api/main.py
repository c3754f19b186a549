"""Assembles the FastAPI application: settings, store, queue, routers, error handlers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError

from app.errors import BodyLimit, redis_unavailable_handler, validation_handler
from app.queue import Enqueuer, make_celery
from app.registry import WorkerRegistry
from app.routes import datasets, health, jobs
from app.settings import Settings, get_settings
from app.store import JobStore


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = JobStore.from_settings(settings)
        app.state.settings = settings
        app.state.store = store
        app.state.registry = WorkerRegistry(store.client, settings.key_prefix)
        app.state.enqueuer = Enqueuer(make_celery(settings, main="descent-api"))
        yield
        app.state.enqueuer.close()
        store.close()

    app = FastAPI(
        title="Descent",
        summary="Gradient descent as a service: small networks trained with NumPy SGD.",
        version="1.0.0",
        lifespan=lifespan,
    )
    app.add_exception_handler(RequestValidationError, validation_handler)
    app.add_exception_handler(redis.RedisError, redis_unavailable_handler)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.include_router(jobs.router)
    app.include_router(datasets.router)
    app.include_router(health.router)
    return app


app = create_app()
