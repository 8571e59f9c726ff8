"""Tenants and API keys in PostgreSQL. Keys are random; only their SHA-256 digests are stored."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from eventsourcing.postgres import PostgresDatastore
from psycopg.sql import SQL, Composed, Identifier

from application.access import ROLES, InvalidRole, InvalidTenantId, Principal

_TENANT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
KEY_PREFIX = "lk_"


def digest(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


@dataclass
class AccessStore:
    datastore: PostgresDatastore

    def _table(self, name: str) -> Composed:
        return SQL("{}.{}").format(Identifier(self.datastore.schema or "public"), Identifier(name))

    def create_tables(self) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL(
                    "CREATE TABLE IF NOT EXISTS {} (tenant_id text PRIMARY KEY, name text NOT NULL,"
                    " created_at timestamptz NOT NULL DEFAULT now())"
                ).format(self._table("ledger_tenants"))
            )
            curs.execute(
                SQL(
                    "CREATE TABLE IF NOT EXISTS {} (key_digest text PRIMARY KEY,"
                    " tenant_id text NOT NULL, role text NOT NULL,"
                    " created_at timestamptz NOT NULL DEFAULT now(), revoked_at timestamptz)"
                ).format(self._table("ledger_api_keys"))
            )

    def create_tenant(self, tenant_id: str, name: str | None = None) -> bool:
        """Create a tenant; False if it already existed. Raises ``InvalidTenantId``."""
        if not _TENANT_ID.match(tenant_id):
            raise InvalidTenantId(
                "a tenant id has 1 to 63 lowercase letters, digits, '-' or '_'", param="id"
            )
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL(
                    "INSERT INTO {} (tenant_id, name) VALUES (%s, %s) ON CONFLICT DO NOTHING"
                ).format(self._table("ledger_tenants")),
                (tenant_id, name or tenant_id),
            )
            return curs.rowcount == 1

    def tenant_exists(self, tenant_id: str) -> bool:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL("SELECT 1 FROM {} WHERE tenant_id = %s").format(self._table("ledger_tenants")),
                (tenant_id,),
            )
            return curs.fetchone() is not None

    def create_key(self, tenant_id: str, role: str, api_key: str | None = None) -> str:
        """Store a key for ``tenant_id`` (creating the tenant if absent); return the key.

        Storing an existing key again is a no-op (so a bootstrap key is idempotent).
        Raises ``InvalidRole``, ``InvalidTenantId``.
        """
        if role not in ROLES:
            raise InvalidRole(f"a role is one of {', '.join(ROLES)}", param="role")
        self.create_tenant(tenant_id)
        api_key = api_key or KEY_PREFIX + secrets.token_urlsafe(32)
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL(
                    "INSERT INTO {} (key_digest, tenant_id, role) VALUES (%s, %s, %s)"
                    " ON CONFLICT (key_digest) DO NOTHING"
                ).format(self._table("ledger_api_keys")),
                (digest(api_key), tenant_id, role),
            )
        return api_key

    def authenticate(self, api_key: str) -> Principal | None:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL(
                    "SELECT tenant_id, role FROM {} WHERE key_digest = %s AND revoked_at IS NULL"
                ).format(self._table("ledger_api_keys")),
                (digest(api_key),),
            )
            row = curs.fetchone()
        return Principal(tenant_id=row["tenant_id"], role=row["role"]) if row else None
