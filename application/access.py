"""Who may do what: tenants, roles and the principal behind an API key."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from uuid import UUID

from domain.errors import DomainError, InvalidInput, NotFound

# Roles, most powerful first. ``platform`` keys manage tenants and nothing tenant-scoped.
ROLES = ("platform", "admin", "manager", "agent", "auditor", "readonly")
COMMAND_ROLES = frozenset({"admin", "manager", "agent"})
READ_ROLES = frozenset({"admin", "manager", "agent", "auditor", "readonly"})
# Who manages the API keys of their own tenant. Only a platform key may issue platform keys.
KEY_MANAGER_ROLES = frozenset({"platform", "admin"})


class InvalidRole(InvalidInput):
    code = "invalid_role"


class InvalidTenantId(InvalidInput):
    code = "invalid_tenant_id"


class TenantAlreadyExists(DomainError):
    code = "tenant_exists"


class PermissionDenied(DomainError):
    code = "permission_denied"


class ApiKeyNotFound(NotFound):
    code = "api_key_not_found"


@dataclass(frozen=True, slots=True)
class Principal:
    tenant_id: str
    role: str

    def require(self, allowed: frozenset[str]) -> None:
        """Raises ``PermissionDenied`` unless this principal's role is allowed."""
        if self.role not in allowed:
            raise PermissionDenied(f"the {self.role} role may not do this")


@dataclass(frozen=True, slots=True)
class ApiKey:
    """What is known of an API key besides its secret (of which only a digest is stored)."""

    id: UUID
    tenant_id: str
    name: str
    role: str
    created_at: datetime
    last_used_at: datetime | None


class AccessControl(Protocol):
    """Tenants and their API keys (implemented in ``adapters.access``)."""

    def authenticate(self, api_key: str) -> Principal | None: ...

    def authenticate_cached(self, api_key: str) -> tuple[bool, Principal | None]:
        """``(True, principal or None)`` if answered without I/O, else ``(False, None)``."""
        ...

    def create_tenant(self, tenant_id: str, name: str | None = None) -> bool: ...

    def create_key(
        self, tenant_id: str, role: str, api_key: str | None = None, *, name: str = ""
    ) -> str: ...

    def issue_key(self, tenant_id: str, role: str, name: str) -> tuple[ApiKey, str]: ...

    def list_keys(self, tenant_id: str, limit: int) -> list[ApiKey]: ...

    def revoke_key(self, key_id: UUID, tenant_id: str | None = None) -> bool: ...


def issue_api_key(
    access: AccessControl, principal: Principal, role: str, name: str
) -> tuple[ApiKey, str]:
    """A new key of the caller's tenant, and its secret (shown once, never stored).

    Raises ``PermissionDenied`` (the caller does not manage keys, or asks for a platform key
    without being one), ``InvalidRole``.
    """
    principal.require(KEY_MANAGER_ROLES)
    if role == "platform" and principal.role != "platform":
        raise PermissionDenied("only a platform key may create platform keys", param="role")
    return access.issue_key(principal.tenant_id, role, name)


def list_api_keys(access: AccessControl, principal: Principal, limit: int) -> list[ApiKey]:
    """The unrevoked keys of the caller's tenant, oldest first. Raises ``PermissionDenied``."""
    principal.require(KEY_MANAGER_ROLES)
    return access.list_keys(principal.tenant_id, limit)


def revoke_api_key(access: AccessControl, principal: Principal, key_id: UUID) -> None:
    """Revoke a key of the caller's tenant; it fails authentication from now on.

    Raises ``PermissionDenied``, ``ApiKeyNotFound`` (unknown, already revoked, or another
    tenant's).
    """
    principal.require(KEY_MANAGER_ROLES)
    if not access.revoke_key(key_id, principal.tenant_id):
        raise ApiKeyNotFound("no API key with this id", param="id")
