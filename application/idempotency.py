"""Idempotency records: a caller's key claimed for one command, then its first result.

A record is an aggregate whose id is derived from (tenant, key). A command that needs no outside
call saves its record, with its result, in the same transaction as its events. A command that
calls a gateway saves the record *in progress* with its intent (the claim), calls the gateway,
then completes the record with the outcome. A concurrent duplicate collides on the record's first
version, so the same key never runs a command twice: it is answered from the record, or told the
first request is still in progress.

The fingerprint is a keyed hash of the command's typed input (every field of the command's
dataclass except those marked ``secret``), so no field can be left out by hand.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.errors import DomainError

IDEMPOTENCY_KEY_LENGTH_MAX = 255


class IdempotencyKeyReused(DomainError):
    """The same key was sent before with a different command or input."""

    code = "idempotency_key_reused"


class IdempotencyKeyInProgress(DomainError):
    """The first request with this key is still running; retry once it has answered."""

    code = "idempotency_key_in_progress"


class InvalidIdempotencyKey(DomainError):
    code = "invalid_idempotency_key"


def secret_field(**kwargs: Any) -> Any:
    """A command field left out of the fingerprint (card numbers, security codes)."""
    return dataclasses.field(metadata={"secret": True}, **kwargs)


def idempotency_record_id(tenant_id: str, key: str) -> UUID:
    return uuid5(NAMESPACE_URL, f"ledger:idempotency:{tenant_id}:{key}")


def fingerprint(secret: bytes, command: Any) -> str:
    """A keyed hash of a command dataclass's name and non-secret fields.

    The canonical form is the standard library's JSON with sorted keys: it takes integers of
    any size, so no input can break the hash.
    """
    fields = {
        field.name: getattr(command, field.name)
        for field in dataclasses.fields(command)
        if not field.metadata.get("secret")
        # A field added later, left unset: requests from before it keep their fingerprint.
        and not (field.metadata.get("added") and getattr(command, field.name) is None)
    }
    canonical = json.dumps(
        {"command": type(command).__name__, "input": fields},
        sort_keys=True,
        default=str,
        separators=(",", ":"),
    )
    return hmac.new(secret, canonical.encode(), hashlib.sha256).hexdigest()


def added_field(**kwargs: Any) -> Any:
    """A command field added after keys were recorded: left None, it is not fingerprinted."""
    return dataclasses.field(default=None, metadata={"added": True}, **kwargs)


def validate_key(key: str) -> str:
    if (
        not key
        or len(key) > IDEMPOTENCY_KEY_LENGTH_MAX
        or not (key.isascii() and key.isprintable())
    ):
        raise InvalidIdempotencyKey(
            f"an idempotency key has 1 to {IDEMPOTENCY_KEY_LENGTH_MAX} printable ASCII characters",
            param="Idempotency-Key",
        )
    return key


class IdempotencyRecord(Aggregate):
    """The claim of one key and, once known, the remembered outcome of its command."""

    class Recorded(Aggregate.Created):
        """Version 2 adds ``resume``: what a second request needs to finish a claimed command."""

        class_version = 2
        tenant_id: str
        key: str
        fingerprint: str
        result: dict[str, Any] | None
        resume: dict[str, Any] | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["resume"] = None

    @staticmethod
    def create_id(tenant_id: str, key: str) -> UUID:
        return idempotency_record_id(tenant_id, key)

    @event(Recorded)
    def __init__(
        self,
        *,
        tenant_id: str,
        key: str,
        fingerprint: str,
        result: dict[str, Any] | None,
        resume: dict[str, Any] | None,
    ):
        self.tenant_id = tenant_id
        self.key = key
        self.fingerprint = fingerprint
        self.result = result
        self.resume = resume

    @property
    def in_progress(self) -> bool:
        return self.result is None

    def complete(self, result: dict[str, Any]) -> None:
        self._completed(result=result)

    @event("Completed")
    def _completed(self, *, result: dict[str, Any]) -> None:
        self.result = result
