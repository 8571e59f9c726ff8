"""Reconciliation of our gateway calls with the processor's own books: the pure comparison.

Two sides of one day. *Ours*: every call we asked a processor to make — purchases and
authorizations (the payment attempt's id is the processor's idempotency key), captures, voids and
refunds (the operation's or refund's id is the key) — with the state our events give it. *Theirs*:
every transaction the processor says it executed, carrying the key we sent. ``compare`` pairs them
by key and puts each pair in one class:

- ``matched``: same kind, amount, currency and a final state both sides agree on;
- ``missing_ours``: the processor charged (or refunded…) and we have no record, or only an
  unknown (or still requested) outcome;
- ``missing_processor``: we have a call the processor has no transaction for;
- ``amount_mismatch``: the amount or the currency differs (a void moves no amount of its own);
- ``state_mismatch``: the kinds differ, or the outcomes differ in any other way.

An item is *settleable* when our side only lacks what the processor knows: our outcome is unknown
or still requested and the processor's is final (succeeded or declined), for the same amount and
kind. Settling is the existing command that repeats the call with its own key and records the
processor's answer; this module only says which items qualify.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any
from uuid import UUID

from domain.order import Order

# Our words for a call's kind and state; processors' words are mapped to these by their adapters.
ATTEMPT_KINDS = frozenset({"purchase", "authorize"})
FOLLOW_UP_KINDS = frozenset({"capture", "void", "refund"})
FINAL_STATES = frozenset({"succeeded", "declined"})
# Ours only: the call went out and its answer was lost, or it is still in flight.
OPEN_STATES = frozenset({"requested", "unknown"})
# Theirs only: the processor has not decided yet (Spreedly's result_unknown, pending).
PROCESSOR_PENDING = "pending"


class ReconciliationClass(str, Enum):
    MATCHED = "matched"
    MISSING_OURS = "missing_ours"
    MISSING_PROCESSOR = "missing_processor"
    AMOUNT_MISMATCH = "amount_mismatch"
    STATE_MISMATCH = "state_mismatch"


@dataclass(frozen=True, slots=True)
class ProcessorTransaction:
    """One transaction in a processor's books, in our words.

    ``kind``: purchase, authorize, capture, void or refund. ``state``: succeeded, declined or
    pending. ``idempotency_key``: the key we sent, None for a transaction not made by us (a
    charge made in the processor's dashboard). ``reference``: what we sent as the reference (the
    order id).
    """

    transaction_id: str
    idempotency_key: UUID | None
    kind: str
    amount_minor: int
    currency: str
    state: str
    created_at: datetime
    reference: str
    account_id: str = ""


@dataclass(frozen=True, slots=True)
class RecordedCall:
    """One call we made to a processor, as our events tell it.

    ``state``: requested, unknown, succeeded or declined. ``amount_minor``: 0 for a void.
    """

    key: UUID
    order_id: UUID
    tenant_id: str
    kind: str
    amount_minor: int
    currency: str
    state: str
    requested_at: datetime


@dataclass(frozen=True, slots=True)
class ReconciliationItem:
    classification: ReconciliationClass
    key: UUID | None
    ours: RecordedCall | None
    theirs: ProcessorTransaction | None
    settleable: bool = False

    @property
    def order_id(self) -> UUID | None:
        if self.ours is not None:
            return self.ours.order_id
        try:
            return UUID(self.theirs.reference) if self.theirs is not None else None
        except ValueError:
            return None

    @property
    def kind(self) -> str:
        return self.ours.kind if self.ours is not None else self.theirs.kind  # type: ignore[union-attr]


@dataclass(frozen=True, slots=True)
class ReconciliationResult:
    items: list[ReconciliationItem] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        """Items per class, every class named (zero included)."""
        found = Counter(item.classification.value for item in self.items)
        return {kind.value: found.get(kind.value, 0) for kind in ReconciliationClass}

    @property
    def settleable(self) -> list[ReconciliationItem]:
        return [item for item in self.items if item.settleable]


def compare(
    ours: Iterable[RecordedCall], theirs: Iterable[ProcessorTransaction]
) -> ReconciliationResult:
    """Pair our calls with the processor's transactions by idempotency key and classify each.

    Every call and every transaction ends up in exactly one item; items are in the order of our
    calls, then of the processor's transactions no call of ours names. A key the processor holds
    twice (it should not) pairs with its first transaction; the other is ``missing_ours``.
    """
    by_key: dict[UUID, ProcessorTransaction] = {}
    unpaired: list[ProcessorTransaction] = []
    for transaction in theirs:
        key = transaction.idempotency_key
        if key is None or key in by_key:
            unpaired.append(transaction)
        else:
            by_key[key] = transaction
    items: list[ReconciliationItem] = []
    seen: set[UUID] = set()
    for call in ours:
        if call.key in seen:
            continue  # the same call read twice (two sources of ours): one item
        seen.add(call.key)
        items.append(_pair(call, by_key.pop(call.key, None)))
    items.extend(
        ReconciliationItem(ReconciliationClass.MISSING_OURS, t.idempotency_key, None, t)
        for t in [*by_key.values(), *unpaired]
    )
    return ReconciliationResult(items)


def _pair(ours: RecordedCall, theirs: ProcessorTransaction | None) -> ReconciliationItem:
    if theirs is None:
        return ReconciliationItem(ReconciliationClass.MISSING_PROCESSOR, ours.key, ours, None)
    same_money = ours.kind == "void" or (
        ours.amount_minor == theirs.amount_minor and ours.currency == theirs.currency
    )
    if ours.kind != theirs.kind:
        classification = ReconciliationClass.STATE_MISMATCH
    elif not same_money:
        classification = ReconciliationClass.AMOUNT_MISMATCH
    elif ours.state == theirs.state:
        classification = ReconciliationClass.MATCHED
    elif ours.state in OPEN_STATES and theirs.state == "succeeded":
        classification = ReconciliationClass.MISSING_OURS
    else:
        classification = ReconciliationClass.STATE_MISMATCH
    settleable = (
        classification is not ReconciliationClass.AMOUNT_MISMATCH
        and ours.kind == theirs.kind
        and ours.state in OPEN_STATES
        and theirs.state in FINAL_STATES
    )
    return ReconciliationItem(classification, ours.key, ours, theirs, settleable)


def recorded_calls(events: Sequence[Any]) -> list[RecordedCall]:
    """The gateway calls of one order, from its events (oldest first), in the order requested.

    Orders recorded before payment intents existed have outcomes without a request: the outcome
    stands for both. A refund recorded without a gateway call (no refund id) is not a call.
    """
    if not events or not isinstance(events[0], Order.Placed):
        return []
    placed = events[0]
    calls: dict[UUID, dict[str, Any]] = {}
    pending_capture: UUID | None = None

    def request(key: UUID, kind: str, amount_minor: int | None, at: datetime) -> None:
        calls.setdefault(
            key,
            {
                "key": key,
                "order_id": placed.originator_id,
                "tenant_id": placed.tenant_id,
                "kind": kind,
                "amount_minor": placed.total_minor if amount_minor is None else amount_minor,
                "currency": placed.currency,
                "state": "requested",
                "requested_at": at,
            },
        )

    def resolve(key: UUID, state: str) -> None:
        if key in calls:
            calls[key]["state"] = state

    for e in events[1:]:
        if isinstance(e, Order.PaymentRequested):
            request(e.attempt_id, e.kind, e.amount_minor, e.timestamp)
        elif isinstance(e, Order.PaymentOutcomeUnknown):
            resolve(e.attempt_id, "unknown")
        elif isinstance(e, Order.PaymentAuthorized):
            resolve(e.attempt_id, "succeeded")
        elif isinstance(e, Order.PaymentCaptured):
            if pending_capture is not None:
                resolve(pending_capture, "succeeded")
                pending_capture = None
            else:
                request(e.attempt_id, "purchase", e.amount_minor, e.timestamp)
                resolve(e.attempt_id, "succeeded")
        elif isinstance(e, Order.PaymentDeclined):
            request(e.attempt_id, "purchase", None, e.timestamp)
            resolve(e.attempt_id, "declined")
        elif isinstance(e, Order.CaptureRequested):
            pending_capture = UUID(e.operation_id)
            request(pending_capture, "capture", e.amount_minor, e.timestamp)
        elif isinstance(e, Order.VoidRequested):
            request(UUID(e.operation_id), "void", 0, e.timestamp)
        elif isinstance(e, Order.PaymentVoided):
            resolve(UUID(e.operation_id), "succeeded")
        elif isinstance(e, Order.OperationFailed):
            resolve(UUID(e.operation_id), "declined")
            pending_capture = None
        elif isinstance(e, Order.OperationOutcomeUnknown):
            resolve(UUID(e.operation_id), "unknown")
        elif isinstance(e, Order.RefundRequested):
            request(UUID(e.refund_id), "refund", e.amount_minor, e.timestamp)
        elif isinstance(e, Order.Refunded) and e.refund_id is not None:
            resolve(UUID(e.refund_id), "succeeded")
        elif isinstance(e, Order.RefundFailed):
            resolve(UUID(e.refund_id), "declined")
        elif isinstance(e, Order.RefundOutcomeUnknown):
            resolve(UUID(e.refund_id), "unknown")
    return [RecordedCall(**call) for call in calls.values()]
