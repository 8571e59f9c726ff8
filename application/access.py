"""Who may do what: tenants, roles and the principal behind an API key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from domain.errors import DomainError, InvalidInput

# Roles, most powerful first. ``platform`` keys manage tenants and nothing tenant-scoped.
ROLES = ("platform", "admin", "manager", "agent", "auditor", "readonly")
COMMAND_ROLES = frozenset({"admin", "manager", "agent"})
READ_ROLES = frozenset({"admin", "manager", "agent", "auditor", "readonly"})


class InvalidRole(InvalidInput):
    code = "invalid_role"


class InvalidTenantId(InvalidInput):
    code = "invalid_tenant_id"


class TenantAlreadyExists(DomainError):
    code = "tenant_exists"


class PermissionDenied(DomainError):
    code = "permission_denied"


@dataclass(frozen=True, slots=True)
class Principal:
    tenant_id: str
    role: str

    def require(self, allowed: frozenset[str]) -> None:
        """Raises ``PermissionDenied`` unless this principal's role is allowed."""
        if self.role not in allowed:
            raise PermissionDenied(f"the {self.role} role may not do this")


class AccessStore(Protocol):
    def authenticate(self, api_key: str) -> Principal | None: ...

    def create_tenant(self, tenant_id: str, name: str | None = None) -> bool: ...

    def create_key(self, tenant_id: str, role: str, api_key: str | None = None) -> str: ...
