"""The routing policy: pure, deterministic, never picks a gateway that may not take a payment."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.routing import (
    HARD_DECLINE_CODES,
    GatewayHealth,
    GatewaySnapshot,
    PaymentFacts,
    RoutingConfig,
    bin_in_range,
    breaker_verdict,
    chargeback_ratio_verdict,
    exclusion_reason,
    is_hard_decline,
    route,
    success_score,
)

CURRENCIES = ["USD", "EUR", "GBP", "JPY"]
BRANDS = ["visa", "mastercard", "amex"]
STATIC = RoutingConfig()
ADAPTIVE = RoutingConfig(mode="adaptive", hedging_share_bps=2000)


def gateway(gateway_id: str, **fields: object) -> GatewaySnapshot:
    defaults: dict[str, object] = {
        "name": gateway_id,
        "processor": "sandbox",
        "currencies": ("USD",),
        "card_brands": ("visa",),
        "monthly_cap_minor": 10_000,
        "weight": 1,
    }
    return GatewaySnapshot(gateway_id=gateway_id, **{**defaults, **fields})  # type: ignore[arg-type]


PAYMENT = PaymentFacts(currency="USD", brand="visa", bin="424242", country="US", amount_minor=100)

gateways_strategy = st.lists(
    st.builds(
        GatewaySnapshot,
        gateway_id=st.uuids().map(str),
        name=st.just("g"),
        processor=st.sampled_from(["sandbox", "spreedly"]),
        currencies=st.lists(st.sampled_from(CURRENCIES), min_size=1, unique=True).map(tuple),
        card_brands=st.lists(st.sampled_from(BRANDS), min_size=1, unique=True).map(tuple),
        monthly_cap_minor=st.integers(1, 10_000),
        weight=st.integers(0, 100),
        bin_ranges=st.sampled_from([(), (("400000", "499999"),), (("510000", "559999"),)]),
        countries=st.sampled_from([(), ("US",), ("DE", "FR")]),
        enabled=st.booleans(),
        tripped=st.booleans(),
    ),
    max_size=8,
    unique_by=lambda g: g.gateway_id,
)
payments_strategy = st.builds(
    PaymentFacts,
    currency=st.sampled_from(CURRENCIES),
    brand=st.sampled_from(BRANDS),
    bin=st.sampled_from(["424242", "555555", "378282"]),
    country=st.sampled_from(["US", "DE", None]),
    amount_minor=st.integers(1, 10_000),
)
volumes_strategy = st.dictionaries(st.sampled_from(CURRENCIES), st.integers(0, 10_000))


@settings(max_examples=300)
@given(
    gateways_strategy,
    payments_strategy,
    volumes_strategy,
    st.integers(0, 2**64),
    st.sampled_from([STATIC, ADAPTIVE]),
)
def test_routing_never_selects_a_gateway_that_may_not_take_the_payment(
    gateways: list[GatewaySnapshot],
    payment: PaymentFacts,
    volumes: dict[str, int],
    seed: int,
    config: RoutingConfig,
) -> None:
    health = {g.gateway_id: GatewayHealth(approved_minor_by_currency=volumes) for g in gateways}

    decision = route(
        gateways, payment, health, seed=seed, config=config, processors=frozenset({"sandbox"})
    )

    by_id = {g.gateway_id: g for g in gateways}
    for gateway_id in decision.ordered:
        chosen = by_id[gateway_id]
        assert chosen.enabled and not chosen.tripped
        assert chosen.processor == "sandbox"
        assert payment.currency in chosen.currencies
        assert payment.brand in chosen.card_brands
        assert volumes.get(payment.currency, 0) + payment.amount_minor <= chosen.monthly_cap_minor
        assert not chosen.countries or payment.country in chosen.countries
    # Every gateway is either ordered or excluded with a reason, never both, never lost.
    excluded = {e["gateway_id"] for e in decision.record["excluded"]}
    assert excluded.isdisjoint(decision.ordered)
    assert excluded | set(decision.ordered) == set(by_id)
    assert json.loads(json.dumps(decision.record)) == decision.record


@settings(max_examples=200)
@given(
    gateways_strategy, payments_strategy, st.integers(0, 2**64), st.sampled_from([STATIC, ADAPTIVE])
)
def test_routing_is_deterministic_for_a_seed_whatever_the_order_of_the_candidates(
    gateways: list[GatewaySnapshot], payment: PaymentFacts, seed: int, config: RoutingConfig
) -> None:
    first = route(gateways, payment, {}, seed=seed, config=config)
    again = route(list(reversed(gateways)), payment, {}, seed=seed, config=config)

    assert first == again


def test_each_excluded_gateway_names_its_reason() -> None:
    gateways = [
        gateway("a-off", enabled=False),
        gateway("b-tripped", tripped=True),
        gateway("c-eur", currencies=("EUR",)),
        gateway("d-amex", card_brands=("amex",)),
        gateway("e-bin", bin_ranges=(("510000", "559999"),)),
        gateway("f-de", countries=("DE",)),
        gateway("g-full", monthly_cap_minor=150),
        gateway("h-spreedly", processor="spreedly"),
        gateway("i-ok"),
    ]
    health = {"g-full": GatewayHealth(approved_minor_by_currency={"USD": 100})}

    decision = route(
        gateways, PAYMENT, health, seed=1, config=STATIC, processors=frozenset({"sandbox"})
    )

    assert decision.ordered == ("i-ok",)
    assert decision.chosen == "i-ok"
    assert {e["gateway_id"]: e["reason"] for e in decision.record["excluded"]} == {
        "a-off": "disabled",
        "b-tripped": "tripped",
        "c-eur": "currency_not_accepted",
        "d-amex": "card_brand_not_accepted",
        "e-bin": "bin_not_in_ranges",
        "f-de": "country_not_accepted",
        "g-full": "monthly_cap_reached",
        "h-spreedly": "processor_not_configured",
    }


def test_weights_share_traffic_in_proportion_and_weight_zero_is_only_a_fallback() -> None:
    gateways = [gateway("heavy", weight=3), gateway("light", weight=1), gateway("spare", weight=0)]

    firsts = [route(gateways, PAYMENT, {}, seed=s, config=STATIC).ordered for s in range(4000)]

    heavy_share = sum(order[0] == "heavy" for order in firsts) / len(firsts)
    assert 0.70 < heavy_share < 0.80
    assert all(order[-1] == "spare" for order in firsts)


def test_adaptive_mode_prefers_the_best_success_rate_and_hedges_a_share_to_the_others() -> None:
    gateways = [gateway("good"), gateway("poor")]
    health = {
        "good": GatewayHealth(outcomes=(("USD:visa", True),) * 9 + (("USD:visa", False),)),
        "poor": GatewayHealth(outcomes=(("USD:visa", False),) * 9 + (("EUR:visa", True),) * 5),
    }

    firsts = [route(gateways, PAYMENT, health, seed=s, config=ADAPTIVE).chosen for s in range(2000)]

    poor_share = firsts.count("poor") / len(firsts)
    assert 0.15 < poor_share < 0.25  # the hedging share (20%), the rest to the best
    decision = route(gateways, PAYMENT, health, seed=0, config=ADAPTIVE)
    scores = {c["gateway_id"]: c["score"] for c in decision.record["considered"]}
    assert scores["good"] == {"approvals": 9, "attempts": 10, "score_bps": 8333}
    assert scores["poor"]["attempts"] == 9  # the EUR outcomes are another segment


def test_already_attempted_gateways_are_excluded_from_a_cascade() -> None:
    decision = route(
        [gateway("a"), gateway("b")], PAYMENT, {}, seed=5, config=STATIC, already_attempted=["a"]
    )

    assert decision.ordered == ("b",)
    assert decision.record["excluded"] == [{"gateway_id": "a", "reason": "already_attempted"}]


def test_gateways_whose_cap_reservation_was_refused_are_excluded_as_over_cap() -> None:
    decision = route(
        [gateway("a", weight=100), gateway("b")], PAYMENT, {}, seed=5, config=STATIC, over_cap=["a"]
    )

    assert decision.ordered == ("b",)
    assert decision.record["excluded"] == [{"gateway_id": "a", "reason": "over_cap"}]


def test_bin_ranges_compare_on_the_digits_both_have() -> None:
    assert bin_in_range("424242", "42424200", "42424299")
    assert bin_in_range("424242", "400000", "499999")
    assert not bin_in_range("555555", "400000", "499999")
    assert bin_in_range("424242", "424200", "42429999")  # bounds of different lengths
    assert not bin_in_range("424242", "42424300", "42429999")
    assert bin_in_range("42424242", "42424200", "42424299")  # an 8-digit BIN
    assert not bin_in_range("42424242", "42424243", "42424299")
    assert exclusion_reason(gateway("g"), PAYMENT, GatewayHealth(), None) is None


def test_hard_declines_are_the_documented_card_problems_and_the_rest_is_soft() -> None:
    for code in ("lost_card", "stolen_card", "pickup_card", "fraudulent", "invalid_account"):
        assert is_hard_decline(code)
    assert "do_not_honor_hard" in HARD_DECLINE_CODES and "restricted_card" in HARD_DECLINE_CODES
    for code in ("insufficient_funds", "generic_decline", "do_not_honor", "processing_error"):
        assert not is_hard_decline(code)


def test_the_breaker_trips_below_the_approval_rate_once_the_sample_is_large_enough() -> None:
    config = RoutingConfig(breaker_sample_min=4, breaker_approval_rate_bps_min=5000)
    three_failures = (("USD:visa", False),) * 3

    assert breaker_verdict(three_failures, config) is None  # too few to judge
    assert breaker_verdict((*three_failures, ("USD:visa", True)), config) is not None
    assert breaker_verdict((("USD:visa", True),) * 2 + three_failures[:2], config) is None


def test_the_chargeback_ratio_trips_at_the_threshold() -> None:
    assert chargeback_ratio_verdict(1, 100, 100) is not None
    assert chargeback_ratio_verdict(0, 100, 100) is None
    assert chargeback_ratio_verdict(1, 101, 100) is None  # 99 bps, rounded down
    assert chargeback_ratio_verdict(5, 0, 100) is None
    assert chargeback_ratio_verdict(5, 10, None) is None


def test_the_chargeback_ratio_needs_the_minimum_sample_of_settled_transactions() -> None:
    assert chargeback_ratio_verdict(1, 2, 100, transactions_min=20) is None
    assert chargeback_ratio_verdict(1, 19, 100, transactions_min=20) is None
    verdict = chargeback_ratio_verdict(1, 20, 100, transactions_min=20)
    assert verdict is not None and "500 bps" in verdict


def test_an_unseen_gateway_scores_one_half() -> None:
    assert success_score((), "USD:visa", 50) == {"approvals": 0, "attempts": 0, "score_bps": 5000}
