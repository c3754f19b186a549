"""Who am I: the key's tenant, its quotas in force and what counts against them now."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from app.api.auth import UNAUTHORIZED, PrincipalDep
from app.api.deps import DefaultQuotasDep, TenantsDep
from app.api.schemas import Me

router = APIRouter(prefix="/v1/me", tags=["tenants"], responses=UNAUTHORIZED)


@router.get("", response_model=Me)
def me(principal: PrincipalDep, tenants: TenantsDep, defaults: DefaultQuotasDep) -> Any:
    """Your tenant, its quotas and its usage."""
    tenant = principal.tenant
    return {
        "tenant": {"id": tenant.id, "name": tenant.name},
        "quotas": tenant.quotas(defaults),
        "usage": tenants.usage(tenant.id),
    }
