"""Billing commands: plans, subscriptions, renewals, dunning, and the tenant's dunning policy.

Every charge of a subscription is an order of the subscription's customer (``source:
"subscription"``) paid through the payments capability: routed, counted against the card
scheme's retry limits, and bracketed by intent → call → outcome. The subscription's
``ChargeRequested`` is saved in the same transaction as the order's payment intent, and its
``ChargeSucceeded``/``ChargeFailed`` in the same transaction as the order's outcome, so the two
never disagree; a lost answer leaves both pending until a retry with the same key (or the
scheduler's ``learn``) finds the outcome.

Renewals and retries run under an idempotency key derived from the subscription, its billing
cycle, the period and the retry number (``Subscription._charge_key``): whoever runs a due
renewal — the periodic job, twice, concurrently, or ``POST /v1/billing/run`` — claims the same
key, and the subscription refuses a second pending charge, so a period is charged at most once
per retry.

``effective_at`` (imports, admin only): a command takes effect at that earlier instant; periods
that began before now are billed elsewhere, never charged here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate, event

from application.commands import CommandResult, Step
from application.idempotency import idempotency_record_id
from application.orders import OrderCommands
from domain.card_usage import CardAttemptLimitReached, CardUsage, card_digest
from domain.customer import Customer
from domain.errors import DomainError, InvalidTransition, NotFound
from domain.gateway import gateway_directory_id
from domain.money import AMOUNT_MINOR_MAX
from domain.order import Order, OrderStatus
from domain.plan import Plan, Terms, plan_id_for
from domain.routing import HARD_DECLINE_CODES
from domain.subscription import (
    DunningPolicy,
    Subscription,
    SubscriptionStatus,
)

logger = logging.getLogger(__name__)
# Appended to the tenant id in the idempotency records of renewals and retries.
BILLING_SCOPE = "#billing"
_POLICY_NAMESPACE = uuid5(NAMESPACE_URL, "https://commerce-ledger/dunning-policies")


class PlanNotFound(NotFound):
    code = "plan_not_found"


class SubscriptionNotFound(NotFound):
    code = "subscription_not_found"


class PlanCodeTaken(InvalidTransition):
    code = "plan_code_taken"


class BillingSettings(Aggregate):
    """A tenant's dunning policy (one per tenant; absent: ``DunningPolicy()``)."""

    @staticmethod
    def create_id(*, tenant_id: str, **_: object) -> UUID:
        return uuid5(_POLICY_NAMESPACE, tenant_id)

    @event("Created")
    def __init__(self, *, tenant_id: str, policy: dict[str, Any]) -> None:
        self.tenant_id = tenant_id
        self.policy = policy

    @event("PolicySet")
    def set_policy(self, *, policy: dict[str, Any]) -> None:
        self.policy = policy

    @property
    def dunning(self) -> DunningPolicy:
        return dunning_policy_from(self.policy)


def dunning_policy_from(data: dict[str, Any]) -> DunningPolicy:
    return DunningPolicy(**{**data, "retry_days": tuple(data["retry_days"])})


@dataclass(frozen=True)
class CreatePlan:
    code: str
    name: str
    currency: str
    amount_minor: int
    interval: str
    interval_count: int
    trial_days: int
    setup_fee_minor: int


@dataclass(frozen=True)
class ChangePlanPrice:
    plan_id: UUID
    amount_minor: int


@dataclass(frozen=True)
class CreateSubscription:
    customer_id: UUID
    plan_id: UUID
    payment_method_id: UUID
    quantity: int
    effective_at: datetime | None


@dataclass(frozen=True)
class SubscriptionCommand:
    """Cancel, pause, resume, reactivate, change plan: the name and its arguments."""

    subscription_id: UUID
    action: str
    arguments: tuple[tuple[str, Any], ...]
    effective_at: datetime | None


@dataclass(frozen=True)
class ChargeDue:
    """A renewal or dunning retry: the key names the period and retry."""

    subscription_id: UUID
    key: str


@dataclass(frozen=True)
class SetDunningPolicy:
    policy: tuple[tuple[str, Any], ...]


def _line(sku: str, amount_minor: int) -> dict[str, Any]:
    return {"sku": sku, "quantity": 1, "unit_price_minor": amount_minor}


def render_plan(plan: Plan) -> dict[str, Any]:
    return {
        "id": str(plan.id),
        "code": plan.code,
        "name": plan.name,
        "currency": plan.currency,
        "amount_minor": plan.amount_minor,
        "interval": plan.interval,
        "interval_count": plan.interval_count,
        "trial_days": plan.trial_days,
        "setup_fee_minor": plan.setup_fee_minor,
        "created_at": plan.created_on.isoformat(),
    }


def render_subscription(
    *, subscription_id: UUID | str, customer_id: UUID | str, state: dict[str, Any]
) -> dict[str, Any]:
    """A subscription as the API shows it, from the aggregate or from a read-model row's state
    (one rendering for both)."""
    dunning = state.get("dunning")
    return {
        "id": str(subscription_id),
        "customer_id": str(customer_id),
        "plan_id": state["plan_id"],
        "status": state["status"],
        "quantity": state["quantity"],
        "currency": state["currency"],
        "amount_minor": state["amount_minor"],
        "interval": state["interval"],
        "interval_count": state["interval_count"],
        "mrr_minor": state["mrr_minor"],
        "payment_method_id": state["payment_method_id"],
        "started_at": state["started_at"],
        "trial_end": state["trial_end"],
        "current_period_start": state["period_start"],
        "current_period_end": state["period_end"],
        "paid_through": state["paid_through"],
        "cancel_at_period_end": state["cancel_at_period_end"],
        "scheduled_change": state["scheduled_change"],
        "pending_charge": state["pending_charge"],
        "last_charge": state.get("last_charge"),
        "dunning": None
        if dunning is None
        else {
            "failures": dunning["failures"],
            "first_failed_at": dunning["first_failed_at"],
            "next_retry_at": dunning["next_retry_at"],
            "churn_at": dunning["churn_at"],
            "hard_decline": dunning.get("hard", False),
        },
        "ended_at": state["ended_at"],
        "ended_reason": state["ended_reason"],
        "next_action_at": state.get("due_at"),
    }


def subscription_body(subscription: Subscription) -> dict[str, Any]:
    return render_subscription(
        subscription_id=subscription.id,
        customer_id=subscription.customer_id,
        state=subscription.state,
    )


# What ``build`` of a charge returns: the subscription, its customer, the order of the charge,
# its purpose, and what applies once it is paid.
Charge = tuple[Subscription, Customer, Order, str, dict[str, Any]]


class BillingCommands(OrderCommands):
    # Plans -----------------------------------------------------------------------------------

    def create_plan(
        self,
        *,
        tenant_id: str,
        code: str,
        name: str,
        currency: str,
        amount_minor: int,
        interval: str,
        interval_count: int = 1,
        trial_days: int = 0,
        setup_fee_minor: int = 0,
        idempotency_key: str | None = None,
    ) -> CommandResult:
        """Raises ``InvalidPlan``, ``InvalidAmount``, ``UnknownCurrency``, ``PlanCodeTaken``."""
        command = CreatePlan(
            code, name, currency, amount_minor, interval, interval_count, trial_days,
            setup_fee_minor,
        )  # fmt: skip

        def prepare() -> Step:
            plan = Plan.create(
                tenant_id=tenant_id,
                code=code,
                name=name,
                currency=currency,
                amount_minor=amount_minor,
                interval=interval,
                interval_count=interval_count,
                trial_days=trial_days,
                setup_fee_minor=setup_fee_minor,
            )
            if self._exists(plan.id):
                raise PlanCodeTaken("a plan with this code exists", param="code")
            return Step([plan], render_plan(plan))

        return self.run(tenant_id, idempotency_key, command, prepare)

    def change_plan_price(
        self,
        *,
        tenant_id: str,
        plan_id: UUID,
        amount_minor: int,
        idempotency_key: str | None = None,
    ) -> CommandResult:
        """A new price for the plan's periods that start from now on."""

        def prepare() -> Step:
            plan = self.get_plan(tenant_id, plan_id)
            plan.change_price(amount_minor)
            return Step([plan], render_plan(plan))

        return self.run(tenant_id, idempotency_key, ChangePlanPrice(plan_id, amount_minor), prepare)

    def get_plan(self, tenant_id: str, plan_id: UUID) -> Plan:
        """Raises ``PlanNotFound``."""
        return self.get_owned(Plan, tenant_id, plan_id, PlanNotFound)

    def plan_by_code(self, tenant_id: str, code: str) -> Plan:
        return self.get_plan(tenant_id, plan_id_for(tenant_id, code))

    def _exists(self, aggregate_id: UUID) -> bool:
        try:
            self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return False
        return True

    # The tenant's dunning policy ---------------------------------------------------------------

    def dunning_policy(self, tenant_id: str) -> DunningPolicy:
        try:
            settings = self.repository.get(BillingSettings.create_id(tenant_id=tenant_id))
        except AggregateNotFoundError:
            return DunningPolicy()
        assert isinstance(settings, BillingSettings)
        return settings.dunning

    def set_dunning_policy(
        self, *, tenant_id: str, policy: DunningPolicy, idempotency_key: str | None = None
    ) -> CommandResult:
        data = policy.as_dict()

        def prepare() -> Step:
            try:
                settings = self.repository.get(BillingSettings.create_id(tenant_id=tenant_id))
                settings.set_policy(policy=data)
            except AggregateNotFoundError:
                settings = BillingSettings(tenant_id=tenant_id, policy=data)
            return Step([settings], data)

        command = SetDunningPolicy(tuple(sorted((k, repr(v)) for k, v in data.items())))
        return self.run(tenant_id, idempotency_key, command, prepare)

    # Subscriptions -----------------------------------------------------------------------------

    def get_subscription(self, tenant_id: str, subscription_id: UUID) -> Subscription:
        """Raises ``SubscriptionNotFound``."""
        return self.get_owned(Subscription, tenant_id, subscription_id, SubscriptionNotFound)

    def create_subscription(
        self,
        *,
        tenant_id: str,
        customer_id: UUID,
        plan_id: UUID,
        payment_method_id: UUID,
        quantity: int = 1,
        effective_at: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> CommandResult:
        """Subscribe a customer to a plan: a trial starts, or the setup fee and the first
        period are charged at once (a declined first charge ends the subscription:
        ``cancelled``, ``first_payment_declined``). With ``effective_at`` (an import) nothing
        is charged before the first renewal after now.

        Raises ``CustomerNotFound``, ``PlanNotFound``, ``PaymentMethodNotFound``,
        ``InvalidQuantity``, ``InvalidEffectiveAt``, ``NoEligibleGateway``,
        ``CardAttemptLimitReached``, ``IdempotencyKeyReused``, ``IdempotencyKeyInProgress``,
        ``GatewayOutcomeUnknown``.
        """
        command = CreateSubscription(
            customer_id, plan_id, payment_method_id, quantity, effective_at
        )
        now = self.now()

        def start() -> tuple[Subscription, Customer, Plan]:
            customer = self.get_customer(tenant_id, customer_id)
            plan = self.get_plan(tenant_id, plan_id)
            method = customer.payment_method(payment_method_id)
            subscription = Subscription.start(
                tenant_id=tenant_id,
                customer_id=customer.id,
                terms=plan.terms,
                quantity=quantity,
                payment_method_id=method["id"],
                trial_days=plan.trial_days,
                effective_at=effective_at or now,
                now=now,
                imported=effective_at is not None,
                setup_fee_minor=plan.setup_fee_minor,
            )
            return subscription, customer, plan

        if effective_at is not None:

            def prepare_import() -> Step:
                subscription = start()[0]
                return Step([subscription], subscription_body(subscription))

            return self.run(tenant_id, idempotency_key, command, prepare_import)

        def build() -> Charge | Subscription:
            subscription, customer, plan = start()
            if subscription.status is SubscriptionStatus.TRIALING:
                return subscription
            setup_fee = int(subscription.state["setup_fee_minor"])
            order = self._charge_order(
                subscription, customer, subscription.price_minor, setup_fee, "first"
            )
            details = {"period_index": 0, "setup_fee_minor": setup_fee}
            return subscription, customer, order, "first", details

        return self._charge(tenant_id, idempotency_key, command, build, None)

    def advance_subscription(
        self, *, tenant_id: str, subscription_id: UUID
    ) -> CommandResult | None:
        """Do what is due now for a subscription: renew, retry, learn a lost charge's outcome,
        end at period end, or churn; None when nothing is due. Safe to run any number of times,
        concurrently (one key per period and retry).

        Raises ``SubscriptionNotFound``, ``IdempotencyKeyInProgress``,
        ``ConcurrentModification``, ``GatewayOutcomeUnknown``.
        """
        subscription = self.get_subscription(tenant_id, subscription_id)
        policy = self.dunning_policy(tenant_id)
        now = self.now()
        due = subscription.due(now, policy)
        if due is None:
            return None
        if due.action == "learn":
            return self._learn(subscription)
        if due.action in ("end", "churn"):

            def prepare() -> Step:
                current = self.get_subscription(tenant_id, subscription_id)
                again = current.due(now, policy)
                if again is None or again.action != due.action:
                    return Step([], subscription_body(current))
                if due.action == "end":
                    current.end_at_period_end(now=now)
                else:
                    # At the deadline, however late the job runs (MRR counts until then).
                    deadline = datetime.fromisoformat(current.state["dunning"]["churn_at"])
                    current.churn(
                        reason=due.details["reason"], now=now, effective_at=min(now, deadline)
                    )
                return Step([current], subscription_body(current))

            return self.run(tenant_id, None, ChargeDue(subscription_id, due.action), prepare)
        return self._charge_due(tenant_id, subscription_id, due.key, (subscription, policy))

    def advance_subscriptions(
        self, due: list[tuple[str, UUID]]
    ) -> list[CommandResult | Exception | None]:
        """``advance_subscription`` for each (tenant, subscription), with what they read
        fetched ahead in three round trips for the whole batch (subscriptions; their
        customers, plans, tenants' settings and idempotency records; their cards' scheme
        usage) instead of a read per aggregate per command. Each item's result, or the
        error it met (the others go on)."""
        results: list[CommandResult | Exception | None] = []
        with self.reading_ahead():
            subscriptions = self.read_ahead(sid for _, sid in due)
            owned, shared, customers_of = [], [], {}
            now = self.now()
            for tenant_id, sid in due:
                subscription = subscriptions.get(sid)
                if not isinstance(subscription, Subscription):
                    continue
                shared += [
                    BillingSettings.create_id(tenant_id=tenant_id),
                    gateway_directory_id(tenant_id),
                ]
                plan_ids = {subscription.state["plan_id"]}
                if subscription.state["scheduled_change"]:
                    plan_ids.add(subscription.state["scheduled_change"]["plan_id"])
                shared += [UUID(plan_id) for plan_id in plan_ids]
                owned.append(subscription.customer_id)
                customers_of[sid] = subscription.customer_id
                next_due = subscription.due(now, DunningPolicy())
                if next_due is not None and next_due.key:
                    owned.append(idempotency_record_id(tenant_id + BILLING_SCOPE, next_due.key))
            self.read_ahead(shared, shared=True)
            customers = self.read_ahead(owned)
            usages = []
            for tenant_id, sid in due:
                customer = customers.get(customers_of.get(sid))  # type: ignore[arg-type]
                subscription = subscriptions.get(sid)
                if not isinstance(customer, Customer) or subscription is None:
                    continue
                method = customer.payment_methods.get(subscription.state["payment_method_id"])
                if method is not None:
                    usages.append(
                        CardUsage.create_id(tenant_id, card_digest(method, str(customer.id)))
                    )
            self.read_ahead(usages)
            for tenant_id, sid in due:
                try:
                    results.append(
                        self.advance_subscription(tenant_id=tenant_id, subscription_id=sid)
                    )
                except Exception as error:  # one item's failure is its own (the caller logs)
                    results.append(error)
        return results

    def retry_subscription_now(
        self, *, tenant_id: str, subscription_id: UUID
    ) -> CommandResult | None:
        """Retry a past-due subscription's failed period at once (its card was updated);
        None if it is not past due."""
        subscription = self.get_subscription(tenant_id, subscription_id)
        if (
            subscription.status is not SubscriptionStatus.PAST_DUE
            or subscription.pending_charge is not None
        ):
            return None
        dunning = subscription.state["dunning"]
        key = subscription._charge_key(dunning["period_index"], dunning["failures"])
        return self._charge_due(tenant_id, subscription_id, key)

    def retry_past_due(
        self, *, tenant_id: str, subscription_ids: list[UUID], payment_method_id: str
    ) -> int:
        """Retry at once the past-due subscriptions among these that are paid with
        ``payment_method_id`` (whose card was just replaced); how many were retried. A retry
        already running elsewhere, or refused, is left to the dunning schedule."""
        retried = 0
        for subscription_id in subscription_ids:
            try:
                subscription = self.get_subscription(tenant_id, subscription_id)
                if subscription.state["payment_method_id"] != payment_method_id:
                    continue
                if self.retry_subscription_now(
                    tenant_id=tenant_id, subscription_id=subscription_id
                ):
                    retried += 1
            except DomainError as error:
                logger.info("retry of subscription %s: %s", subscription_id, error.code)
        return retried

    def _charge_due(
        self,
        tenant_id: str,
        subscription_id: UUID,
        key: str,
        loaded: tuple[Subscription, DunningPolicy] | None = None,
    ) -> CommandResult:
        """Charge the period (or retry) that ``key`` names; a key already used replays.

        Its idempotency record lives in the tenant's billing scope (``BILLING_SCOPE``), apart
        from the keys API clients send, so no client key can take a renewal's. ``loaded``: the
        subscription and policy the caller just read (the save checks the version anyway)."""
        policy = loaded[1] if loaded else self.dunning_policy(tenant_id)
        first = [loaded[0]] if loaded else []

        def build() -> Charge | Subscription:
            subscription = (
                first.pop() if first else self.get_subscription(tenant_id, subscription_id)
            )
            customer = self.get_customer(tenant_id, subscription.customer_id)
            setup_fee = int(subscription.state.get("setup_fee_minor") or 0)
            if subscription.status is SubscriptionStatus.PAST_DUE:
                dunning = subscription.state["dunning"]
                retry = dunning["failures"]
                expected = subscription._charge_key(dunning["period_index"], retry)
                if expected != key:
                    return subscription  # this retry was run already
                amount = policy.retry_amount(subscription.price_minor, retry)
                purpose, details = "retry", {"period_index": dunning["period_index"]}
            else:
                due = subscription.due(self.now(), policy)
                if due is None or due.action != "renew" or due.key != key:
                    return subscription  # renewed already, or nothing due
                terms, quantity = subscription.renewal_terms(self._current_terms(tenant_id))
                amount = terms.amount_minor * quantity
                purpose = "renewal"
                details = {
                    "period_index": due.details["period_index"],
                    "terms": terms.as_dict(),
                    "quantity": quantity,
                }
            details["setup_fee_minor"] = setup_fee
            if amount + setup_fee > AMOUNT_MINOR_MAX:
                # One charge may not move this much (a plan's new price × many seats): the
                # period fails like a decline, and dunning decides what follows.
                subscription.refuse_charge(
                    purpose=purpose, amount_minor=amount + setup_fee, key=key,
                    decline_code="amount_too_large", now=self.now(), policy=policy,
                    details=details,
                )  # fmt: skip
                return subscription
            order = self._charge_order(subscription, customer, amount, setup_fee, purpose)
            return subscription, customer, order, purpose, details

        return self._charge(
            tenant_id, key, ChargeDue(subscription_id, key), build, policy, BILLING_SCOPE
        )

    def _current_terms(self, tenant_id: str) -> Callable[[str], Terms]:
        return lambda plan_id: self.get_plan(tenant_id, UUID(plan_id)).terms

    def _charge_order(
        self,
        subscription: Subscription,
        customer: Customer,
        amount_minor: int,
        setup_fee_minor: int,
        purpose: str,
    ) -> Order:
        lines = [
            {"sku": f"subscription-{purpose}", "quantity": 1, "unit_price_minor": amount_minor}
        ]
        if setup_fee_minor:
            lines.append(
                {
                    "sku": "subscription-setup-fee",
                    "quantity": 1,
                    "unit_price_minor": setup_fee_minor,
                }
            )
        return Order.place(
            tenant_id=subscription.tenant_id,
            customer_id=customer.id,
            currency=subscription.terms.currency,
            lines=lines,
            source="subscription",
        )

    def _charge(
        self,
        tenant_id: str,
        idempotency_key: str | None,
        command: Any,
        build: Callable[[], Charge | Subscription],
        policy: DunningPolicy | None,
        scope: str = "",
    ) -> CommandResult:
        """Charge a subscription: its charge request and the order's payment intent in one
        save, the gateway, then the outcome on both in one save. ``build`` returns the
        subscription alone when there is nothing to charge (it is saved as it is: a trial)."""
        saved: list[Any] = []

        def prepare() -> Step:
            built = build()
            if isinstance(built, Subscription):
                saved.clear()
                return Step([built], subscription_body(built))
            subscription, customer, order, purpose, details = built
            now = self.now()
            method = {"payment_method_id": subscription.state["payment_method_id"]}
            try:
                attempt, *companions = self.purchase_intent(customer, order, method)
            except CardAttemptLimitReached as refused:
                if purpose not in ("renewal", "retry"):
                    raise
                # The scheme allows no attempt on this card now: a failed renewal, no call.
                subscription.refuse_charge(
                    purpose=purpose, amount_minor=order.total_minor, key=idempotency_key or "",
                    decline_code=refused.code, now=now,
                    policy=policy or self.dunning_policy(subscription.tenant_id), details=details,
                )  # fmt: skip
                saved.clear()
                return Step([subscription], subscription_body(subscription))
            subscription.request_charge(
                order_id=order.id,
                purpose=purpose,
                amount_minor=order.total_minor,
                key=idempotency_key or "",
                now=now,
                details=details,
            )
            saved[:] = [customer, order, attempt, subscription]
            return Step(
                [subscription, order, attempt, *companions],
                subscription_body(subscription),
                {"attempt_id": str(attempt.id), "subscription_id": str(subscription.id)},
            )

        def finish(resume: dict[str, Any], first: bool) -> Step:
            if "attempt_id" not in resume:  # nothing was charged (a trial, a replay)
                subscription = self.get_subscription(tenant_id, UUID(resume["subscription_id"]))
                return Step([], subscription_body(subscription))
            fresh = first and bool(saved)
            order, aggregates, known = self.finish_purchase(
                UUID(resume["attempt_id"]), tuple(saved[:3]) if fresh else None
            )
            subscription = (
                saved[3]
                if fresh
                else self.get_subscription(tenant_id, UUID(resume["subscription_id"]))
            )
            if known and self._settle(subscription, order, policy):
                aggregates = [*aggregates, subscription]
            return Step(aggregates, subscription_body(subscription), complete=known)

        def prepare_with_resume() -> Step:
            step = prepare()
            if step.resume is None:
                # Nothing at the gateway: a single-step save (the key records the body).
                return Step(step.aggregates, step.body, {"subscription_id": step.body["id"]})
            return step

        # ``scope``: the idempotency records' namespace within the tenant (renewals have one).
        return self.run(tenant_id + scope, idempotency_key, command, prepare_with_resume, finish)

    def _settle(
        self, subscription: Subscription, order: Order, policy: DunningPolicy | None
    ) -> bool:
        """Apply the order's payment outcome to the subscription's pending charge for it;
        False if the subscription is not waiting for this order (settled already)."""
        pending = subscription.pending_charge
        if pending is None or pending["order_id"] != str(order.id):
            return False
        now = self.now()
        if order.status in (OrderStatus.PAID, OrderStatus.AUTHORIZED):
            subscription.charge_succeeded(now=now)
            return True
        if order.status is OrderStatus.DECLINED:
            code = order.decline_code or "generic_decline"
            subscription.charge_failed(
                decline_code=code,
                hard=code in HARD_DECLINE_CODES,
                now=now,
                policy=policy or self.dunning_policy(subscription.tenant_id),
            )
            return True
        return False  # still processing: the outcome is not known yet

    def _learn(self, subscription: Subscription) -> CommandResult | None:
        """Finish a charge nobody recorded the outcome of (its request died, or the answer was
        lost): the gateway is asked again with the attempt's own key, so nothing moves twice."""
        pending = subscription.pending_charge
        assert pending is not None
        order = self.get_order(subscription.tenant_id, UUID(pending["order_id"]))
        attempts = self.attempts(order)
        if not attempts:
            return None
        order, aggregates, known = self.finish_purchase(attempts[-1].id)
        subscription = self.get_subscription(subscription.tenant_id, subscription.id)
        if known and self._settle(subscription, order, None):
            aggregates = [*aggregates, subscription]
        if not aggregates:
            return None
        position = self.save_all(aggregates)
        return CommandResult(subscription_body(subscription), position)

    # Changes without a charge, or with one (upgrade, reactivation) ------------------------------

    def cancel_subscription(
        self,
        *,
        tenant_id: str,
        subscription_id: UUID,
        at_period_end: bool = False,
        effective_at: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> CommandResult:
        """Raises ``SubscriptionNotFound``, ``SubscriptionNotActive``, ``ChargeInProgress``,
        ``InvalidEffectiveAt``."""
        policy = self.dunning_policy(tenant_id)
        return self._change(
            tenant_id, subscription_id, "cancel", {"at_period_end": at_period_end},
            effective_at, idempotency_key,
            lambda s, at: s.cancel(at_period_end=at_period_end, effective_at=at, policy=policy),
        )  # fmt: skip

    def pause_subscription(
        self,
        *,
        tenant_id: str,
        subscription_id: UUID,
        effective_at: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> CommandResult:
        return self._change(
            tenant_id, subscription_id, "pause", {}, effective_at, idempotency_key,
            lambda s, at: s.pause(effective_at=at),
        )  # fmt: skip

    def resume_subscription(
        self,
        *,
        tenant_id: str,
        subscription_id: UUID,
        effective_at: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> CommandResult:
        return self._change(
            tenant_id, subscription_id, "resume", {}, effective_at, idempotency_key,
            lambda s, at: s.resume(effective_at=at),
        )  # fmt: skip

    def _change(
        self,
        tenant_id: str,
        subscription_id: UUID,
        action: str,
        arguments: dict[str, Any],
        effective_at: datetime | None,
        idempotency_key: str | None,
        change: Callable[[Subscription, datetime], None],
    ) -> CommandResult:
        command = SubscriptionCommand(
            subscription_id, action, tuple(sorted(arguments.items())), effective_at
        )

        def prepare() -> Step:
            subscription = self.get_subscription(tenant_id, subscription_id)
            now = self.now()
            at = effective_at or now
            subscription.check_effective_at(at, now)
            change(subscription, at)
            return Step([subscription], subscription_body(subscription))

        return self.run(tenant_id, idempotency_key, command, prepare)

    def reactivate_subscription(
        self,
        *,
        tenant_id: str,
        subscription_id: UUID,
        effective_at: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> CommandResult:
        """Withdraw a cancellation scheduled for the period's end, or bring an ended
        subscription back: its first period of a new cycle is charged now (an import records
        it as billed elsewhere). Raises ``SubscriptionNotFound``, ``SubscriptionNotActive``,
        ``ChargeInProgress``, ``InvalidEffectiveAt``, ``GatewayOutcomeUnknown``."""
        command = SubscriptionCommand(subscription_id, "reactivate", (), effective_at)
        now = self.now()
        at = effective_at or now

        def build() -> Charge | Subscription:
            subscription = self.get_subscription(tenant_id, subscription_id)
            subscription.check_effective_at(at, now)
            if subscription.state["cancel_at_period_end"]:
                subscription.withdraw_cancellation(effective_at=at)
                return subscription
            if subscription.reactivate_within_paid_period(effective_at=at):
                return subscription  # its paid days are not billed again
            if effective_at is not None:
                subscription.reactivate_imported(effective_at=at, now=now)
                return subscription
            details = subscription.reactivation(effective_at=at)
            customer = self.get_customer(tenant_id, subscription.customer_id)
            terms, quantity = subscription.renewal_terms(self._current_terms(tenant_id))
            setup_fee = int(subscription.state.get("setup_fee_minor") or 0)
            order = self._charge_order(
                subscription, customer, terms.amount_minor * quantity, setup_fee, "reactivation"
            )
            details.update(terms=terms.as_dict(), quantity=quantity, setup_fee_minor=setup_fee)
            return subscription, customer, order, "reactivation", details

        return self._charge(tenant_id, idempotency_key, command, build, None)

    def change_subscription_payment_method(
        self,
        *,
        tenant_id: str,
        subscription_id: UUID,
        payment_method_id: UUID,
        effective_at: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> CommandResult:
        """Charge another card of the customer from now on; a past-due subscription is retried
        with it at once (the answer shows the retry's outcome). Raises
        ``SubscriptionNotFound``, ``PaymentMethodNotFound``, ``SubscriptionNotActive``,
        ``ChargeInProgress``, ``InvalidEffectiveAt``."""

        def change(subscription: Subscription, at: datetime) -> None:
            customer = self.get_customer(tenant_id, subscription.customer_id)
            method = customer.payment_method(payment_method_id)
            subscription.change_payment_method(payment_method_id=method["id"], effective_at=at)

        changed = self._change(
            tenant_id, subscription_id, "payment_method",
            {"payment_method_id": str(payment_method_id)}, effective_at, idempotency_key, change,
        )  # fmt: skip
        if changed.replayed or changed.body["status"] != SubscriptionStatus.PAST_DUE.value:
            return changed
        try:
            retried = self.retry_subscription_now(
                tenant_id=tenant_id, subscription_id=subscription_id
            )
        except DomainError as error:  # in progress elsewhere: the schedule retries it
            logger.info("retry of subscription %s: %s", subscription_id, error.code)
            return changed
        return retried or changed

    def change_subscription_plan(
        self,
        *,
        tenant_id: str,
        subscription_id: UUID,
        plan_id: UUID,
        quantity: int | None = None,
        effective_at: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> CommandResult:
        """An upgrade applies now once the prorated difference for the rest of the period is
        paid (declined: nothing changes); a downgrade applies at the period's end; a trial, an
        equal price or an import applies now without a charge.

        Raises ``SubscriptionNotFound``, ``PlanNotFound``, ``PlanMismatch``,
        ``InvalidQuantity``, ``SubscriptionNotActive``, ``CancellationScheduled``,
        ``ChargeInProgress``, ``InvalidEffectiveAt``, ``GatewayOutcomeUnknown``.
        """
        command = SubscriptionCommand(
            subscription_id, "change_plan", (("plan_id", plan_id), ("quantity", quantity)),
            effective_at,
        )  # fmt: skip
        now = self.now()
        at = effective_at or now

        def build() -> Charge | Subscription:
            subscription = self.get_subscription(tenant_id, subscription_id)
            subscription.check_effective_at(at, now)
            plan = self.get_plan(tenant_id, plan_id)
            terms: Terms = plan.terms
            new_quantity = subscription.quantity if quantity is None else quantity
            how, prorated = subscription.plan_change(
                terms=terms, quantity=new_quantity, effective_at=at,
                imported=effective_at is not None,
            )  # fmt: skip
            if how == "now":
                subscription.change_plan_now(terms=terms, quantity=new_quantity, effective_at=at)
                return subscription
            if how == "period_end":
                subscription.schedule_plan_change(
                    terms=terms, quantity=new_quantity, effective_at=at
                )
                return subscription
            customer = self.get_customer(tenant_id, subscription.customer_id)
            order = self._charge_order(subscription, customer, prorated, 0, "upgrade")
            change = {**terms.as_dict(), "quantity": new_quantity}
            return subscription, customer, order, "upgrade", {"change": change}

        return self._charge(tenant_id, idempotency_key, command, build, None)
