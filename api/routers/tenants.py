"""``/v1/tenants``: the platform creates tenants (merchants); tenant keys cannot."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import PlatformPrincipal, ServicesDep
from api.schemas import TenantCreate, TenantOut
from application.access import TenantAlreadyExists

router = APIRouter(prefix="/v1/tenants", tags=["tenants"])


@router.post("", status_code=201, response_model=TenantOut)
def create_tenant(
    body: TenantCreate, principal: PlatformPrincipal, services: ServicesDep
) -> dict[str, Any]:
    """Create a tenant. 409 ``tenant_exists`` if the id is taken; 422 for an invalid id."""
    name = body.name or body.id
    if not services.access.create_tenant(body.id, name):
        raise TenantAlreadyExists("a tenant with this id already exists", param="id")
    return {"id": body.id, "name": name}
