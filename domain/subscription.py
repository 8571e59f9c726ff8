"""The Subscription aggregate: a customer's recurring purchase of a plan, period after period.

State is one JSON-shaped dict (``state``) and every event carries the fields it changes
(``changes``), the business instant it takes effect (``effective_at``: now, or an earlier
instant for imports) and, when the subscription's monthly recurring revenue changes, its new MRR
step function from that instant on (``mrr``; see ``projections.mrr``). Read models copy the
changes; they never re-derive the rules below.

Periods. A subscription is billed in *cycles*: a cycle has an anchor, and period ``i`` of the
cycle spans ``period_bounds(anchor, months, i)``. A trial is period -1, ending at the anchor.
Pausing and resuming, or ending and reactivating, starts a new cycle. ``paid_through`` is the end
of the last period paid (here, or elsewhere for imports).

Charges. Each charge (first period, renewal, dunning retry, proration of an upgrade,
reactivation) is requested with ``request_charge`` — saved with its order's payment intent — and
settled with ``charge_succeeded`` or ``charge_failed``; only one charge is pending at a time, and
a period already paid is never requested again, so a period is never charged twice.

Dunning. A failed renewal makes the subscription ``past_due``; retries follow the tenant's
``DunningPolicy`` (days after the first failure), optionally stepping the price down per retry to
a floor. A hard decline is never retried: a new card retries at once, else the subscription
churns when the policy's window closes. The last retry failing churns it at once. Recovery keeps
the failed period's dates.

MRR (one definition, ``domain.mrr``): trials, incomplete and paused subscriptions count 0;
``past_due`` keeps counting until it churns; a cancellation stops counting at the end of the paid
period (``churn_recognition="period_end"``, the default) or at the cancellation
(``"cancellation"``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import InvalidInput, InvalidTransition
from domain.money import AMOUNT_MINOR_MAX, InvalidAmount
from domain.mrr import monthly_recurring_minor
from domain.plan import Terms, period_bounds, period_index_at

QUANTITY_MAX = 1_000_000
BPS = 10_000


class SubscriptionStatus(StrEnum):
    INCOMPLETE = "incomplete"  # the first period's charge is at the gateway
    TRIALING = "trialing"
    ACTIVE = "active"
    PAST_DUE = "past_due"
    PAUSED = "paused"
    CANCELLED = "cancelled"  # ended by request (or its first charge was declined)
    CHURNED = "churned"  # ended by failed payment recovery


ENDED = frozenset({SubscriptionStatus.CANCELLED, SubscriptionStatus.CHURNED})


class InvalidQuantity(InvalidInput):
    code = "invalid_quantity"


class InvalidEffectiveAt(InvalidInput):
    code = "invalid_effective_at"


class SubscriptionNotActive(InvalidTransition):
    code = "subscription_not_active"


class ChargeInProgress(InvalidTransition):
    code = "charge_in_progress"


class PlanMismatch(InvalidInput):
    code = "plan_mismatch"


class CancellationScheduled(InvalidTransition):
    code = "cancellation_scheduled"


class InvalidDunningPolicy(InvalidInput):
    code = "invalid_dunning_policy"


@dataclass(frozen=True, slots=True)
class DunningPolicy:
    """How a tenant recovers failed renewals (default: 8 retries within 14 days, same price).

    ``retry_days``: days after the first failure at which each retry runs, increasing.
    ``step_down_bps``: each retry charges this much less of the period's price (in basis points
    per retry), never below ``floor_bps`` of it. ``auto_churn_after_days``: a ``past_due``
    subscription churns this many days after its first failure even with retries left (None:
    when its retries are exhausted, or, after a hard decline, when the last retry would have
    run). ``churn_recognition``: when a cancellation stops counting MRR.
    """

    retry_days: tuple[int, ...] = (1, 2, 3, 5, 7, 9, 11, 14)
    step_down_bps: int = 0
    floor_bps: int = BPS
    auto_churn_after_days: int | None = None
    churn_recognition: str = "period_end"

    def __post_init__(self) -> None:
        days = self.retry_days
        if not days or len(days) > 30 or any(not isinstance(d, int) for d in days):
            raise InvalidDunningPolicy("1 to 30 retry days are needed", param="retry_days")
        if any(b <= a for a, b in zip(days, days[1:], strict=False)) or days[0] < 0:
            raise InvalidDunningPolicy(
                "retry days are increasing whole days after the first failure",
                param="retry_days",
            )
        if days[-1] > 90:
            raise InvalidDunningPolicy("retries end within 90 days", param="retry_days")
        if not 0 <= self.step_down_bps <= BPS:
            raise InvalidDunningPolicy("the step-down is 0 to 10000 bps", param="step_down_bps")
        if not 0 < self.floor_bps <= BPS:
            raise InvalidDunningPolicy("the floor is 1 to 10000 bps", param="floor_bps")
        if self.auto_churn_after_days is not None and not 1 <= self.auto_churn_after_days <= 365:
            raise InvalidDunningPolicy(
                "auto-churn is 1 to 365 days after the first failure",
                param="auto_churn_after_days",
            )
        if self.churn_recognition not in ("period_end", "cancellation"):
            raise InvalidDunningPolicy(
                "churn is recognised at 'period_end' or at 'cancellation'",
                param="churn_recognition",
            )

    def as_dict(self) -> dict[str, Any]:
        return {
            "retry_days": list(self.retry_days),
            "step_down_bps": self.step_down_bps,
            "floor_bps": self.floor_bps,
            "auto_churn_after_days": self.auto_churn_after_days,
            "churn_recognition": self.churn_recognition,
        }

    def retry_amount(self, price_minor: int, retry: int) -> int:
        """What retry number ``retry`` (1-based) charges for a period of ``price_minor``:
        stepped down per retry, never below the floor; rounded down (in the customer's favour),
        but at least one minor unit."""
        bps = max(self.floor_bps, BPS - self.step_down_bps * retry)
        return max(1, price_minor * bps // BPS)

    def churn_deadline(self, first_failed_at: datetime) -> datetime:
        """When a past-due subscription churns, retries or not: ``auto_churn_after_days``
        after the first failure, else a day after the last retry's slot."""
        days = self.auto_churn_after_days
        if days is None:
            days = self.retry_days[-1] + 1
        return first_failed_at + timedelta(days=days)


@dataclass(frozen=True, slots=True)
class Due:
    """What a subscription needs at an instant: ``renew`` (charge the next period), ``retry``
    (a dunning retry of the failed period), ``learn`` (a charge whose outcome nobody recorded),
    ``end`` (a cancellation at period end), ``apply_change`` is folded into renewals,
    ``churn`` (dunning gave up)."""

    action: str
    key: str
    details: dict[str, Any] = field(default_factory=dict)


def iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def at_of(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def due_at(state: dict[str, Any], lease: timedelta) -> str | None:
    """When the scheduler should next look at a subscription in ``state`` (ISO), or None."""
    pending = state.get("pending_charge")
    if pending is not None:
        return iso(at_of(pending["requested_at"]) + lease)  # type: ignore[operator]
    status = state["status"]
    if status in (SubscriptionStatus.TRIALING, SubscriptionStatus.ACTIVE):
        return state["period_end"]
    if status == SubscriptionStatus.PAST_DUE:
        dunning = state["dunning"]
        candidates = [a for a in (dunning["next_retry_at"], dunning["churn_at"]) if a]
        return min(candidates, key=datetime.fromisoformat) if candidates else None
    return None


class Subscription(Aggregate):
    """A customer's subscription to a plan (one tenant)."""

    # How long a requested charge may stay unanswered before the scheduler finishes it with
    # the same idempotency key (the command plumbing's claim lease, with a margin).
    CHARGE_LEASE = timedelta(seconds=90)

    @classmethod
    def start(
        cls,
        *,
        tenant_id: str,
        customer_id: UUID,
        terms: Terms,
        quantity: int,
        payment_method_id: str,
        trial_days: int,
        effective_at: datetime,
        now: datetime,
        imported: bool,
        setup_fee_minor: int = 0,
    ) -> Subscription:
        """A new subscription at ``effective_at``: trialing, or ``incomplete`` until its first
        period is charged (``first_charge``). An import (``imported``) records the periods that
        started before ``now`` as billed elsewhere: its first charge is the first renewal after
        ``now``. A setup fee is charged with the first paid period (after a trial, or at
        once) and stays due until a charge that includes it is paid.
        Raises ``InvalidQuantity``, ``InvalidEffectiveAt``."""
        validate_quantity(quantity)
        validate_price(terms, quantity, 0 if imported else setup_fee_minor)
        if effective_at > now:
            raise InvalidEffectiveAt("effective_at may not be in the future", param="effective_at")
        mrr = monthly_recurring_minor(
            terms.amount_minor, quantity, terms.interval, terms.interval_count
        )
        trial_end = effective_at + timedelta(days=trial_days) if trial_days else None
        anchor = trial_end or effective_at
        state: dict[str, Any] = {
            **terms.as_dict(),
            "quantity": quantity,
            "payment_method_id": payment_method_id,
            "status": SubscriptionStatus.INCOMPLETE.value,
            "started_at": iso(effective_at),
            "trial_end": iso(trial_end),
            "cycle": 0,
            "anchor": iso(anchor),
            "period_index": -1,
            "period_start": iso(effective_at),
            "period_end": iso(anchor),
            "paid_through": None,
            "cancel_at_period_end": False,
            "scheduled_change": None,
            "pending_charge": None,
            "dunning": None,
            "mrr_minor": 0,
            "ended_at": None,
            "ended_reason": None,
            "last_effective_at": iso(effective_at),
            "charges": 0,
            "last_charge": None,
            "setup_fee_minor": 0 if imported else setup_fee_minor,
        }
        points: list[list[Any]] = [[iso(effective_at), 0, terms.plan_id]]
        if trial_end is not None:
            state["status"] = SubscriptionStatus.TRIALING.value
        if imported and anchor <= now:
            # Every period that began before now was billed by the system we import from.
            index = period_index_at(anchor, terms.months, now)
            start, end = period_bounds(anchor, terms.months, index)
            state.update(
                status=SubscriptionStatus.ACTIVE.value,
                setup_fee_minor=0,
                period_index=index,
                period_start=iso(start),
                period_end=iso(end),
                paid_through=iso(end),
                mrr_minor=mrr,
            )
            points.append([iso(anchor), mrr, terms.plan_id])
        state["due_at"] = due_at(state, cls.CHARGE_LEASE)
        return cls(
            tenant_id=tenant_id,
            customer_id=customer_id,
            currency=terms.currency,
            plan_id=terms.plan_id,
            effective_at=effective_at,
            state=state,
            mrr={"from": iso(effective_at), "points": points},
        )

    @event("Started")
    def __init__(
        self,
        *,
        tenant_id: str,
        customer_id: UUID,
        currency: str,
        plan_id: str,
        effective_at: datetime,
        state: dict[str, Any],
        mrr: dict[str, Any] | None,
    ) -> None:
        self.tenant_id = tenant_id
        self.customer_id = customer_id
        self.state = dict(state)

    # Reading ---------------------------------------------------------------------------------

    @property
    def status(self) -> SubscriptionStatus:
        return SubscriptionStatus(self.state["status"])

    @property
    def terms(self) -> Terms:
        return Terms.from_dict(self.state)

    @property
    def quantity(self) -> int:
        return int(self.state["quantity"])

    @property
    def price_minor(self) -> int:
        """What one period costs at the current terms and quantity."""
        return self.terms.amount_minor * self.quantity

    @property
    def pending_charge(self) -> dict[str, Any] | None:
        return self.state["pending_charge"]

    @property
    def last_effective_at(self) -> datetime:
        at = at_of(self.state["last_effective_at"])
        assert at is not None
        return at

    def _at(self, name: str) -> datetime:
        at = at_of(self.state[name])
        assert at is not None, name
        return at

    def check_effective_at(self, effective_at: datetime, now: datetime) -> None:
        """Raises ``InvalidEffectiveAt`` before the subscription's last event or after now."""
        if effective_at > now:
            raise InvalidEffectiveAt("effective_at may not be in the future", param="effective_at")
        if effective_at < self.last_effective_at:
            raise InvalidEffectiveAt(
                "effective_at may not go back before the subscription's last change",
                param="effective_at",
            )

    def due(self, now: datetime, policy: DunningPolicy) -> Due | None:
        """What the scheduler should do for this subscription at ``now``, if anything."""
        state = self.state
        pending = state["pending_charge"]
        if pending is not None:
            if now >= self._at_of(pending["requested_at"]) + self.CHARGE_LEASE:
                return Due("learn", pending["key"], dict(pending))
            return None
        status = self.status
        if status in (SubscriptionStatus.TRIALING, SubscriptionStatus.ACTIVE):
            if now < self._at("period_end"):
                return None
            if state["cancel_at_period_end"]:
                return Due("end", "")
            index = state["period_index"] + 1
            return Due("renew", self._charge_key(index, 0), {"period_index": index, "retry": 0})
        if status is SubscriptionStatus.PAST_DUE:
            dunning = state["dunning"]
            churn_at = at_of(dunning["churn_at"])
            if churn_at is not None and now >= churn_at:
                return Due("churn", "", {"reason": "dunning_window_closed"})
            retry_at = at_of(dunning["next_retry_at"])
            if retry_at is not None and now >= retry_at:
                retry = dunning["failures"]
                index = dunning["period_index"]
                return Due(
                    "retry", self._charge_key(index, retry), {"period_index": index, "retry": retry}
                )
        return None

    @staticmethod
    def _at_of(value: str) -> datetime:
        at = at_of(value)
        assert at is not None
        return at

    def _charge_key(self, period_index: int, retry: int) -> str:
        """The idempotency key of charging a period (a renewal, or its ``retry``-th retry):
        the same whoever asks, however often, so one charge per period and retry."""
        return f"sub_{self.id.hex}_c{self.state['cycle']}_p{period_index}_r{retry}"

    def first_charge_key(self) -> str:
        return self._charge_key(0, 0)

    # Charges ---------------------------------------------------------------------------------

    def request_charge(
        self,
        *,
        order_id: UUID | None,
        purpose: str,
        amount_minor: int,
        key: str,
        now: datetime,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Record the intent to charge (saved with the order's payment intent).

        ``purpose``: ``first``, ``renewal``, ``retry``, ``upgrade`` or ``reactivation``;
        ``details``: what applies on success (``period_index``, a plan ``change``, terms).
        Raises ``ChargeInProgress``.
        """
        if self.state["pending_charge"] is not None:
            raise ChargeInProgress("a charge of this subscription is already in progress")
        pending = {
            "order_id": None if order_id is None else str(order_id),
            "purpose": purpose,
            "amount_minor": amount_minor,
            "key": key,
            "requested_at": iso(now),
            **(details or {}),
        }
        changes = {"pending_charge": pending, "charges": self.state["charges"] + 1}
        self._charge_requested(**self._transition(now, changes))

    def refuse_charge(
        self,
        *,
        purpose: str,
        amount_minor: int,
        key: str,
        decline_code: str,
        now: datetime,
        policy: DunningPolicy,
        details: dict[str, Any] | None = None,
    ) -> None:
        """A renewal or retry that could not be sent (the card scheme allows no attempt now,
        the amount is beyond what one charge may move): recorded as requested and failed,
        without an order, so dunning goes on instead of the period being tried forever."""
        self.request_charge(
            order_id=None, purpose=purpose, amount_minor=amount_minor, key=key, now=now,
            details=details,
        )  # fmt: skip
        self.charge_failed(decline_code=decline_code, hard=False, now=now, policy=policy)

    def charge_succeeded(self, *, now: datetime) -> None:
        """The pending charge was paid: apply what it was for."""
        pending = self.state["pending_charge"]
        assert pending is not None, "no charge is pending"
        purpose = pending["purpose"]
        changes: dict[str, Any] = {
            "pending_charge": None,
            "last_charge": _charge_summary(pending, "succeeded", None, now),
        }
        mrr_from: datetime | None = None
        if purpose in ("first", "renewal", "retry", "reactivation"):
            cycle, anchor = self.state["cycle"], self._at("anchor")
            if purpose == "reactivation":
                cycle, anchor = cycle + 1, self._at_of(pending["anchor"])
            terms = Terms.from_dict(pending.get("terms") or self.state)
            quantity = pending.get("quantity", self.quantity)
            index = pending["period_index"]
            start, end = period_bounds(anchor, terms.months, index)
            mrr = monthly_recurring_minor(
                terms.amount_minor, quantity, terms.interval, terms.interval_count
            )
            changes.update(
                terms.as_dict(),
                quantity=quantity,
                status=SubscriptionStatus.ACTIVE.value,
                cycle=cycle,
                anchor=iso(anchor),
                period_index=index,
                period_start=iso(start),
                period_end=iso(end),
                paid_through=iso(end),
                dunning=None,
                scheduled_change=None,
                mrr_minor=mrr,
                ended_at=None,
                ended_reason=None,
            )
            if pending.get("setup_fee_minor"):
                changes["setup_fee_minor"] = 0  # paid with this charge
            # Recovery keeps the period's dates: MRR never stopped (past_due counts).
            mrr_from = now if purpose == "reactivation" else start
        elif purpose == "upgrade":
            change = pending["change"]
            terms = Terms.from_dict(change)
            mrr = monthly_recurring_minor(
                terms.amount_minor, change["quantity"], terms.interval, terms.interval_count
            )
            # A downgrade scheduled before the upgrade is superseded by it.
            changes.update(
                terms.as_dict(), quantity=change["quantity"], mrr_minor=mrr, scheduled_change=None
            )
            mrr_from = self._at_of(pending["requested_at"])
        else:  # pragma: no cover - purposes are ours
            raise ValueError(purpose)
        self._charge_succeeded(**self._transition(now, changes, mrr_from=mrr_from))

    def charge_failed(
        self,
        *,
        decline_code: str,
        hard: bool,
        now: datetime,
        policy: DunningPolicy,
    ) -> None:
        """The pending charge was declined. A first charge ends the subscription
        (``first_payment_declined``); an upgrade or a reactivation changes nothing else; a
        renewal or retry goes (or stays) ``past_due`` with the next retry per ``policy`` — and
        churns when none is left."""
        pending = self.state["pending_charge"]
        assert pending is not None, "no charge is pending"
        purpose = pending["purpose"]
        changes: dict[str, Any] = {
            "pending_charge": None,
            "last_charge": {
                **_charge_summary(pending, "declined", decline_code, now),
                "hard": hard,
            },
        }
        if purpose == "first":
            changes.update(
                status=SubscriptionStatus.CANCELLED.value,
                ended_at=iso(now),
                ended_reason="first_payment_declined",
            )
            self._charge_failed(**self._transition(now, changes))
            return
        if purpose in ("upgrade", "reactivation"):
            self._charge_failed(**self._transition(now, changes))
            return
        dunning = self.state["dunning"] or {
            "period_index": pending["period_index"],
            "first_failed_at": iso(now),
            "failures": 0,
        }
        failures = dunning["failures"] + 1
        first_failed_at = self._at_of(dunning["first_failed_at"])
        # The next retry slot of the schedule still ahead (a retry run early, on a new card,
        # does not pull the later slots forward). None left: the retries are exhausted.
        next_retry_at = next(
            (
                slot
                for days in policy.retry_days[failures - 1 :]
                if (slot := first_failed_at + timedelta(days=days)) > now
            ),
            None,
        )
        exhausted = next_retry_at is None
        churn_at = policy.churn_deadline(first_failed_at)
        if hard or (next_retry_at is not None and next_retry_at >= churn_at):
            next_retry_at = None  # churns at ``churn_at`` unless a new card recovers it
        dunning = {
            **dunning,
            "failures": failures,
            "hard": hard,
            "next_retry_at": iso(next_retry_at),
            "churn_at": iso(churn_at),
        }
        changes.update(status=SubscriptionStatus.PAST_DUE.value, dunning=dunning)
        if purpose == "renewal":
            # The unpaid period is the current one (recovery keeps its dates), at the terms it
            # was requested at (a scheduled change, a new plan price).
            terms = Terms.from_dict(pending.get("terms") or self.state)
            start, end = period_bounds(self._at("anchor"), terms.months, pending["period_index"])
            changes.update(
                terms.as_dict(),
                quantity=pending.get("quantity", self.quantity),
                scheduled_change=None,
                period_index=pending["period_index"],
                period_start=iso(start),
                period_end=iso(end),
            )
        self._charge_failed(**self._transition(now, changes))
        if exhausted and not hard:
            self.churn(reason="dunning_exhausted", now=now, effective_at=now)

    def retry_amount(self, policy: DunningPolicy, retry: int) -> int:
        return policy.retry_amount(self.price_minor, retry)

    # Commands without a charge ---------------------------------------------------------------

    def churn(self, *, reason: str, now: datetime, effective_at: datetime) -> None:
        """Ended by failed payment recovery."""
        if self.status is not SubscriptionStatus.PAST_DUE:
            raise SubscriptionNotActive("only a past-due subscription churns")
        changes = {
            "status": SubscriptionStatus.CHURNED.value,
            "ended_at": iso(effective_at),
            "ended_reason": reason,
            "dunning": {**self.state["dunning"], "next_retry_at": None, "churn_at": None},
            "mrr_minor": 0,
        }
        self._churned(**self._transition(effective_at, changes, mrr_from=effective_at, mrr_to=0))

    def cancel(self, *, at_period_end: bool, effective_at: datetime, policy: DunningPolicy) -> None:
        """End by request: now, or at the end of the current period (``reactivate`` withdraws
        that). Raises ``SubscriptionNotActive``, ``ChargeInProgress``."""
        self._require_no_pending()
        status = self.status
        if status in ENDED or status is SubscriptionStatus.INCOMPLETE:
            raise SubscriptionNotActive("this subscription has ended")
        if at_period_end and status in (SubscriptionStatus.ACTIVE, SubscriptionStatus.TRIALING):
            end = self._at("period_end")
            ends_at = end if status is SubscriptionStatus.ACTIVE else effective_at
            self._cancellation_scheduled(
                **self._transition(
                    effective_at,
                    {"cancel_at_period_end": True, "scheduled_change": None},
                    mrr_from=effective_at,
                    mrr_points=[[iso(ends_at), 0, self.terms.plan_id]],
                )
            )
            return
        paid_through = at_of(self.state["paid_through"])
        stops_at = effective_at
        if policy.churn_recognition == "period_end" and paid_through is not None:
            stops_at = max(effective_at, paid_through)
        if status is SubscriptionStatus.PAUSED:
            stops_at = effective_at  # a paused subscription counts nothing already
        self._cancelled(
            **self._transition(
                effective_at,
                {
                    "status": SubscriptionStatus.CANCELLED.value,
                    "ended_at": iso(effective_at),
                    "ended_reason": "requested",
                    "cancel_at_period_end": False,
                    "scheduled_change": None,
                    "dunning": None,
                    "mrr_minor": 0,
                },
                mrr_from=effective_at,
                mrr_points=[[iso(stops_at), 0, self.terms.plan_id]],
            )
        )

    def end_at_period_end(self, *, now: datetime) -> None:
        """Carry out a cancellation scheduled for the end of the period (its MRR point was
        recorded when it was requested)."""
        end = self._at("period_end")
        self._cancelled(
            **self._transition(
                end,
                {
                    "status": SubscriptionStatus.CANCELLED.value,
                    "ended_at": iso(end),
                    "ended_reason": "requested",
                    "cancel_at_period_end": False,
                    "mrr_minor": 0,
                },
            )
        )

    def withdraw_cancellation(self, *, effective_at: datetime) -> None:
        if not self.state["cancel_at_period_end"]:
            raise SubscriptionNotActive("no cancellation is scheduled")
        self._cancellation_withdrawn(
            **self._transition(
                effective_at,
                {"cancel_at_period_end": False},
                mrr_from=effective_at,
                mrr_to=0 if self.status is SubscriptionStatus.TRIALING else self._recurring(),
            )
        )

    def pause(self, *, effective_at: datetime) -> None:
        """Stop billing and counting MRR until resumed. Raises ``SubscriptionNotActive``."""
        self._require_no_pending()
        if self.status is not SubscriptionStatus.ACTIVE:
            raise SubscriptionNotActive("only an active subscription can be paused")
        if self.state["cancel_at_period_end"]:
            raise CancellationScheduled("this subscription ends at the end of its period")
        self._paused(
            **self._transition(
                effective_at,
                {
                    "status": SubscriptionStatus.PAUSED.value,
                    "paused_at": iso(effective_at),
                    "mrr_minor": 0,
                },
                mrr_from=effective_at,
                mrr_to=0,
            )
        )

    def resume(self, *, effective_at: datetime) -> None:
        """Billing restarts: a new cycle anchored at the later of now and the end of the paid
        period (paid time is kept; its first period is charged then)."""
        if self.status is not SubscriptionStatus.PAUSED:
            raise SubscriptionNotActive("only a paused subscription can be resumed")
        paid_through = at_of(self.state["paid_through"])
        anchor = effective_at if paid_through is None else max(effective_at, paid_through)
        # Still inside the paid period: it stays the current one (proration spans all of it).
        start = self.state["period_start"] if anchor > effective_at else iso(effective_at)
        self._resumed(
            **self._transition(
                effective_at,
                {
                    "status": SubscriptionStatus.ACTIVE.value,
                    "cycle": self.state["cycle"] + 1,
                    "anchor": iso(anchor),
                    "period_index": -1,
                    "period_start": start,
                    "period_end": iso(anchor),
                    "paused_at": None,
                    "mrr_minor": self._recurring(),
                },
                mrr_from=effective_at,
            )
        )

    def reactivate_within_paid_period(self, *, effective_at: datetime) -> bool:
        """Bring back an ended subscription whose paid period has not ended: active again
        until then, nothing charged (its days are paid already). False if it has ended."""
        paid_through = at_of(self.state["paid_through"])
        if self.status not in ENDED or paid_through is None or paid_through <= effective_at:
            return False
        self._require_no_pending()
        self._reactivated(
            **self._transition(
                effective_at,
                {
                    "status": SubscriptionStatus.ACTIVE.value,
                    "ended_at": None,
                    "ended_reason": None,
                    "dunning": None,
                    "mrr_minor": self._recurring(),
                },
                mrr_from=effective_at,
            )
        )
        return True

    def reactivation(self, *, effective_at: datetime) -> dict[str, Any]:
        """What reactivating an ended subscription charges: its first period of a new cycle
        anchored at ``effective_at``. Raises ``SubscriptionNotActive``, ``ChargeInProgress``."""
        self._require_no_pending()
        if self.status not in ENDED:
            raise SubscriptionNotActive("only an ended subscription can be reactivated")
        return {"period_index": 0, "anchor": iso(effective_at)}

    def reactivate_imported(self, *, effective_at: datetime, now: datetime) -> None:
        """An imported reactivation: periods that began before now were billed elsewhere."""
        if self.status not in ENDED:
            raise SubscriptionNotActive("only an ended subscription can be reactivated")
        terms = self.terms
        index = period_index_at(effective_at, terms.months, now)
        start, end = period_bounds(effective_at, terms.months, index)
        mrr = monthly_recurring_minor(
            terms.amount_minor, self.quantity, terms.interval, terms.interval_count
        )
        self._reactivated(
            **self._transition(
                effective_at,
                {
                    "status": SubscriptionStatus.ACTIVE.value,
                    "cycle": self.state["cycle"] + 1,
                    "anchor": iso(effective_at),
                    "period_index": index,
                    "period_start": iso(start),
                    "period_end": iso(end),
                    "paid_through": iso(end),
                    "ended_at": None,
                    "ended_reason": None,
                    "dunning": None,
                    "mrr_minor": mrr,
                },
                mrr_from=effective_at,
                mrr_to=mrr,
            )
        )

    def plan_change(
        self, *, terms: Terms, quantity: int, effective_at: datetime, imported: bool
    ) -> tuple[str, int]:
        """Decide a change of plan or quantity: ``("now", 0)`` applies at once (a trial, an
        equal price, an import), ``("upgrade", prorated_minor)`` applies once the prorated
        difference is paid, ``("period_end", 0)`` is a downgrade scheduled for the period's end.

        Proration, to the second: ``(new price − old price) × seconds left in the period //
        seconds in the period`` — rounded down, in the customer's favour.
        Raises ``InvalidQuantity``, ``PlanMismatch``, ``SubscriptionNotActive``,
        ``CancellationScheduled``, ``ChargeInProgress``.
        """
        validate_quantity(quantity)
        validate_price(terms, quantity)
        self._require_no_pending()
        current = self.terms
        if terms.currency != current.currency:
            raise PlanMismatch("the new plan is in another currency", param="plan_id")
        if terms.months != current.months:
            raise PlanMismatch("the new plan is billed at another interval", param="plan_id")
        status = self.status
        if status not in (SubscriptionStatus.ACTIVE, SubscriptionStatus.TRIALING):
            raise SubscriptionNotActive("only an active or trialing subscription changes plan")
        if self.state["cancel_at_period_end"]:
            raise CancellationScheduled(
                "this subscription ends at the end of its period; reactivate it first"
            )
        old, new = self.price_minor, terms.amount_minor * quantity
        if status is SubscriptionStatus.TRIALING or imported or new == old:
            return "now", 0
        if new < old:
            return "period_end", 0
        start, end = self._at("period_start"), self._at("period_end")
        total = int((end - start).total_seconds())
        left = max(0, int((end - effective_at).total_seconds()))
        prorated = (new - old) * left // total if total > 0 else 0
        if prorated == 0:
            return "now", 0
        return "upgrade", prorated

    def change_plan_now(self, *, terms: Terms, quantity: int, effective_at: datetime) -> None:
        mrr = monthly_recurring_minor(
            terms.amount_minor, quantity, terms.interval, terms.interval_count
        )
        counting = self.status is not SubscriptionStatus.TRIALING
        self._plan_changed(
            **self._transition(
                effective_at,
                {
                    **terms.as_dict(),
                    "quantity": quantity,
                    "scheduled_change": None,
                    "mrr_minor": mrr if counting else 0,
                },
                mrr_from=effective_at,
                mrr_to=mrr if counting else 0,
                plan_id=terms.plan_id,
            )
        )

    def schedule_plan_change(self, *, terms: Terms, quantity: int, effective_at: datetime) -> None:
        mrr = monthly_recurring_minor(
            terms.amount_minor, quantity, terms.interval, terms.interval_count
        )
        change = {**terms.as_dict(), "quantity": quantity}
        self._plan_change_scheduled(
            **self._transition(
                effective_at,
                {"scheduled_change": change},
                mrr_from=effective_at,
                mrr_points=[[self.state["period_end"], mrr, terms.plan_id]],
            )
        )

    def change_payment_method(self, *, payment_method_id: str, effective_at: datetime) -> None:
        """A new card for the next charges (a past-due subscription is retried with it at
        once, by the application)."""
        if self.status in ENDED:
            raise SubscriptionNotActive("this subscription has ended")
        self._require_no_pending()
        changes: dict[str, Any] = {"payment_method_id": payment_method_id}
        if self.status is SubscriptionStatus.PAST_DUE:
            # A hard decline's card is replaced: retries may run again.
            changes["dunning"] = {**self.state["dunning"], "hard": False}
        self._payment_method_changed(**self._transition(effective_at, changes))

    def renewal_terms(self, current_terms: Callable[[str], Terms]) -> tuple[Terms, int]:
        """The terms and quantity of the next period: the plan of a scheduled change, else
        the subscription's plan, each at its price of now (``current_terms(plan_id)``: price
        changes apply to new periods)."""
        change = self.state["scheduled_change"]
        if change is not None:
            return current_terms(change["plan_id"]), int(change["quantity"])
        return current_terms(self.state["plan_id"]), self.quantity

    def _recurring(self) -> int:
        terms = self.terms
        return monthly_recurring_minor(
            terms.amount_minor, self.quantity, terms.interval, terms.interval_count
        )

    def _require_no_pending(self) -> None:
        if self.state["pending_charge"] is not None:
            raise ChargeInProgress("a charge of this subscription is in progress; retry later")

    # Events ----------------------------------------------------------------------------------

    def _transition(
        self,
        effective_at: datetime,
        changes: dict[str, Any],
        *,
        mrr_from: datetime | None = None,
        mrr_to: int | None = None,
        mrr_points: list[list[Any]] | None = None,
        plan_id: str | None = None,
    ) -> dict[str, Any]:
        """An event's fields: the changes (with the new ``due_at``), the effective instant and
        the MRR step function from ``mrr_from`` (one point of ``mrr_to``, or ``mrr_points``)."""
        changes = dict(changes)
        if "last_effective_at" not in changes:
            changes["last_effective_at"] = iso(max(effective_at, self.last_effective_at))
        changes["due_at"] = due_at({**self.state, **changes}, self.CHARGE_LEASE)
        mrr = None
        if mrr_from is not None:
            if mrr_points is None:
                value = mrr_to
                if value is None:
                    value = changes.get("mrr_minor", self.state["mrr_minor"])
                plan = plan_id or changes.get("plan_id", self.state["plan_id"])
                mrr_points = [[iso(mrr_from), value, plan]]
            mrr = {"from": iso(mrr_from), "points": mrr_points}
        return {"effective_at": effective_at, "changes": changes, "mrr": mrr}

    def _apply(self, changes: dict[str, Any]) -> None:
        self.state = {**self.state, **changes}

    @event("ChargeRequested")
    def _charge_requested(self, *, effective_at: datetime, changes: dict, mrr: dict | None):
        self._apply(changes)

    @event("ChargeSucceeded")
    def _charge_succeeded(self, *, effective_at: datetime, changes: dict, mrr: dict | None):
        self._apply(changes)

    @event("ChargeFailed")
    def _charge_failed(self, *, effective_at: datetime, changes: dict, mrr: dict | None):
        self._apply(changes)

    @event("Churned")
    def _churned(self, *, effective_at: datetime, changes: dict, mrr: dict | None):
        self._apply(changes)

    @event("CancellationScheduled")
    def _cancellation_scheduled(self, *, effective_at: datetime, changes: dict, mrr: dict | None):
        self._apply(changes)

    @event("CancellationWithdrawn")
    def _cancellation_withdrawn(self, *, effective_at: datetime, changes: dict, mrr: dict | None):
        self._apply(changes)

    @event("Cancelled")
    def _cancelled(self, *, effective_at: datetime, changes: dict, mrr: dict | None):
        self._apply(changes)

    @event("Paused")
    def _paused(self, *, effective_at: datetime, changes: dict, mrr: dict | None):
        self._apply(changes)

    @event("Resumed")
    def _resumed(self, *, effective_at: datetime, changes: dict, mrr: dict | None):
        self._apply(changes)

    @event("Reactivated")
    def _reactivated(self, *, effective_at: datetime, changes: dict, mrr: dict | None):
        self._apply(changes)

    @event("PlanChanged")
    def _plan_changed(self, *, effective_at: datetime, changes: dict, mrr: dict | None):
        self._apply(changes)

    @event("PlanChangeScheduled")
    def _plan_change_scheduled(self, *, effective_at: datetime, changes: dict, mrr: dict | None):
        self._apply(changes)

    @event("PaymentMethodChanged")
    def _payment_method_changed(self, *, effective_at: datetime, changes: dict, mrr: dict | None):
        self._apply(changes)


def _charge_summary(
    pending: dict[str, Any], outcome: str, decline_code: str | None, now: datetime
) -> dict[str, Any]:
    return {
        "order_id": pending["order_id"],
        "purpose": pending["purpose"],
        "amount_minor": pending["amount_minor"],
        "outcome": outcome,
        "decline_code": decline_code,
        "at": iso(now),
    }


def validate_price(terms: Terms, quantity: int, setup_fee_minor: int = 0) -> None:
    """Raises ``InvalidAmount`` when one period (with a setup fee) would cost more than one
    charge may move."""
    if terms.amount_minor * quantity + setup_fee_minor > AMOUNT_MINOR_MAX:
        raise InvalidAmount(
            f"a period would cost more than {AMOUNT_MINOR_MAX} minor units", param="quantity"
        )


def validate_quantity(quantity: int) -> int:
    if isinstance(quantity, bool) or not isinstance(quantity, int):
        raise InvalidQuantity("a quantity is a whole number", param="quantity")
    if not 1 <= quantity <= QUANTITY_MAX:
        raise InvalidQuantity(f"a quantity is 1 to {QUANTITY_MAX}", param="quantity")
    return quantity


# Every event class of a subscription (for projections that follow them all).
EVENT_CLASSES: tuple[type[Aggregate.Event], ...] = tuple(
    value
    for value in vars(Subscription).values()
    if isinstance(value, type)
    and issubclass(value, Aggregate.Event)
    and value.__qualname__.startswith("Subscription.")
    and value.__qualname__ not in ("Subscription.Event", "Subscription.Created")
)
