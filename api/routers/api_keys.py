"""``/v1/api-keys``: an admin lists, creates and revokes the API keys of their own tenant."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Response

from api.deps import ServicesDep, authenticate
from api.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyList
from application.access import ApiKey, Principal, issue_api_key, list_api_keys, revoke_api_key

router = APIRouter(prefix="/v1/api-keys", tags=["api keys"])

Caller = Annotated[Principal, Depends(authenticate)]


def api_key_body(key: ApiKey) -> dict[str, Any]:
    """An API key as the API shows it: never the key itself, nor its digest."""
    return {
        "id": key.id,
        "name": key.name,
        "role": key.role,
        "created_at": key.created_at,
        "last_used_at": key.last_used_at,
    }


@router.post("", status_code=201, response_model=ApiKeyCreated)
def create_api_key(
    body: ApiKeyCreate, caller: Caller, services: ServicesDep, response: Response
) -> dict[str, Any]:
    """Create a key of the caller's tenant (admin). The key is in this response only.

    403 ``permission_denied`` unless the caller is an admin (or a platform key, the only kind
    that may create platform keys); 422 for an unknown role or an empty name.
    """
    record, secret = issue_api_key(services.access, caller, body.role, body.name)
    response.headers["Cache-Control"] = "no-store"
    return {**api_key_body(record), "key": secret}


@router.get("", response_model=ApiKeyList)
def list_keys(
    caller: Caller,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """The tenant's keys that are not revoked, oldest first (admin). Never the keys themselves."""
    return {"data": [api_key_body(key) for key in list_api_keys(services.access, caller, limit)]}


@router.delete("/{key_id}", status_code=204, response_class=Response)
def revoke_key(key_id: UUID, caller: Caller, services: ServicesDep) -> Response:
    """Revoke a key (admin): requests with it get 401 from now on.

    404 ``api_key_not_found`` for an unknown, already revoked or other tenant's key.
    """
    revoke_api_key(services.access, caller, key_id)
    return Response(status_code=204)
