"""Money movements at the gateway: purchases and refunds, each bracketed by events.

Every call to the gateway follows one pattern. The intent (``PaymentAttempt.Requested`` with
``Order.PaymentRequested``, or ``Order.RefundRequested``) is saved first; the gateway is called
with the intent's id as its idempotency key; the outcome is saved after. A call that raises is
recorded as an unknown outcome — never as a decline, never as nothing — and a later call with the
same key learns the real outcome without moving money twice.

Routing: a tenant with no gateway keeps the default processor (``self.gateway``, its books keyed
by the tenant). A tenant with gateways has each purchase routed by ``domain.routing.route``; the
attempt records the gateway, its processor adapter (``processors`` maps names to adapters), the
account at the processor (its books) and the decision. On a *soft* decline with another
candidate left and fewer than ``routing.cascade_depth`` attempts made, the decline, the
``CascadedTo`` link and the next attempt's intent are saved in one transaction before the next
gateway is called; a retry of the command follows the links to the latest attempt, so a crash
mid-cascade neither charges a finished attempt again nor skips one. Each routed outcome is
counted in the gateway's figures (``GatewayFigures``, once per attempt) as soon as it is known,
and a collapsed approval rate trips the gateway's breaker in the save of the outcome.
Every attempt (routed or on the default processor) counts against the card scheme's retry
limits (``CardUsage``), saved with its intent.
The monthly cap holds under concurrency: each routed intent reserves its amount on the chosen
gateway in the figures (atomically against the cap) before it is saved; a refused reservation is
routed around (``over_cap`` in the decision). A decline frees the reservation, an approval keeps
it, an unknown outcome keeps it until learnt; an intent whose save is refused frees it
(``abandoned``).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate
from eventsourcing.utils import EnvType

from application.commands import OUTCOME_SAVE_ATTEMPTS, ConcurrentModification
from application.gateways import OUTCOMES_READ, GatewayCommands, GatewayFigures, month_of
from application.ports import GatewayOutcome, PaymentGateway
from domain.card_usage import CardAttemptLimitReached, CardUsage, card_digest
from domain.customer import Customer
from domain.errors import DomainError, InvalidInput
from domain.gateway import Gateway
from domain.money import InvalidAmount
from domain.order import Order
from domain.payment_attempt import AttemptStatus, PaymentAttempt
from domain.routing import GatewayHealth, PaymentFacts, RoutingConfig, breaker_verdict, route

logger = logging.getLogger(__name__)


class UnsupportedPaymentMode(InvalidInput):
    code = "unsupported_payment_mode"


class OperationDeclined(DomainError):
    """The processor refused a capture or void; the authorization stands as it was."""

    code = "operation_declined"


class RefundDeclined(DomainError):
    """The processor refused the refund; nothing was given back and the reservation is freed."""

    code = "refund_declined"


class NoEligibleGateway(InvalidInput):
    """None of the tenant's gateways may take this payment (currency, brand, caps, health)."""

    code = "no_eligible_gateway"


class PaymentCommands(GatewayCommands):
    """The gateway half of order commands; ``orders`` decides what to move, this moves it."""

    def __init__(
        self,
        env: EnvType | None = None,
        *,
        processors: Mapping[str, PaymentGateway] | None = None,
        routing: RoutingConfig | None = None,
        gateway_figures: GatewayFigures | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(env, **kwargs)
        # Processor adapters by name besides the default ``gateway`` (which serves its own name).
        self.processors: dict[str, PaymentGateway] = dict(processors or {})
        self.routing = routing or RoutingConfig()
        # Needed by routed payments only (``bootstrap_ledger`` always gives one).
        self.gateway_figures = gateway_figures

    def request_purchase(
        self, customer: Customer, order: Order, payment: dict[str, Any]
    ) -> PaymentAttempt:
        """The attempt of ``purchase_intent`` (prefer that: it also returns what to save)."""
        attempt = self.purchase_intent(customer, order, payment)[0]
        assert isinstance(attempt, PaymentAttempt)
        return attempt

    def purchase_intent(
        self, customer: Customer, order: Order, payment: dict[str, Any]
    ) -> list[Aggregate]:
        """Record the intent to purchase the order's total with a card on file; returns the
        attempt first, then the other aggregates to save with the order.

        Raises ``UnsupportedPaymentMode``, ``InvalidAmount``, ``PaymentMethodNotFound``,
        ``OrderNotPayable``, ``PaymentInProgress``, ``NoEligibleGateway``,
        ``CardAttemptLimitReached``.
        """
        mode = payment.get("mode", "purchase")
        if mode not in ("purchase", "authorize"):
            raise UnsupportedPaymentMode(
                "the payment mode is 'purchase' or 'authorize'", param="payment.mode"
            )
        if order.total_minor == 0:
            raise InvalidAmount(
                "an order paid at once needs a total above zero; omit payment", param="payment"
            )
        method = customer.payment_method(payment.get("payment_method_id", ""))
        gateways = self.tenant_gateways(order.tenant_id)
        if gateways:
            routed = self._routed_intent(customer, order, method, mode, gateways, None)
            assert routed is not None  # a first attempt raises instead
            return routed
        attempt = PaymentAttempt(
            tenant_id=order.tenant_id,
            order_id=order.id,
            payment_method_id=UUID(method["id"]),
            kind=mode,
            gateway=self.gateway.name,
            amount_minor=order.total_minor,
            currency=order.currency,
        )
        # The default processor's attempts count against the card's scheme limits too.
        intent = self._counted_intent(order, method, mode, attempt, self.gateway.name, None)
        assert intent is not None  # a first attempt raises instead
        return intent

    def _routed_intent(
        self,
        customer: Customer,
        order: Order,
        method: dict[str, Any],
        kind: str,
        gateways: list[Gateway],
        previous: PaymentAttempt | None,
    ) -> list[Aggregate] | None:
        """The next routed attempt (the first, or the one a soft decline cascades to) with its
        card usage; None when a cascade has no candidate left or the card's limit is reached.

        Raises (first attempts only) ``NoEligibleGateway``, ``CardAttemptLimitReached``.
        """
        facts = PaymentFacts(
            currency=order.currency,
            brand=method["brand"],
            bin=method["bin"],
            country=customer.country,
            amount_minor=order.total_minor,
        )
        attempted: list[str] = []
        if previous is not None and previous.routing is not None:
            attempted = [*previous.routing.get("attempted_before", []), str(previous.gateway_id)]
        # Deterministic per order and attempt, recorded in the decision: replays choose the same.
        digest = hashlib.sha256(f"{order.id}:{len(order.attempt_ids)}".encode()).digest()
        # The chosen gateway's cap is held by a reservation of the amount (atomic in the
        # figures); one refused (concurrent payments took its headroom since the figures were
        # read) is routed around, on fresh figures, and recorded as ``over_cap``.
        over_cap: list[str] = []
        while True:
            decision = route(
                [gateway.snapshot() for gateway in gateways],
                facts,
                self._health(gateways),
                seed=int.from_bytes(digest[:8], "big"),
                config=self.routing,
                processors=frozenset({self.gateway.name, *self.processors}),
                already_attempted=attempted,
                over_cap=over_cap,
            )
            if decision.chosen is None:
                if previous is None:
                    raise NoEligibleGateway(
                        "no gateway of this tenant accepts this payment: "
                        + ", ".join(
                            f"{e['gateway_id']} {e['reason']}" for e in decision.record["excluded"]
                        ),
                        param="payment",
                    )
                return None
            gateway = next(g for g in gateways if str(g.id) == decision.chosen)
            record = {
                **decision.record,
                "cascade_index": 0 if previous is None else previous.cascade_index + 1,
                "cascade_from": None if previous is None else str(previous.id),
                "attempted_before": attempted,
            }
            attempt = PaymentAttempt(
                tenant_id=order.tenant_id,
                order_id=order.id,
                payment_method_id=UUID(method["id"]),
                kind=kind,
                gateway=gateway.name,
                amount_minor=order.total_minor,
                currency=order.currency,
                gateway_id=str(gateway.id),
                processor=gateway.processor,
                account_id=gateway.account_id,
                routing=record,
            )
            if self._figures().reserve(
                gateway_id=str(gateway.id),
                attempt_id=attempt.id,
                month=month_of(self.now()),
                currency=attempt.currency,
                amount_minor=attempt.amount_minor,
                cap_minor=gateway.monthly_cap_minor,
            ):
                break
            over_cap.append(str(gateway.id))
        try:
            intent = self._counted_intent(order, method, kind, attempt, str(gateway.id), previous)
        except BaseException:
            self._figures().release(attempt.id)  # no intent: nothing may hold the cap
            raise
        if intent is None:
            self._figures().release(attempt.id)
        return intent

    def _counted_intent(
        self,
        order: Order,
        method: dict[str, Any],
        kind: str,
        attempt: PaymentAttempt,
        gateway_id: str,
        previous: PaymentAttempt | None,
    ) -> list[Aggregate] | None:
        """The attempt counted in the card's scheme usage and requested on the order, with the
        usage; None when a cascade reaches the card's limit. ``gateway_id``: what the order
        records as the attempt's gateway (the gateway's id, or the default processor's name)."""
        usage = self._card_usage(order.tenant_id, order.customer_id, method)
        try:
            usage.count_attempt(brand=method["brand"], attempt_id=attempt.id, at=self.now())
        except CardAttemptLimitReached:
            if previous is None:
                raise
            return None  # the decline stands: the scheme allows no further attempt
        order.request_payment(
            attempt_id=attempt.id,
            kind=kind,
            gateway=gateway_id,
            amount_minor=order.total_minor,
        )
        return [attempt, usage]

    def _card_usage(self, tenant_id: str, customer_id: UUID, method: dict[str, Any]) -> CardUsage:
        """The card's scheme usage, keyed by the customer and the card (brand, BIN, last 4,
        expiry), not by the vault token: attaching the same card again must not reset its
        count. Per customer, so that customers sharing a processor's test card (the sandbox,
        the demo) do not share one count and one aggregate version."""
        digest = card_digest(method, str(customer_id))
        try:
            usage = self.repository.get(CardUsage.create_id(tenant_id, digest))
        except AggregateNotFoundError:
            return CardUsage.start(tenant_id, digest)
        assert isinstance(usage, CardUsage)
        return usage

    def finish_purchase(
        self,
        attempt_id: UUID,
        saved: tuple[Customer, Order, PaymentAttempt] | None = None,
        *,
        cascade: bool = True,
    ) -> tuple[Order, list[Any], bool]:
        """Call the gateway for a requested attempt (the latest of its cascade) and apply its
        outcome; a soft decline of a routed attempt cascades (when ``cascade``).

        ``saved``: the aggregates just saved with the intent (current, so not loaded again).
        Returns the order, the aggregates to save, and whether the outcome is known.
        """
        for _ in range(self.routing.cascade_depth + OUTCOME_SAVE_ATTEMPTS):
            if saved is not None:
                customer, order, attempt = saved
            else:
                attempt = self.latest_attempt(attempt_id)
                order = self.repository.get(attempt.order_id)
                customer = self.repository.get(order.customer_id)
            if attempt.resolved:
                return order, [], True  # another request finished it
            order, aggregates, known = self._purchase_outcome(customer, order, attempt)
            if not (known and cascade and attempt.status is AttemptStatus.DECLINED):
                return order, aggregates, known
            following = self._cascade(customer, order, attempt)
            if following is None:
                return order, aggregates, known
            try:
                # The decline and the next intent in one transaction, before the next call.
                self.save_all([*aggregates, *following])
            except ConcurrentModification:
                self.abandoned(following)  # the next intent was not saved: free its cap
                saved = None  # load the chain again: the retry follows it where it got to
                continue
            next_attempt = following[0]
            assert isinstance(next_attempt, PaymentAttempt)
            saved = (customer, order, next_attempt)
        raise ConcurrentModification("the outcome could not be saved; retry with the same key")

    def _purchase_outcome(
        self, customer: Customer, order: Order, attempt: PaymentAttempt
    ) -> tuple[Order, list[Any], bool]:
        method = customer.payment_method(attempt.payment_method_id)

        def call() -> GatewayOutcome:
            processor = self._processor(attempt)
            charge = processor.authorize if attempt.kind == "authorize" else processor.purchase
            return charge(
                account_id=attempt.account_id or order.tenant_id,
                token=method["token"],
                amount_minor=attempt.amount_minor,
                currency=attempt.currency,
                idempotency_key=attempt.id,
                reference=str(order.id),
            )

        outcome = self._call(attempt.kind, attempt, call)
        if outcome is None:
            if attempt.status is AttemptStatus.REQUESTED:
                attempt.record_outcome_unknown(reason="the gateway did not answer")
                order.record_payment_outcome_unknown(attempt_id=attempt.id)
            return order, [attempt, order], False
        if outcome.succeeded:
            attempt.succeed(transaction_id=outcome.transaction_id or "")
            if attempt.kind == "authorize":
                order.record_authorization(attempt_id=attempt.id, amount_minor=attempt.amount_minor)
            else:
                order.record_capture(attempt_id=attempt.id, amount_minor=attempt.amount_minor)
        else:
            decline_code = outcome.decline_code or "generic_decline"
            attempt.decline(
                decline_code=decline_code,
                message=outcome.message,
                transaction_id=outcome.transaction_id,
            )
            order.record_decline(attempt_id=attempt.id, decline_code=decline_code)
        return order, [attempt, order, *self._record_health(attempt)], True

    def abandoned(self, aggregates: list[Any]) -> None:
        """Free the cap reservations of routed intents whose save was refused (never sent)."""
        for aggregate in aggregates:
            if (
                isinstance(aggregate, PaymentAttempt)
                and aggregate.gateway_id is not None
                and aggregate.status is AttemptStatus.REQUESTED
                and self.gateway_figures is not None
            ):
                self.gateway_figures.release(aggregate.id)

    def _figures(self) -> GatewayFigures:
        assert self.gateway_figures is not None, "routed payments need gateway figures"
        return self.gateway_figures

    def _health(self, gateways: list[Gateway]) -> dict[str, GatewayHealth]:
        return self._figures().health(
            [str(gateway.id) for gateway in gateways],
            month=month_of(self.now()),
            since={str(gateway.id): gateway.reset_at for gateway in gateways},
            outcomes_max=max(OUTCOMES_READ, self.routing.window_size),
        )

    def _record_health(self, attempt: PaymentAttempt) -> list[Aggregate]:
        """Count a routed outcome in its gateway's figures (once per attempt, whatever the
        retries); if its approval rate collapsed, trip its breaker (saved with the outcome)."""
        if attempt.gateway_id is None or attempt.routing is None:
            return []
        approved = attempt.status is AttemptStatus.SUCCEEDED
        if attempt.status is AttemptStatus.DECLINED and attempt.hard_decline:
            # A hard decline (lost or stolen card, fraud, ...) is about the card, not the
            # gateway: a burst of them (card testing) must not trip a healthy gateway, nor
            # steer adaptive routing. Its cap reservation is freed; nothing is counted.
            self._figures().release(attempt.id)
            return []
        now = self.now()
        self._figures().record(
            gateway_id=attempt.gateway_id,
            attempt_id=attempt.id,
            segment=f"{attempt.currency}:{attempt.routing['payment']['brand']}",
            approved=approved,
            currency=attempt.currency,
            amount_minor=attempt.amount_minor,
            month=month_of(now),
            at=now,
        )
        if approved:
            return []
        gateway: Gateway = self.repository.get(UUID(attempt.gateway_id))
        if gateway.tripped:
            return []
        health = self._health([gateway])[attempt.gateway_id]
        verdict = breaker_verdict(health.outcomes, self.routing)
        if verdict is None:
            return []
        gateway.trip(reason=verdict)
        return [gateway]

    def _cascade(
        self, customer: Customer, order: Order, declined: PaymentAttempt
    ) -> list[Aggregate] | None:
        """The next attempt after a soft decline of a routed attempt, linked to it, or None."""
        if (
            declined.hard_decline
            or declined.routing is None
            or declined.cascade_index + 1 >= self.routing.cascade_depth
        ):
            return None
        method = customer.payment_method(declined.payment_method_id)
        gateways = self.tenant_gateways(order.tenant_id)
        following = self._routed_intent(customer, order, method, declined.kind, gateways, declined)
        if following is not None:
            declined.cascade_to(next_attempt_id=following[0].id)
        return following

    def latest_attempt(self, attempt_id: UUID) -> PaymentAttempt:
        """The last attempt of the cascade that starts at (or passes through) ``attempt_id``."""
        attempt: PaymentAttempt = self.repository.get(attempt_id)
        while attempt.cascaded_to is not None:
            attempt = self.repository.get(attempt.cascaded_to)
        return attempt

    def _processor(self, attempt: PaymentAttempt) -> PaymentGateway:
        """The adapter of the attempt's processor (the default gateway for unrouted attempts).

        Raises ``KeyError`` (inside a gateway call: an unknown outcome) if it is not configured.
        """
        name = attempt.processor
        if name is None or name == self.gateway.name:
            return self.gateway
        return self.processors[name]

    def finish_refund(
        self, order_id: UUID, refund_id: str, saved: Order | None = None
    ) -> tuple[Order, bool, RefundDeclined | None]:
        """Call the gateway for a requested refund and apply its outcome.

        ``saved``: the order just saved with the intent (current, so not loaded again).
        Returns the order (to save), whether the outcome is known, and the processor's refusal.
        """
        order: Order = saved if saved is not None else self.repository.get(order_id)
        amount_minor = order.pending_refunds.get(refund_id)
        if amount_minor is None:
            return order, True, None  # another request finished it
        charge = self._captured_attempt(order)
        outcome = self._call(
            "refund",
            charge,
            lambda: self._processor(charge).refund(
                account_id=charge.account_id or order.tenant_id,
                transaction_id=charge.money_transaction_id or "",
                amount_minor=amount_minor,
                currency=order.currency,
                idempotency_key=UUID(refund_id),
                reference=str(order.id),
            ),
        )
        if outcome is None:
            if refund_id not in order.refunds_outcome_unknown:
                order.record_refund_outcome_unknown(refund_id=refund_id)
            return order, False, None
        if outcome.succeeded:
            order.complete_refund(refund_id=refund_id)
            return order, True, None
        decline_code = outcome.decline_code or "declined"
        order.fail_refund(refund_id=refund_id, decline_code=decline_code)
        declined = RefundDeclined(f"the processor declined the refund ({decline_code})")
        return order, True, declined

    def finish_operation(
        self, order_id: UUID, operation_id: str, saved: Order | None = None
    ) -> tuple[Order, list[Any], bool, DomainError | None]:
        """Call the gateway for a requested capture or void of the order's authorization.

        Returns the order, the aggregates to save, whether the outcome is known, and the
        processor's refusal.
        """
        order: Order = saved if saved is not None else self.repository.get(order_id)
        operation = order.pending(operation_id)
        if operation is None:
            return order, [], True, None  # another request finished it
        attempt: PaymentAttempt = self.repository.get(order.attempt_ids[-1])
        key = UUID(operation_id)
        if operation["kind"] == "capture":
            amount_minor = operation["amount_minor"]

            def call() -> GatewayOutcome:
                return self._processor(attempt).capture(
                    account_id=attempt.account_id or order.tenant_id,
                    transaction_id=attempt.transaction_id or "",
                    amount_minor=amount_minor,
                    currency=order.currency,
                    idempotency_key=key,
                    reference=str(order.id),
                )
        else:

            def call() -> GatewayOutcome:
                return self._processor(attempt).void(
                    account_id=attempt.account_id or order.tenant_id,
                    transaction_id=attempt.transaction_id or "",
                    idempotency_key=key,
                    reference=str(order.id),
                )

        outcome = self._call(operation["kind"], attempt, call)
        if outcome is None:
            if operation_id not in order.operations_outcome_unknown:
                order.record_operation_outcome_unknown(operation_id=operation_id)
            return order, [order], False, None
        if not outcome.succeeded:
            code = outcome.decline_code or "declined"
            order.fail_operation(operation_id=operation_id, decline_code=code)
            refused = OperationDeclined(f"the processor declined the {operation['kind']} ({code})")
            return order, [order], True, refused
        if operation["kind"] == "capture":
            attempt.record_capture(
                transaction_id=outcome.transaction_id or "", amount_minor=operation["amount_minor"]
            )
            order.complete_capture(operation_id=operation_id, attempt_id=attempt.id)
        else:
            attempt.record_void()
            order.complete_void(operation_id=operation_id)
        return order, [order, attempt], True, None

    def reconcile_attempt(self, attempt_id: UUID) -> str:
        """Learn the outcome of an attempt whose caller never did, and record it.

        The call is repeated with the attempt's own gateway idempotency key, so the processor
        answers with the original transaction if there was one, and nothing moves twice. Run it
        only for attempts older than the claim lease (no request still in flight). Returns the
        attempt's status afterwards (``unknown`` if the gateway still did not answer).
        """
        for _ in range(OUTCOME_SAVE_ATTEMPTS):
            _order, aggregates, _known = self.finish_purchase(attempt_id, cascade=False)
            try:
                self.save_all(aggregates)
                break
            except ConcurrentModification:
                continue  # a client's retry recorded it meanwhile: look again
        attempt = self.latest_attempt(attempt_id)
        return attempt.status.value

    def reconcile_call(self, order_id: UUID, call_id: str) -> str:
        """Learn the outcome of a capture, void or refund nobody learnt, and record it.

        Like ``reconcile_attempt``: the call is repeated with its own gateway key. Returns
        ``resolved``, or ``unknown`` while the gateway still does not answer.
        """
        for _ in range(OUTCOME_SAVE_ATTEMPTS):
            order: Order = self.repository.get(order_id)
            if call_id in order.pending_refunds:
                order, known, _refused = self.finish_refund(order_id, call_id, order)
                aggregates: list[Any] = [order]
            elif order.pending(call_id) is not None:
                order, aggregates, known, _ = self.finish_operation(order_id, call_id, order)
            else:
                return "resolved"  # a client's retry (or an earlier pass) finished it
            try:
                self.save_all(aggregates)
            except ConcurrentModification:
                continue
            return "resolved" if known else "unknown"
        return "unknown"

    def no_longer_in_flight(self, resume: dict[str, Any]) -> bool:
        if "refund_id" in resume:
            order: Order = self.repository.get(UUID(resume["order_id"]))
            refund_id = resume["refund_id"]
            return (
                refund_id in order.refunds_outcome_unknown or refund_id not in order.pending_refunds
            )
        if "attempt_id" in resume:
            # The latest attempt of a cascade: an earlier one is resolved when the next exists.
            attempt = self.latest_attempt(UUID(resume["attempt_id"]))
            return attempt.status is not AttemptStatus.REQUESTED
        if "operation_id" in resume:
            order = self.repository.get(UUID(resume["order_id"]))
            operation_id = resume["operation_id"]
            return (
                operation_id in order.operations_outcome_unknown
                or order.pending(operation_id) is None
            )
        return False

    def attempts(self, order: Order) -> list[PaymentAttempt]:
        return [self.repository.get(attempt_id) for attempt_id in order.attempt_ids]

    def _captured_attempt(self, order: Order) -> PaymentAttempt:
        for attempt in reversed(self.attempts(order)):
            if attempt.status is AttemptStatus.SUCCEEDED:
                return attempt
        raise AssertionError("a refundable order has a succeeded attempt")  # pragma: no cover

    def _call(self, what: str, attempt: PaymentAttempt, call: Any) -> GatewayOutcome | None:
        """The gateway's outcome, or None when the call raised (the outcome is unknown)."""
        try:
            return call()  # type: ignore[no-any-return]
        except Exception:
            # Whatever the cause (timeout, reset connection, a bug in an adapter), the processor
            # may have acted: the caller records an unknown outcome for reconciliation.
            logger.exception(
                "%s for attempt %s: no answer from %s", what, attempt.id, attempt.gateway
            )
            return None
