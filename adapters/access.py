"""Tenants and API keys in PostgreSQL. Keys are random; only their SHA-256 digests are stored.

Authentication is on every request, so it is answered from memory: the digests of the
unrevoked keys are loaded on first use, an unknown digest is looked up once and remembered as
unknown (in a bounded set), and both are kept only while this process listens to the schema's
keys channel. A key's creation and revocation notify that channel in their own transaction, so
every process forgets the key when the change commits; a lost LISTEN connection switches the
cache off until it is re-established (notifications sent meanwhile are lost), and each
(re)connection starts it empty. A request's use of a key is remembered in memory and written to
``last_used_at`` by a background flush, never on the request path.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import threading
from collections import OrderedDict
from uuid import UUID, uuid4

from eventsourcing.postgres import PostgresDatastore
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed, Identifier

from application.access import ROLES, ApiKey, InvalidRole, InvalidTenantId, Principal
from projections.base import schema_channel

logger = logging.getLogger(__name__)

_TENANT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
KEY_PREFIX = "lk_"
KEYS_CHANNEL_PREFIX = "ledger_keys"
# Digests remembered as unknown: enough for every mistyped or stale key of real clients, and a
# flood of random keys only evicts the oldest (each costs one lookup).
UNKNOWN_DIGESTS_MAX = 10_000
LAST_USED_FLUSH_INTERVAL_S = 5.0


def digest(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


class AccessStore:
    """Tenants and API keys in PostgreSQL: the ``AccessControl`` of the application."""

    def __init__(
        self,
        datastore: PostgresDatastore,
        *,
        last_used_flush_interval_s: float = LAST_USED_FLUSH_INTERVAL_S,
    ) -> None:
        self.datastore = datastore
        self.channel = schema_channel(KEYS_CHANNEL_PREFIX, datastore.schema or "public")
        self._lock = threading.Lock()
        self._caching = False  # only while the keys channel is listened to
        self._generation = 0  # bumped by every invalidation; a lookup older than it is dropped
        self._principals: dict[str, tuple[UUID, Principal]] | None = None  # None: not loaded
        self._unknown: OrderedDict[str, None] = OrderedDict()
        self._used: set[UUID] = set()
        self._flush_interval_s = last_used_flush_interval_s
        self._flusher: threading.Thread | None = None
        self._stopping = threading.Event()

    def _table(self, name: str) -> Composed:
        return SQL("{}.{}").format(Identifier(self.datastore.schema or "public"), Identifier(name))

    def create_tables(self) -> None:
        keys = self._table("ledger_api_keys")
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
                ).format(keys)
            )
            # Columns added after the first release: tables of earlier versions gain them here.
            for column in (
                "id uuid NOT NULL DEFAULT gen_random_uuid()",
                "name text NOT NULL DEFAULT ''",
                "last_used_at timestamptz",
            ):
                curs.execute(SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS " + column).format(keys))
            curs.execute(
                SQL("CREATE UNIQUE INDEX IF NOT EXISTS ledger_api_keys_id ON {} (id)").format(keys)
            )
            curs.execute(
                SQL(
                    "CREATE INDEX IF NOT EXISTS ledger_api_keys_tenant"
                    " ON {} (tenant_id, created_at)"
                ).format(keys)
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

    def create_key(
        self, tenant_id: str, role: str, api_key: str | None = None, *, name: str = ""
    ) -> str:
        """Store a key for ``tenant_id`` (creating the tenant if absent); return the key.

        Storing an existing key again is a no-op (so a bootstrap key is idempotent).
        Raises ``InvalidRole``, ``InvalidTenantId``.
        """
        _check_role(role)
        self.create_tenant(tenant_id)
        api_key = api_key or _new_key()
        self._insert(tenant_id, role, name, api_key)
        return api_key

    def issue_key(self, tenant_id: str, role: str, name: str) -> tuple[ApiKey, str]:
        """A new random key of an existing tenant: its record and secret. Raises ``InvalidRole``."""
        _check_role(role)
        api_key = _new_key()
        record = self._insert(tenant_id, role, name, api_key)
        assert record is not None, "a new random key cannot already exist"
        return record, api_key

    def list_keys(self, tenant_id: str, limit: int) -> list[ApiKey]:
        """The tenant's keys that are not revoked, oldest first (with this process's last uses)."""
        self.flush_last_used()
        with self.datastore.cursor() as curs:
            curs.execute(
                SQL(
                    "SELECT " + _KEY_COLUMNS + " FROM {} WHERE tenant_id = %s"
                    " AND revoked_at IS NULL ORDER BY created_at, id LIMIT %s"
                ).format(self._table("ledger_api_keys")),
                (tenant_id, limit),
            )
            return [ApiKey(**row) for row in curs.fetchall()]

    def revoke_key(self, key_id: UUID, tenant_id: str | None = None) -> bool:
        """Revoke a key (of ``tenant_id`` if given); False if there is no such unrevoked key."""
        # Without a tenant (the operator's ``ledger keys revoke``), any tenant's key.
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL(
                    "UPDATE {} SET revoked_at = now() WHERE id = %s AND revoked_at IS NULL"
                    " AND (%s::text IS NULL OR tenant_id = %s) RETURNING key_digest"
                ).format(self._table("ledger_api_keys")),
                (key_id, tenant_id, tenant_id),
            )
            row = curs.fetchone()
            if row is None:
                return False
            self._notify(curs, row["key_digest"])
        self.on_notify(row["key_digest"])  # at once here, without waiting for the notification
        return True

    def authenticate(self, api_key: str) -> Principal | None:
        """The principal of an unrevoked key: from memory when cached, else from the database."""
        known, principal = self.authenticate_cached(api_key)
        if known:
            return principal
        key_digest = digest(api_key)
        with self._lock:
            caching, generation, loaded = (
                self._caching,
                self._generation,
                self._principals is not None,
            )
        if caching and not loaded:
            self._load(generation)
            known, principal = self.authenticate_cached(api_key)
            if known:
                return principal
        found = self._read_key(key_digest)
        if caching:
            self._remember(key_digest, found, generation)
        if found is None:
            return None
        self._used.add(found[0])
        self._start_flusher()
        return found[1]

    def authenticate_cached(self, api_key: str) -> tuple[bool, Principal | None]:
        """``(True, principal or None)`` when memory answers; ``(False, None)`` when only the
        database can (call ``authenticate``). Never does I/O, so it may run on an event loop."""
        key_digest = digest(api_key)
        principals = self._principals
        if not self._caching or principals is None:
            return False, None
        entry = principals.get(key_digest)
        if entry is not None:
            self._used.add(entry[0])
            self._start_flusher()
            return True, entry[1]
        if key_digest in self._unknown:
            return True, None
        return False, None

    # The cache ---------------------------------------------------------------------------------

    def start_caching(self) -> None:
        """Cache from now on, from empty (on each connection of the LISTEN connection)."""
        self._invalidate(None, caching=True)

    def stop_caching(self) -> None:
        """Read every key from the database (the LISTEN connection is lost)."""
        self._invalidate(None, caching=False)

    def on_notify(self, payload: str = "") -> None:
        """A key was created or revoked: forget its digest (all digests without a payload)."""
        self._invalidate(payload or None, caching=None)

    def _invalidate(self, key_digest: str | None, *, caching: bool | None) -> None:
        with self._lock:
            self._generation += 1
            if caching is not None:
                self._caching = caching
            if key_digest is None:
                self._principals = None
                self._unknown = OrderedDict()
                return
            if self._principals is not None:
                principals = dict(self._principals)  # readers see the old or the new dict
                principals.pop(key_digest, None)
                self._principals = principals
            self._unknown.pop(key_digest, None)

    def _load(self, generation: int) -> None:
        with self.datastore.cursor() as curs:
            curs.execute(
                SQL(
                    "SELECT key_digest, id, tenant_id, role FROM {} WHERE revoked_at IS NULL"
                ).format(self._table("ledger_api_keys"))
            )
            principals = {
                row["key_digest"]: (row["id"], Principal(row["tenant_id"], row["role"]))
                for row in curs.fetchall()
            }
        with self._lock:
            if self._caching and self._generation == generation:
                self._principals = principals

    def _read_key(self, key_digest: str) -> tuple[UUID, Principal] | None:
        with self.datastore.cursor() as curs:
            curs.execute(
                SQL(
                    "SELECT id, tenant_id, role FROM {} WHERE key_digest = %s"
                    " AND revoked_at IS NULL"
                ).format(self._table("ledger_api_keys")),
                (key_digest,),
            )
            row = curs.fetchone()
        return (row["id"], Principal(row["tenant_id"], row["role"])) if row else None

    def _remember(
        self, key_digest: str, found: tuple[UUID, Principal] | None, generation: int
    ) -> None:
        """Cache a lookup unless the keys changed since it began (it may predate the change)."""
        with self._lock:
            if not self._caching or self._generation != generation or self._principals is None:
                return
            if found is not None:
                self._principals = {**self._principals, key_digest: found}
                return
            self._unknown[key_digest] = None
            if len(self._unknown) > UNKNOWN_DIGESTS_MAX:
                self._unknown.popitem(last=False)

    # Last use ----------------------------------------------------------------------------------

    def flush_last_used(self) -> None:
        """Write the keys used since the last flush; a key's time moves at most once a minute,
        so a busy key does not rewrite its row every flush."""
        used, self._used = self._used, set()
        if not used:
            return
        with self.datastore.cursor() as curs:
            curs.execute(
                SQL(
                    "UPDATE {} SET last_used_at = now() WHERE id = ANY(%s)"
                    " AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')"
                ).format(self._table("ledger_api_keys")),
                (list(used),),
            )

    def close(self) -> None:
        """Stop the background flush, writing what it has not written yet."""
        self._stopping.set()
        if self._flusher is not None:
            self._flusher.join(timeout=5)
            self._flusher = None
        try:
            self.flush_last_used()
        except Exception:  # a last use lost on shutdown is no reason to fail it
            logger.warning("could not write the last use of API keys", exc_info=True)

    def _start_flusher(self) -> None:
        if self._flusher is not None or self._stopping.is_set():
            return
        with self._lock:
            if self._flusher is None:
                self._flusher = threading.Thread(
                    target=self._flush_periodically, name="api-key-last-used", daemon=True
                )
                self._flusher.start()

    def _flush_periodically(self) -> None:
        while not self._stopping.wait(self._flush_interval_s):
            try:
                self.flush_last_used()
            except Exception:  # PostgreSQL away: the uses are written by a later flush
                logger.warning("could not write the last use of API keys", exc_info=True)

    def _insert(self, tenant_id: str, role: str, name: str, api_key: str) -> ApiKey | None:
        """Insert a key; None if it already exists."""
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL(
                    "INSERT INTO {} (id, key_digest, tenant_id, role, name)"
                    " VALUES (%s, %s, %s, %s, %s)"
                    " ON CONFLICT (key_digest) DO NOTHING RETURNING " + _KEY_COLUMNS
                ).format(self._table("ledger_api_keys")),
                (uuid4(), digest(api_key), tenant_id, role, name),
            )
            row = curs.fetchone()
            if row is not None:
                self._notify(curs, digest(api_key))
        if row is not None:
            self.on_notify(digest(api_key))
        return ApiKey(**row) if row else None

    def _notify(self, curs: Cursor[DictRow], key_digest: str) -> None:
        """Tell every process (when this transaction commits) to forget what it knows of a key."""
        curs.execute("SELECT pg_notify(%s, %s)", (self.channel, key_digest))


_KEY_COLUMNS = "id, tenant_id, name, role, created_at, last_used_at"


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise InvalidRole(f"a role is one of {', '.join(ROLES)}", param="role")


def _new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)
