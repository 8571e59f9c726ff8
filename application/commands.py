"""The command plumbing every capability shares: unit of work, idempotency, positions.

A command is a frozen dataclass of its typed input. ``LedgerBase.run`` executes it:

- a *single-step* command (``prepare`` only) saves its aggregates and, under an idempotency key,
  the record with its result, in one transaction;
- a *two-step* command (``prepare`` then ``finish``) calls the outside world between the steps.
  ``prepare`` records the intent (and claims the key, *in progress*) in one transaction; ``finish``
  calls the gateway with the intent's id as the gateway's idempotency key and records the outcome
  (completing the record) in a second one. A duplicate of a claimed key gets
  ``IdempotencyKeyInProgress``, unless the first request can no longer be running (its outcome
  was recorded as unknown, or its claim is older than ``CLAIM_LEASE_S``): then the duplicate
  finishes the command itself, with the same gateway idempotency key, so nothing moves twice.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID, uuid4

from eventsourcing.application import (
    AggregateNotFoundError,
    Application,
    Repository,
    project_aggregate,
)
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError
from eventsourcing.utils import EnvType, get_topic, resolve_topic

from application.idempotency import (
    IdempotencyKeyInProgress,
    IdempotencyKeyReused,
    IdempotencyRecord,
    fingerprint,
    idempotency_record_id,
    validate_key,
)
from application.ports import PaymentGateway, Vault
from domain.errors import DomainError, NotFound

TAggregate = TypeVar("TAggregate", bound=Aggregate)

# A gateway call times out well within this; a claim older than it has no live request behind it.
CLAIM_LEASE_S = 60.0
# Once the gateway has answered, its outcome must be saved: a concurrent change of the same
# aggregate (another refund of the order) is met by finishing again, with the same gateway key.
OUTCOME_SAVE_ATTEMPTS = 5


class ConcurrentModification(DomainError):
    """Another command changed the same aggregate first; the caller may retry."""

    code = "concurrent_modification"


class GatewayOutcomeUnknown(DomainError):
    """The gateway did not answer; the attempt is recorded with an unknown outcome.

    ``idempotency_key`` is the key that finishes the command when sent again: the caller's, or
    the one generated for a request that came without one.
    """

    code = "gateway_outcome_unknown"

    def __init__(self, message: str, *, idempotency_key: str) -> None:
        super().__init__(message, param="Idempotency-Key")
        self.idempotency_key = idempotency_key


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What a command returns: the body, the log position of its write, and whether replayed."""

    body: dict[str, Any]
    position: int | None
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class Step:
    """What one step of a command decided: aggregates to save and the body to answer with.

    ``resume`` (from ``prepare`` of a two-step command) holds the ids ``finish`` needs.
    ``complete`` is False when ``finish`` could not learn the outcome: the key stays claimed so
    a retry with it finishes the command.
    """

    aggregates: list[Aggregate]
    body: dict[str, Any]
    resume: dict[str, Any] | None = None
    complete: bool = True
    # A refusal to report instead of the body (a declined refund); replays report it again.
    error: DomainError | None = None

    @property
    def result(self) -> dict[str, Any]:
        """What the idempotency record keeps: the body, or the error to raise again."""
        if self.error is None:
            return self.body
        error = self.error
        return {
            "error": {
                "topic": get_topic(type(error)),
                "message": error.message,
                "param": error.param,
            }
        }


class ReadAheadRepository(Repository[UUID]):
    """A repository that can serve aggregates read ahead in bulk (``LedgerBase.reading_ahead``):
    inside that block, in its thread, an aggregate read ahead is served once (then read as
    usual), or every time as a copy when it was read ahead as *shared* (a tenant's settings
    many commands consult). A save still checks each aggregate's version, so an aggregate
    changed since it was read ahead is a conflict, never a lost update."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ahead = threading.local()

    def get(self, aggregate_id: UUID, *, version: int | None = None, **kwargs: Any) -> Any:
        ahead: dict[UUID, tuple[Any, bool]] | None = getattr(self._ahead, "aggregates", None)
        if ahead is not None and version is None and aggregate_id in ahead:
            aggregate, shared = ahead[aggregate_id]
            if not shared:
                del ahead[aggregate_id]
            if aggregate is None:
                raise AggregateNotFoundError(aggregate_id)
            return copy.deepcopy(aggregate) if shared else aggregate
        return super().get(aggregate_id, version=version, **kwargs)


Prepare = Callable[[], Step]
Finish = Callable[[dict[str, Any], bool], Step]


class LedgerBase(Application[UUID]):
    """The eventsourcing Application that every capability's commands run in (one log)."""

    name = "Ledger"

    def __init__(
        self,
        env: EnvType | None = None,
        *,
        vault: Vault,
        gateway: PaymentGateway,
        fingerprint_secret: bytes,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__(env)
        self.vault = vault
        self.gateway = gateway
        self.fingerprint_secret = fingerprint_secret
        self.now = now

    def construct_repository(self) -> Repository[UUID]:
        repository = super().construct_repository()
        return ReadAheadRepository(
            event_store=repository.event_store,
            snapshot_store=repository.snapshot_store,
        )

    @contextmanager
    def reading_ahead(self) -> Iterator[None]:
        """A block in which ``read_ahead`` aggregates are served from memory (this thread)."""
        repository = self.repository
        assert isinstance(repository, ReadAheadRepository)
        repository._ahead.aggregates = {}
        try:
            yield
        finally:
            repository._ahead.aggregates = None

    def read_ahead(self, ids: Iterable[UUID], *, shared: bool = False) -> dict[UUID, Any]:
        """Read these aggregates in one round trip (where the recorder can), for the commands
        of the enclosing ``reading_ahead`` block; returns them (None: no such aggregate)."""
        ids = list(dict.fromkeys(ids))
        bulk = getattr(self.recorder, "select_events_of", None)
        stored: dict[UUID, list[Any]] = {aggregate_id: [] for aggregate_id in ids}
        if bulk is not None:
            for event in bulk(ids):
                stored[event.originator_id].append(event)
        else:
            for aggregate_id in ids:
                stored[aggregate_id] = list(self.recorder.select_events(aggregate_id))
        found: dict[UUID, Any] = {}
        for aggregate_id, events in stored.items():
            found[aggregate_id] = project_aggregate(
                None, (self.mapper.to_domain_event(event) for event in events)
            )
        ahead = getattr(self.repository._ahead, "aggregates", None)  # type: ignore[attr-defined]
        if ahead is not None:
            ahead.update({key: (value, shared) for key, value in found.items()})
        return found

    def run(
        self,
        tenant_id: str,
        idempotency_key: str | None,
        command: Any,
        prepare: Prepare,
        finish: Finish | None = None,
    ) -> CommandResult:
        """Run ``command`` once per idempotency key.

        ``finish(resume, first)`` is told whether it runs right after ``prepare`` (``first``: the
        aggregates ``prepare`` saved are current and need not be loaded again) or takes over a
        claim left by an earlier request. Raises what the steps raise,
        ``IdempotencyKeyReused``, ``IdempotencyKeyInProgress``, ``InvalidIdempotencyKey``,
        ``ConcurrentModification``, ``GatewayOutcomeUnknown``.
        """
        if idempotency_key is None:
            if finish is None:
                step = prepare()
                return CommandResult(step.body, self.save_all(step.aggregates))
            # A call to the outside world always claims a key, so a lost answer can be learnt by
            # sending the request again with it (the 502 names it).
            idempotency_key = "auto_" + uuid4().hex
            digest = fingerprint(self.fingerprint_secret, command)
        else:
            validate_key(idempotency_key)
            digest = fingerprint(self.fingerprint_secret, command)
            record = self._idempotency_record(tenant_id, idempotency_key, digest)
            if record is not None:
                return self._answer_from(record, finish)
        step = prepare()
        record = IdempotencyRecord(
            tenant_id=tenant_id,
            key=idempotency_key,
            fingerprint=digest,
            result=step.result if finish is None else None,
            resume=step.resume,
        )
        try:
            position = self.save_all([*step.aggregates, record])
        except ConcurrentModification:
            self.abandoned(step.aggregates)  # nothing of this step was saved
            # A concurrent request with the same key may have won the race: answer as it did.
            winner = self._idempotency_record(tenant_id, idempotency_key, digest)
            if winner is None:
                raise
            return self._answer_from(winner, None)
        if finish is None:
            return CommandResult(step.body, position)
        return self._finish(finish, step.resume or {}, True, record)

    def _answer_from(self, record: IdempotencyRecord, finish: Finish | None) -> CommandResult:
        if record.result is not None and "error" in record.result:
            error = record.result["error"]
            raise resolve_topic(error["topic"])(error["message"], param=error["param"])
        if record.result is not None:
            # Any position at or after the original write is a safe read-your-writes fence.
            return CommandResult(record.result, self.recorder.max_notification_id(), replayed=True)
        if finish is None or not self._claim_expired(record):
            raise IdempotencyKeyInProgress(
                "a request with this idempotency key is still in progress; retry later",
                param="Idempotency-Key",
            )
        return self._finish(finish, record.resume or {}, False, record)

    def _claim_expired(self, record: IdempotencyRecord) -> bool:
        age = self.now() - record.created_on
        return age > timedelta(seconds=CLAIM_LEASE_S) or bool(
            record.resume and self.no_longer_in_flight(record.resume)
        )

    def abandoned(self, aggregates: list[Any]) -> None:
        """Undo what preparing ``aggregates`` held outside the event store (a gateway's cap
        reservation): their save was refused, so they never happened."""

    def no_longer_in_flight(self, resume: dict[str, Any]) -> bool:
        """Whether no request can still be running the claimed command: its gateway's answer
        was recorded as lost, or its outcome was recorded elsewhere (by the reconciler) — an
        outcome and its claim's completion are otherwise saved in one transaction."""
        return False

    def _finish(
        self,
        finish: Finish,
        resume: dict[str, Any],
        first: bool,
        record: IdempotencyRecord,
    ) -> CommandResult:
        for _ in range(OUTCOME_SAVE_ATTEMPTS):
            step = finish(resume, first)
            aggregates = list(step.aggregates)
            if step.complete:
                record.complete(step.result)
                aggregates.append(record)
            try:
                position = self.save_all(aggregates)
                break
            except ConcurrentModification:
                winner = self.repository.get(record.id)
                if winner.result is not None:
                    # Another request finished the same claim first (with the same gateway key).
                    return self._answer_from(winner, None)
                # Another command changed the same aggregate meanwhile: load it again and
                # apply the outcome again (the gateway answers the same key the same way).
                record, first = winner, False
        else:
            raise ConcurrentModification("the outcome could not be saved; retry with the same key")
        if not step.complete:
            raise GatewayOutcomeUnknown(
                "the payment gateway did not answer; the outcome is recorded as unknown. "
                "Retry with the same Idempotency-Key to learn it",
                idempotency_key=record.key,
            )
        if step.error is not None:
            raise step.error
        return CommandResult(step.body, position)

    def _idempotency_record(
        self, tenant_id: str, key: str, digest: str
    ) -> IdempotencyRecord | None:
        try:
            record = self.repository.get(idempotency_record_id(tenant_id, key))
        except AggregateNotFoundError:
            return None
        if not isinstance(record, IdempotencyRecord) or record.fingerprint != digest:
            raise IdempotencyKeyReused(
                "this idempotency key was used with a different request",
                param="Idempotency-Key",
            )
        return record

    def save_all(self, aggregates: list[Aggregate]) -> int | None:
        """Save in one transaction; return the log position of the last event written."""
        try:
            recordings = self.save(*aggregates)
        except IntegrityError:
            raise ConcurrentModification(
                "another request changed this resource at the same time; retry"
            ) from None
        return max(
            (r.notification.id for r in recordings if r.notification.id is not None),
            default=None,
        )

    def get_owned(
        self,
        aggregate_class: type[TAggregate],
        tenant_id: str,
        aggregate_id: UUID,
        not_found: type[NotFound],
    ) -> TAggregate:
        """Load an aggregate of this tenant; another tenant's is reported as not found."""
        noun = aggregate_class.__name__.lower()
        try:
            aggregate = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            raise not_found(f"no {noun} with this id", param=f"{noun}_id") from None
        if not isinstance(aggregate, aggregate_class) or aggregate.tenant_id != tenant_id:
            raise not_found(f"no {noun} with this id", param=f"{noun}_id")
        return aggregate
