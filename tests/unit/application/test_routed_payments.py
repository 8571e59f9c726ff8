"""Routed purchases: gateways chosen by the policy, cascades on soft declines, breakers, limits.

The sandbox keeps each merchant account's own books (keyed by the gateway id, or its
``processor_account``); an account id ending in ``+decline_<code>`` declines every charge.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from adapters.bootstrap import bootstrap_ledger
from adapters.gateways.sandbox import SandboxGateway, SandboxVault
from application.commands import CLAIM_LEASE_S, ConcurrentModification, GatewayOutcomeUnknown
from application.gateways import month_of
from application.idempotency import IdempotencyKeyInProgress
from application.ledger import Ledger
from application.payments import NoEligibleGateway
from application.ports import GatewayOutcome
from domain.card_usage import CardAttemptLimitReached
from domain.gateway import GatewayNotTripped, UnknownProcessor, tenant_account_id
from domain.payment_attempt import AttemptStatus, PaymentAttempt
from domain.routing import RoutingConfig

TENANT = "acme"
TODAY = datetime(2026, 6, 15, tzinfo=UTC)
GOOD_CARD = "4242424242424242"
MASTERCARD = "5555555555554444"
LOST_CARD = "4000000000009987"
TIMEOUT_CARD = "4000000000000911"
LINES = [{"sku": "MUG", "quantity": 2, "unit_price_minor": 1250}]


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


class HookedSandbox(SandboxGateway):
    """The sandbox, with a hook that runs after the processor acted on the next money call."""

    def __init__(self) -> None:
        super().__init__()
        self.after: Callable[[], None] | None = None
        self.calls: list[str] = []

    def purchase(self, **request: Any) -> GatewayOutcome:
        self.calls.append(request["account_id"])
        after, self.after = self.after, None
        outcome = super().purchase(**request)
        if after:
            after()
        return outcome


def killed() -> None:
    raise SystemExit("the process died")  # not an Exception: nothing after it is saved


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sandbox() -> HookedSandbox:
    return HookedSandbox()


def make_ledger(sandbox: SandboxGateway, clock: Clock, **routing: Any) -> Ledger:
    return bootstrap_ledger(
        vault=SandboxVault(now=lambda: TODAY),
        gateway=sandbox,
        routing=RoutingConfig(**routing),
        fingerprint_secret=b"test",
        now=clock,
    )


@pytest.fixture
def app(sandbox: HookedSandbox, clock: Clock) -> Ledger:
    return make_ledger(sandbox, clock)


def register(app: Ledger, name: str, **config: Any) -> dict[str, Any]:
    fields = {
        "name": name,
        "processor": "sandbox",
        "currencies": ["USD"],
        "card_brands": ["visa", "mastercard"],
        "monthly_cap_minor": 1_000_000,
        "weight": 1,
        **config,
    }
    return app.register_gateway(tenant_id=TENANT, config=fields).body


def declining(code: str = "insufficient_funds") -> str:
    return f"acct+decline_{code}"


def customer_with_card(app: Ledger, card: str = GOOD_CARD) -> tuple[UUID, str]:
    customer = app.register_customer(
        tenant_id=TENANT, email="a@example.com", name="Ada", country="US", currency="USD"
    ).body
    method = app.attach_payment_method(
        tenant_id=TENANT,
        customer_id=UUID(customer["id"]),
        card_number=card,
        exp_month=12,
        exp_year=TODAY.year + 2,
        cvc="123",
    ).body
    return UUID(customer["id"]), method["id"]


def purchase(
    app: Ledger, card: str = GOOD_CARD, key: str | None = "k1", currency: str = "USD"
) -> dict[str, Any]:
    customer_id, method_id = customer_with_card(app, card)
    return app.place_order(**order_request(customer_id, method_id, key, currency)).body


def order_request(
    customer_id: UUID, method_id: str, key: str | None = "k1", currency: str = "USD"
) -> dict[str, Any]:
    return {
        "tenant_id": TENANT,
        "customer_id": customer_id,
        "currency": currency,
        "lines": LINES,
        "payment": {"payment_method_id": method_id, "mode": "purchase"},
        "idempotency_key": key,
    }


def attempt_of(app: Ledger, entry: dict[str, Any]) -> PaymentAttempt:
    attempt = app.repository.get(UUID(entry["attempt_id"]))
    assert isinstance(attempt, PaymentAttempt)
    return attempt


def account(name: str) -> str:
    """The sandbox account a gateway of the tenant's named ``name`` (its processor_account or
    id) charges: scoped to the tenant."""
    return tenant_account_id(TENANT, "sandbox", name)


def charges(sandbox: SandboxGateway, name: str) -> list[Any]:
    return [t for _, t in sandbox.book.transactions(account(name)) if t.kind == "charge"]


def test_a_tenant_without_gateways_charges_the_default_sandbox_in_its_own_books(
    app: Ledger, sandbox: HookedSandbox
) -> None:
    order = purchase(app)

    assert order["status"] == "paid"
    assert order["payment"]["history"][0]["gateway_id"] == "sandbox"
    attempt = attempt_of(app, order["payment"]["history"][0])
    assert (attempt.gateway_id, attempt.routing) == (None, None)
    assert sandbox.calls == [TENANT]


def test_a_soft_decline_cascades_to_the_next_gateway_which_charges(
    app: Ledger, sandbox: HookedSandbox
) -> None:
    first = register(app, "first", weight=10_000, processor_account=declining())
    second = register(app, "second", weight=0)

    order = purchase(app)

    assert order["status"] == "paid"
    history = order["payment"]["history"]
    assert [(h["gateway_id"], h["outcome"], h["decline_code"]) for h in history] == [
        (first["id"], "declined", "insufficient_funds"),
        (second["id"], "succeeded", None),
    ]
    assert order["payment"]["attempts"] == 2
    declined, charged = (attempt_of(app, h) for h in history)
    assert declined.cascaded_to == charged.id
    assert charged.routing is not None and charged.routing["cascade_from"] == str(declined.id)
    assert charged.routing["excluded"] == [
        {"gateway_id": first["id"], "reason": "already_attempted"}
    ]
    assert [t.status for t in charges(sandbox, declining())] == ["declined"]
    assert [t.status for t in charges(sandbox, second["id"])] == ["succeeded"]


def test_the_decision_is_recorded_in_the_requested_event_as_json(app: Ledger) -> None:
    usd = register(app, "usd")
    eur = register(app, "eur", currencies=["EUR"])

    order = purchase(app)

    attempt = attempt_of(app, order["payment"]["history"][0])
    assert attempt.gateway_id == usd["id"] and attempt.account_id == account(usd["id"])
    requested = next(iter(app.events.get(attempt.id)))
    assert isinstance(requested, PaymentAttempt.Requested)
    decision = json.loads(json.dumps(requested.routing))
    assert decision["chosen"] == usd["id"]
    assert decision["excluded"] == [{"gateway_id": eur["id"], "reason": "currency_not_accepted"}]
    assert {c["gateway_id"] for c in decision["considered"]} == {usd["id"], eur["id"]}


def test_a_hard_decline_never_cascades(app: Ledger, sandbox: HookedSandbox) -> None:
    register(app, "first", weight=10_000)
    register(app, "second", weight=0)

    order = purchase(app, card=LOST_CARD)

    assert order["status"] == "declined"
    assert [h["decline_code"] for h in order["payment"]["history"]] == ["lost_card"]
    assert len(sandbox.calls) == 1


def test_a_cascade_stops_at_the_configured_depth(sandbox: HookedSandbox, clock: Clock) -> None:
    app = make_ledger(sandbox, clock, cascade_depth=2)
    for index in range(3):
        register(app, f"g{index}", processor_account=declining(f"processing_error{index}"))

    order = purchase(app)

    assert order["status"] == "declined"
    assert order["payment"]["attempts"] == 2
    assert len(sandbox.calls) == 2


def test_a_payment_no_gateway_accepts_is_refused_before_anything_is_saved(app: Ledger) -> None:
    register(app, "eur only", currencies=["EUR"])
    customer_id, method_id = customer_with_card(app)

    with pytest.raises(NoEligibleGateway):
        app.place_order(**order_request(customer_id, method_id))


def test_a_gateway_over_its_monthly_cap_is_skipped(app: Ledger) -> None:
    small = register(app, "small", monthly_cap_minor=3000, weight=10_000)
    large = register(app, "large", weight=0)

    first = purchase(app, key="k1")
    second = purchase(app, key="k2")

    assert first["payment"]["history"][0]["gateway_id"] == small["id"]
    assert second["payment"]["history"][0]["gateway_id"] == large["id"]


def test_a_gateway_whose_processor_is_not_configured_is_skipped(app: Ledger) -> None:
    register(app, "spreedly", processor="spreedly", weight=10_000)
    sandbox_gateway = register(app, "sandbox", weight=0)

    order = purchase(app)

    assert order["payment"]["history"][0]["gateway_id"] == sandbox_gateway["id"]


def test_a_crash_mid_cascade_is_resumed_by_a_retry_at_the_latest_attempt(
    app: Ledger, sandbox: HookedSandbox, clock: Clock
) -> None:
    register(app, "first", weight=10_000, processor_account=declining())
    second = register(app, "second", weight=0)
    customer_id, method_id = customer_with_card(app)
    request = order_request(customer_id, method_id, key="checkout-1")

    # The first call declines and cascades; the process dies after the second one charged.
    sandbox.after = lambda: setattr(sandbox, "after", killed)
    with pytest.raises(SystemExit):
        app.place_order(**request)
    assert len(charges(sandbox, second["id"])) == 1
    with pytest.raises(IdempotencyKeyInProgress):  # the second attempt may still be running
        app.place_order(**request)

    clock.now += timedelta(seconds=CLAIM_LEASE_S + 1)
    retry = app.place_order(**request).body

    assert retry["status"] == "paid"
    assert [h["outcome"] for h in retry["payment"]["history"]] == ["declined", "succeeded"]
    assert len(charges(sandbox, second["id"])) == 1  # the retry learnt it: not charged again
    assert len(charges(sandbox, declining())) == 1  # the finished attempt was not sent again
    assert sandbox.calls == [account(declining()), account(second["id"]), account(second["id"])]


def test_a_retry_after_a_lost_answer_in_a_cascade_looks_at_the_latest_attempt(
    app: Ledger, sandbox: HookedSandbox
) -> None:
    register(app, "first", weight=10_000, processor_account=declining())
    second = register(app, "second", weight=0)
    customer_id, method_id = customer_with_card(app, TIMEOUT_CARD)
    request = order_request(customer_id, method_id, key="checkout-1")

    with pytest.raises(GatewayOutcomeUnknown):
        app.place_order(**request)
    retry = app.place_order(**request).body

    assert retry["status"] == "paid"
    assert [h["outcome"] for h in retry["payment"]["history"]] == ["declined", "succeeded"]
    assert len(charges(sandbox, second["id"])) == 1


def test_the_reconciler_finishes_a_routed_attempt_at_its_own_account(
    app: Ledger, sandbox: HookedSandbox
) -> None:
    only = register(app, "only")
    with pytest.raises(GatewayOutcomeUnknown):
        purchase(app, card=TIMEOUT_CARD)
    order = app.get_order(TENANT, _order_id_of_last_charge(sandbox, only["id"]))

    assert app.reconcile_attempt(order.attempt_ids[-1]) == "succeeded"
    assert app.get_order(TENANT, order.id).status.value == "paid"
    assert len(charges(sandbox, only["id"])) == 1


def _order_id_of_last_charge(sandbox: SandboxGateway, account_id: str) -> UUID:
    return UUID(charges(sandbox, account_id)[-1].reference)


def test_a_collapsed_approval_rate_trips_the_gateway_which_routing_then_skips(
    sandbox: HookedSandbox, clock: Clock
) -> None:
    app = make_ledger(
        sandbox, clock, breaker_sample_min=3, breaker_approval_rate_bps_min=5000, window_size=10
    )
    failing = register(app, "failing", weight=10_000, processor_account=declining())
    backup = register(app, "backup", weight=0)

    for index in range(3):
        purchase(app, key=f"k{index}")
    tripped = app.read_gateway(TENANT, UUID(failing["id"]))
    after_trip = purchase(app, key="after")

    assert tripped["tripped"] is True and "approval rate" in tripped["tripped_reason"]
    assert [h["gateway_id"] for h in after_trip["payment"]["history"]] == [backup["id"]]
    decision = attempt_of(app, after_trip["payment"]["history"][0]).routing
    assert decision is not None
    assert {"gateway_id": failing["id"], "reason": "tripped"} in decision["excluded"]

    reset = app.reset_gateway(tenant_id=TENANT, gateway_id=UUID(failing["id"])).body
    assert reset["tripped"] is False
    again = purchase(app, key="after-reset")
    assert again["payment"]["history"][0]["gateway_id"] == failing["id"]
    with pytest.raises(GatewayNotTripped):
        app.reset_gateway(tenant_id=TENANT, gateway_id=UUID(backup["id"]))


def open_chargeback(app: Ledger, order: dict[str, Any], key: str | None = None) -> Any:
    return app.open_chargeback(
        tenant_id=TENANT,
        order_id=UUID(order["id"]),
        amount_minor=order["total_minor"],
        reason_code="10.4",
        idempotency_key=key,
    )


def test_chargebacks_reaching_the_ratio_threshold_trip_the_capturing_gateway_in_their_save(
    sandbox: HookedSandbox, clock: Clock
) -> None:
    app = make_ledger(sandbox, clock, chargeback_breaker_transactions_min=4)
    risky = register(app, "risky", weight=10_000, chargeback_ratio_threshold_bps=5_000)
    backup = register(app, "backup", weight=0)
    orders = [purchase(app, key=f"k{index}") for index in range(4)]
    assert {order["payment"]["history"][0]["gateway_id"] for order in orders} == {risky["id"]}

    open_chargeback(app, orders[0])  # 1 of 4 settled: 2,500 bps
    below = app.read_gateway(TENANT, UUID(risky["id"]))
    reaching = open_chargeback(app, orders[1])  # 2 of 4: 5,000 bps
    tripped = app.read_gateway(TENANT, UUID(risky["id"]))
    after_trip = purchase(app, key="after")

    assert below["tripped"] is False
    assert tripped["tripped"] is True
    assert tripped["tripped_reason"].startswith("chargeback ratio 5000 bps")
    # The chargeback and the trip are the last two events of one save.
    saved = list(app.notification_log.select(start=reaching.position - 1, limit=2))
    assert [n.topic.rsplit(".", 1)[-1] for n in saved] == ["ChargebackOpened", "Tripped"]
    assert saved[-1].id == reaching.position
    decision = attempt_of(app, after_trip["payment"]["history"][0]).routing
    assert after_trip["payment"]["history"][0]["gateway_id"] == backup["id"]
    assert decision is not None
    assert {"gateway_id": risky["id"], "reason": "tripped"} in decision["excluded"]


def test_a_reset_gateway_is_routed_again_and_judged_on_the_month_after_the_reset(
    sandbox: HookedSandbox, clock: Clock
) -> None:
    app = make_ledger(sandbox, clock, chargeback_breaker_transactions_min=2)
    risky = register(app, "risky", weight=10_000, chargeback_ratio_threshold_bps=5_000)
    register(app, "backup", weight=0)
    orders = [purchase(app, key=f"k{index}") for index in range(2)]
    open_chargeback(app, orders[0])
    assert app.read_gateway(TENANT, UUID(risky["id"]))["tripped"] is True

    clock.now += timedelta(seconds=1)
    app.reset_gateway(tenant_id=TENANT, gateway_id=UUID(risky["id"]))
    clock.now += timedelta(seconds=1)
    after_reset = purchase(app, key="after-reset")
    open_chargeback(app, orders[1])  # one settled transaction since the reset: too few

    assert after_reset["payment"]["history"][0]["gateway_id"] == risky["id"]
    assert app.read_gateway(TENANT, UUID(risky["id"]))["tripped"] is False


def test_one_chargeback_on_fewer_sales_than_the_minimum_sample_does_not_trip(app: Ledger) -> None:
    gateway = register(app, "small", chargeback_ratio_threshold_bps=100)
    orders = [purchase(app, key=f"k{index}") for index in range(2)]

    open_chargeback(app, orders[0])  # 5,000 bps, on 2 of the 100 settled transactions needed

    assert app.read_gateway(TENANT, UUID(gateway["id"]))["tripped"] is False


def test_a_chargeback_retried_with_its_key_after_a_failed_save_counts_once(
    sandbox: HookedSandbox, clock: Clock
) -> None:
    app = make_ledger(sandbox, clock, chargeback_breaker_transactions_min=2)
    risky = register(app, "risky", chargeback_ratio_threshold_bps=10_000)
    orders = [purchase(app, key=f"k{index}") for index in range(2)]
    save_all = app.save_all

    def failing_once(aggregates: list[Any]) -> int | None:
        app.save_all = save_all  # type: ignore[method-assign]
        raise ConcurrentModification("another request changed this resource")

    app.save_all = failing_once  # type: ignore[method-assign]
    with pytest.raises(ConcurrentModification):
        open_chargeback(app, orders[0], key="cb-1")
    open_chargeback(app, orders[0], key="cb-1")
    open_chargeback(app, orders[1], key="cb-2")  # 2 of 2: 10,000 bps only if cb-1 counts once

    assert app.read_gateway(TENANT, UUID(risky["id"]))["tripped"] is True
    since = datetime(clock.now.year, clock.now.month, 1, tzinfo=UTC)
    counts = app.gateway_figures.chargeback_counts(risky["id"], since=since)  # type: ignore[union-attr]
    assert (counts.chargebacks, counts.settled_transactions) == (2, 2)


def test_a_chargeback_on_an_order_of_a_tenant_without_gateways_trips_nothing(app: Ledger) -> None:
    order = purchase(app)

    opened = open_chargeback(app, order).body

    assert opened["status"] == "disputed"
    assert app.list_gateways(TENANT) == []


def test_a_mastercard_is_attempted_at_most_10_times_in_30_days_cascades_included(
    app: Ledger, sandbox: HookedSandbox, clock: Clock
) -> None:
    register(app, "first", weight=10_000, processor_account=declining())
    register(app, "second", weight=0)
    customer_id, method_id = customer_with_card(app, MASTERCARD)

    for index in range(5):  # two attempts each: a decline and its cascade
        app.place_order(**order_request(customer_id, method_id, key=f"k{index}"))
    calls = len(sandbox.calls)
    with pytest.raises(CardAttemptLimitReached):
        app.place_order(**order_request(customer_id, method_id, key="k-over"))
    assert len(sandbox.calls) == calls == 10

    clock.now += timedelta(days=31)
    later = app.place_order(**order_request(customer_id, method_id, key="k-later")).body
    assert later["status"] == "paid"


def test_a_cascade_stops_when_the_card_reaches_its_limit(
    app: Ledger, sandbox: HookedSandbox
) -> None:
    register(app, "first", weight=10_000, processor_account=declining())
    register(app, "second", weight=0)
    customer_id, method_id = customer_with_card(app, MASTERCARD)
    for index in range(4):
        app.place_order(**order_request(customer_id, method_id, key=f"k{index}"))
    assert len(sandbox.calls) == 8

    last = app.place_order(**order_request(customer_id, method_id, key="k-last")).body
    assert last["status"] == "paid"  # attempts 9 and 10
    with pytest.raises(CardAttemptLimitReached):
        app.place_order(**order_request(customer_id, method_id, key="k-over"))


def test_gateways_are_listed_updated_and_validated_per_tenant(app: Ledger) -> None:
    created = register(app, "main", bin_ranges=[["424242", "424299"]], countries=["US"])
    app.register_gateway(
        tenant_id="other",
        config={
            "name": "theirs",
            "processor": "sandbox",
            "currencies": ["EUR"],
            "card_brands": ["visa"],
            "monthly_cap_minor": 1,
        },
    )

    updated = app.update_gateway(
        tenant_id=TENANT, gateway_id=UUID(created["id"]), changes={"weight": 5, "enabled": False}
    ).body

    assert (updated["weight"], updated["enabled"], updated["name"]) == (5, False, "main")
    assert [g["id"] for g in app.list_gateways(TENANT)] == [created["id"]]
    with pytest.raises(UnknownProcessor):
        register(app, "bad", processor="stripe")


def test_a_disabled_gateway_is_never_routed_to(app: Ledger) -> None:
    off = register(app, "off", weight=10_000)
    on = register(app, "on", weight=0)
    app.update_gateway(tenant_id=TENANT, gateway_id=UUID(off["id"]), changes={"enabled": False})

    order = purchase(app)

    assert order["payment"]["history"][0]["gateway_id"] == on["id"]


def test_an_attempt_requested_before_routing_existed_loads_without_a_gateway_id(
    app: Ledger,
) -> None:
    order = purchase(app)
    attempt = attempt_of(app, order["payment"]["history"][0])
    stored = list(app.recorder.select_events(attempt.id))[0]  # type: ignore[attr-defined]
    state = json.loads(stored.state)
    state.pop("class_version", None)
    for field in ("gateway_id", "processor", "account_id", "routing"):
        state.pop(field, None)
    version_1 = replace(stored, state=json.dumps(state).encode())

    event = app.mapper.to_domain_event(version_1)

    assert isinstance(event, PaymentAttempt.Requested)
    assert (event.gateway_id, event.processor, event.account_id, event.routing) == (
        None,
        None,
        None,
        None,
    )
    assert attempt.status is AttemptStatus.SUCCEEDED


def test_adaptive_routing_moves_traffic_to_the_gateway_that_approves(
    sandbox: HookedSandbox, clock: Clock
) -> None:
    app = make_ledger(sandbox, clock, mode="adaptive", hedging_share_bps=0, cascade_depth=1)
    failing = register(app, "failing", weight=10_000, processor_account=declining())
    healthy = register(app, "healthy", weight=1)
    for index in range(6):
        purchase(app, key=f"warm-up-{index}")

    later = [purchase(app, key=f"k{index}") for index in range(5)]

    chosen = [order["payment"]["history"][0]["gateway_id"] for order in later]
    assert chosen == [healthy["id"]] * 5
    decision = attempt_of(app, later[-1]["payment"]["history"][0]).routing
    assert decision is not None and decision["mode"] == "adaptive"
    scores = {c["gateway_id"]: c["score"]["score_bps"] for c in decision["considered"]}
    assert scores[healthy["id"]] > scores[failing["id"]]


def test_attaching_the_same_card_again_does_not_reset_its_scheme_count(
    app: Ledger, sandbox: HookedSandbox
) -> None:
    register(app, "first", weight=10_000, processor_account=declining())
    register(app, "second", weight=0)
    customer_id, method_id = customer_with_card(app, MASTERCARD)
    for index in range(5):
        app.place_order(**order_request(customer_id, method_id, key=f"k{index}"))
    assert len(sandbox.calls) == 10

    # The same card under a new vault token.
    again = app.attach_payment_method(
        tenant_id=TENANT,
        customer_id=customer_id,
        card_number=MASTERCARD,
        exp_month=12,
        exp_year=TODAY.year + 2,
        cvc="123",
    ).body
    with pytest.raises(CardAttemptLimitReached):
        app.place_order(**order_request(customer_id, again["id"], key="again"))
    assert len(sandbox.calls) == 10


# --- monthly cap reservations ------------------------------------------------------------------


def committed(app: Ledger, clock: Clock, gateway: dict[str, Any]) -> int:
    """What the gateway's figures count against its cap this month (approved and held)."""
    assert app.gateway_figures is not None
    volume = app.gateway_figures.approved_volume([gateway["id"]], month=month_of(clock()))
    return volume[gateway["id"]].get("USD", 0)


def test_a_gateway_whose_reservation_is_refused_is_routed_around_and_recorded_over_cap(
    app: Ledger, clock: Clock
) -> None:
    small = register(app, "small", monthly_cap_minor=3000, weight=10_000)
    large = register(app, "large", weight=0)
    figures: Any = app.gateway_figures
    reserve = figures.reserve

    def raced(**request: Any) -> bool:
        # A concurrent purchase takes the small gateway's headroom after the figures were read.
        figures.reserve = reserve
        assert reserve(**{**request, "attempt_id": uuid4(), "amount_minor": 2500})
        return bool(reserve(**request))

    figures.reserve = raced
    paid = purchase(app)

    decision = attempt_of(app, paid["payment"]["history"][0]).routing
    assert paid["status"] == "paid"
    assert paid["payment"]["history"][0]["gateway_id"] == large["id"]
    assert decision is not None
    assert {"gateway_id": small["id"], "reason": "over_cap"} in decision["excluded"]
    # The decision records the figures it was taken on (read again after the refusal).
    small_seen = next(c for c in decision["considered"] if c["gateway_id"] == small["id"])
    assert small_seen["approved_minor"] == 2500
    assert (committed(app, clock, small), committed(app, clock, large)) == (2500, 2500)


def test_a_refused_reservation_with_no_other_gateway_is_no_eligible_gateway(
    app: Ledger, clock: Clock
) -> None:
    only = register(app, "only", monthly_cap_minor=2500)
    figures: Any = app.gateway_figures
    figures.reserve = lambda **request: False

    with pytest.raises(NoEligibleGateway, match="over_cap"):
        purchase(app)
    assert committed(app, clock, only) == 0


def test_a_decline_releases_its_reservation_and_an_approval_counts_once(
    app: Ledger, clock: Clock
) -> None:
    first = register(app, "first", weight=10_000, processor_account=declining())
    second = register(app, "second", weight=0, monthly_cap_minor=2500)

    paid = purchase(app, key="k1")
    again = purchase(app, key="k2")

    assert paid["status"] == "paid"
    assert (committed(app, clock, first), committed(app, clock, second)) == (0, 2500)
    # The second purchase: declined by the first, and the second's cap is taken.
    assert again["status"] == "declined"
    assert [h["gateway_id"] for h in again["payment"]["history"]] == [first["id"]]
    assert committed(app, clock, first) == 0


def test_an_unknown_outcome_keeps_its_reservation_until_the_outcome_is_learnt(
    app: Ledger, clock: Clock
) -> None:
    only = register(app, "only", monthly_cap_minor=2500)
    customer_id, method_id = customer_with_card(app, TIMEOUT_CARD)
    request = order_request(customer_id, method_id, key="checkout-1")

    with pytest.raises(GatewayOutcomeUnknown):
        app.place_order(**request)
    held = committed(app, clock, only)
    with pytest.raises(NoEligibleGateway):
        purchase(app, key="k2")  # the money may have moved: the cap stays taken
    retry = app.place_order(**request).body

    assert held == 2500
    assert retry["status"] == "paid"
    assert committed(app, clock, only) == 2500  # learnt: kept, not added again


def test_an_intent_whose_save_is_refused_frees_its_reservation(
    app: Ledger, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    only = register(app, "only", monthly_cap_minor=2500)
    customer_id, method_id = customer_with_card(app)
    save_all = app.save_all

    def conflicting(aggregates: Any) -> Any:
        if any(isinstance(a, PaymentAttempt) for a in aggregates):
            raise ConcurrentModification("another request saved first")
        return save_all(aggregates)

    monkeypatch.setattr(app, "save_all", conflicting)
    with pytest.raises(ConcurrentModification):
        app.place_order(**order_request(customer_id, method_id))
    monkeypatch.setattr(app, "save_all", save_all)

    assert committed(app, clock, only) == 0
    assert purchase(app, key="k2")["status"] == "paid"


def test_a_burst_of_hard_declines_is_the_cards_fault_and_never_trips_the_gateway(
    sandbox: HookedSandbox, clock: Clock
) -> None:
    app = make_ledger(
        sandbox, clock, breaker_sample_min=3, breaker_approval_rate_bps_min=5000, window_size=10
    )
    only = register(app, "only")
    for index in range(6):  # card testing: lost cards, each declined for the card's own reason
        assert purchase(app, card=LOST_CARD, key=f"lost-{index}")["status"] == "declined"

    assert app.read_gateway(TENANT, UUID(only["id"]))["tripped"] is False
    assert purchase(app, key="honest")["status"] == "paid"
