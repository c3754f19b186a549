"""FastAPI dependencies: the settings, the job store and the queue, as Annotated aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.settings import Settings
from app.store.jobs import JobStore
from app.store.queue import Enqueuer
from app.store.registry import WorkerRegistry


def request_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_store(request: Request) -> JobStore:
    store: JobStore = request.app.state.store
    return store


def get_enqueuer(request: Request) -> Enqueuer:
    enqueuer: Enqueuer = request.app.state.enqueuer
    return enqueuer


def get_registry(request: Request) -> WorkerRegistry:
    registry: WorkerRegistry = request.app.state.registry
    return registry


SettingsDep = Annotated[Settings, Depends(request_settings)]
StoreDep = Annotated[JobStore, Depends(get_store)]
EnqueuerDep = Annotated[Enqueuer, Depends(get_enqueuer)]
RegistryDep = Annotated[WorkerRegistry, Depends(get_registry)]
