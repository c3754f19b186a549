"""FastAPI dependencies: the settings, the stores and the registry, as Annotated aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.settings import Settings
from app.store.jobs import JobStore
from app.store.registry import WorkerRegistry
from app.store.tenants import TenantStore, default_quotas
from app.store.uploads import UploadStore


def request_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_store(request: Request) -> JobStore:
    store: JobStore = request.app.state.store
    return store


def get_tenants(request: Request) -> TenantStore:
    tenants: TenantStore = request.app.state.tenants
    return tenants


def get_uploads(request: Request) -> UploadStore:
    uploads: UploadStore = request.app.state.uploads
    return uploads


def get_default_quotas(settings: Annotated[Settings, Depends(request_settings)]) -> dict:
    return default_quotas(settings)


def get_registry(request: Request) -> WorkerRegistry:
    registry: WorkerRegistry = request.app.state.registry
    return registry


SettingsDep = Annotated[Settings, Depends(request_settings)]
StoreDep = Annotated[JobStore, Depends(get_store)]
TenantsDep = Annotated[TenantStore, Depends(get_tenants)]
DefaultQuotasDep = Annotated[dict, Depends(get_default_quotas)]
UploadsDep = Annotated[UploadStore, Depends(get_uploads)]
RegistryDep = Annotated[WorkerRegistry, Depends(get_registry)]
