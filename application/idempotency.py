"""Idempotency records: the first result of a command, kept under the caller's key.

A record is an aggregate whose id is derived from (tenant, key), saved in the same transaction
as the command's events. A concurrent duplicate therefore collides on the record's first version
and is answered from the winner's record: the same key never runs a command twice.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

import orjson
from eventsourcing.domain import Aggregate, event

from domain.errors import DomainError

IDEMPOTENCY_KEY_LENGTH_MAX = 255


class IdempotencyKeyReused(DomainError):
    """The same key was sent before with a different command or input."""

    code = "idempotency_key_reused"


class InvalidIdempotencyKey(DomainError):
    code = "invalid_idempotency_key"


def idempotency_record_id(tenant_id: str, key: str) -> UUID:
    return uuid5(NAMESPACE_URL, f"ledger:idempotency:{tenant_id}:{key}")


def fingerprint(secret: bytes, command: str, params: dict[str, Any]) -> str:
    """A keyed hash of the command and its input, so the stored value reveals nothing."""
    canonical = orjson.dumps({"command": command, "params": params}, option=orjson.OPT_SORT_KEYS)
    return hmac.new(secret, canonical, hashlib.sha256).hexdigest()


def validate_key(key: str) -> str:
    if not key or len(key) > IDEMPOTENCY_KEY_LENGTH_MAX or not key.isprintable():
        raise InvalidIdempotencyKey(
            f"an idempotency key has 1 to {IDEMPOTENCY_KEY_LENGTH_MAX} printable characters",
            param="Idempotency-Key",
        )
    return key


class IdempotencyRecord(Aggregate):
    """The remembered outcome of one keyed command."""

    @staticmethod
    def create_id(tenant_id: str, key: str) -> UUID:
        return idempotency_record_id(tenant_id, key)

    @event("Recorded")
    def __init__(self, *, tenant_id: str, key: str, fingerprint: str, result: dict[str, Any]):
        self.tenant_id = tenant_id
        self.key = key
        self.fingerprint = fingerprint
        self.result = result
