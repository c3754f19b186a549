"""The operator's API (DESCENT_ADMIN_TOKEN): tenants, their keys and quotas."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Response

from app.api.auth import UNAUTHORIZED, operator
from app.api.deps import DefaultQuotasDep, TenantsDep
from app.api.schemas import (
    ErrorDetail,
    KeyCreated,
    NewTenant,
    TenantCreated,
    TenantList,
    TenantPatch,
    Unprocessable,
)
from app.api.schemas import Tenant as TenantOut
from app.store.tenants import (
    Tenant,
    TenantExists,
    TenantNotFound,
    TenantStore,
)

router = APIRouter(
    prefix="/v1/admin", tags=["admin"], dependencies=[Depends(operator)], responses=UNAUTHORIZED
)
TENANT_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorDetail, "description": "No such tenant"}
}


def described(tenant: Tenant, tenants: TenantStore, defaults: dict) -> dict[str, Any]:
    return {
        "id": tenant.id,
        "name": tenant.name,
        "created_at": tenant.created_at,
        "quotas": tenant.quotas(defaults),
        "own_quotas": sorted(tenant.overrides),
        "keys": tenants.list_keys(tenant.id),
    }


def _no_tenant(tenant_id: str) -> HTTPException:
    return HTTPException(status_code=404, detail=f"tenant {tenant_id[:64]!r} not found")


@router.post(
    "/tenants",
    status_code=201,
    response_model=TenantCreated,
    responses={
        409: {"model": ErrorDetail, "description": "A tenant with that name exists"},
        422: {"model": Unprocessable, "description": "Invalid name or quotas"},
    },
)
def create_tenant(body: NewTenant, tenants: TenantsDep, defaults: DefaultQuotasDep) -> Any:
    """A new tenant and its first API key, shown this once."""
    try:
        tenant, api_key, key_id = tenants.create_tenant(body.name, body.quotas)
    except TenantExists as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from exc
    return {"tenant": described(tenant, tenants, defaults), "key_id": key_id, "api_key": api_key}


@router.get("/tenants", response_model=TenantList)
def list_tenants(tenants: TenantsDep, defaults: DefaultQuotasDep) -> Any:
    """Every tenant, oldest first, with its quotas and its keys (never the keys' secrets)."""
    return {"items": [described(t, tenants, defaults) for t in tenants.list_tenants()]}


@router.get("/tenants/{tenant_id}", response_model=TenantOut, responses=TENANT_NOT_FOUND)
def get_tenant(tenant_id: str, tenants: TenantsDep, defaults: DefaultQuotasDep) -> Any:
    tenant = tenants.get_tenant(tenant_id)
    if tenant is None:
        raise _no_tenant(tenant_id)
    return described(tenant, tenants, defaults)


@router.patch("/tenants/{tenant_id}", response_model=TenantOut, responses=TENANT_NOT_FOUND)
def patch_tenant(
    tenant_id: str, body: TenantPatch, tenants: TenantsDep, defaults: DefaultQuotasDep
) -> Any:
    """Change the tenant's quotas: a number sets one, null restores the default. A larger
    max_running_jobs sends waiting jobs at once."""
    try:
        tenant = tenants.set_quotas(tenant_id, body.quotas)
    except TenantNotFound as exc:
        raise _no_tenant(tenant_id) from exc
    return described(tenant, tenants, defaults)


@router.post(
    "/tenants/{tenant_id}/keys",
    status_code=201,
    response_model=KeyCreated,
    responses=TENANT_NOT_FOUND,
)
def create_key(tenant_id: str, tenants: TenantsDep) -> Any:
    """Another API key for the tenant, shown this once."""
    try:
        key_id, api_key = tenants.create_key(tenant_id)
    except TenantNotFound as exc:
        raise _no_tenant(tenant_id) from exc
    return {"key_id": key_id, "api_key": api_key}


@router.delete(
    "/keys/{key_id}",
    status_code=204,
    response_class=Response,
    responses={404: {"model": ErrorDetail, "description": "No such key"}},
)
def revoke_key(key_id: str, tenants: TenantsDep) -> Response:
    """Revoke a key: refused from the next request on."""
    if not tenants.revoke_key(key_id):
        raise HTTPException(status_code=404, detail=f"key {key_id[:64]!r} not found")
    return Response(status_code=204)
