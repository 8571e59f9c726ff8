"""The routing policy: which merchant accounts (gateways) may take a payment, in which order.

Pure and deterministic: given the candidate gateways, the payment, each gateway's month-to-date
approved volume and recent outcomes, and a seed, ``route`` always returns the same order and the
same decision record. It reads no clock and does no I/O, so the decision recorded in an
attempt's ``Requested`` event can be replayed by an auditor from the inputs it also records.

Filters, in order (the first that fails is the reason a gateway is excluded): disabled, tripped
(circuit breaker), processor not configured, currency, card brand, BIN range, country, monthly
cap. The cap is per currency: a gateway's volume this month in the payment's currency (approved,
plus amounts reserved for attempts in flight) plus the payment may not exceed
``monthly_cap_minor``. The cap is enforced by reserving the amount on the chosen gateway when the
attempt is recorded: a gateway whose reservation was refused (concurrent payments took its
headroom) is passed as ``over_cap`` and excluded with that reason, so the decision still replays
from what it records.

Ordering:
- ``static``: a weighted draw without replacement (Efraimidis–Spirakis keys from a hash of the
  seed and the gateway id, so the order does not depend on the order of the input). A gateway
  of weight 0 is only ever a fallback, after every weighted one.
- ``adaptive``: the success rate of each gateway over its last ``window_size`` outcomes in the
  payment's (currency, brand) segment, Laplace-smoothed so an unseen gateway scores 1/2; the
  best first — except for a ``hedging_share_bps`` share of payments (drawn from the seed) whose
  first choice is another eligible gateway by weight, so a recovered gateway gets noticed.

Declines: a *hard* decline (``HARD_DECLINE_CODES``) says the card itself must not be charged
again — it never cascades; any other decline is *soft* and may cascade to the next candidate,
up to ``cascade_depth`` attempts per order payment.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# Declines that describe the card or the cardholder, not the gateway: another merchant account
# would be refused for the same reason, and retrying risks scheme fines or fraud. Everything not
# listed here is soft (insufficient funds, generic decline, processing error, do not honor, …).
HARD_DECLINE_CODES = frozenset(
    {
        "expired_card",
        "incorrect_cvc",
        "incorrect_number",
        "invalid_account",
        "lost_card",
        "stolen_card",
        "fraudulent",
        "pickup_card",
        "restricted_card",
        "do_not_honor_hard",
        "revocation_of_authorization",
        "security_violation",
        "card_not_supported",
        "invalid_card_number",
    }
)

CASCADE_DEPTH_DEFAULT = 3
ROUTING_MODES = ("static", "adaptive")
BPS = 10_000


def is_hard_decline(decline_code: str) -> bool:
    return decline_code in HARD_DECLINE_CODES


@dataclass(frozen=True, slots=True)
class RoutingConfig:
    """How the policy orders candidates and when a gateway's breaker trips (from settings)."""

    mode: str = "static"
    hedging_share_bps: int = 1_000
    window_size: int = 50
    cascade_depth: int = CASCADE_DEPTH_DEFAULT
    breaker_sample_min: int = 20
    breaker_approval_rate_bps_min: int = 2_000
    # Settled transactions a gateway needs in the window before its chargeback ratio may trip
    # it: one chargeback on two sales is 5,000 bps but says nothing yet, and below 100 a single
    # chargeback moves the ratio by a whole percent or more (the schemes' own programmes start
    # at 100 too).
    chargeback_breaker_transactions_min: int = 100


@dataclass(frozen=True, slots=True)
class GatewaySnapshot:
    """A gateway's configuration as routing sees it."""

    gateway_id: str
    name: str
    processor: str
    currencies: tuple[str, ...]
    card_brands: tuple[str, ...]
    monthly_cap_minor: int
    weight: int
    bin_ranges: tuple[tuple[str, str], ...] = ()
    countries: tuple[str, ...] = ()
    enabled: bool = True
    tripped: bool = False


@dataclass(frozen=True, slots=True)
class PaymentFacts:
    """What routing knows of the payment (no card number: the BIN only)."""

    currency: str
    brand: str
    bin: str
    country: str | None
    amount_minor: int

    @property
    def segment(self) -> str:
        return f"{self.currency}:{self.brand}"


@dataclass(frozen=True, slots=True)
class GatewayHealth:
    """A gateway's month-to-date approved volume per currency and its recent outcomes, oldest
    first, as (segment, approved) pairs."""

    approved_minor_by_currency: Mapping[str, int] = field(default_factory=dict)
    outcomes: tuple[tuple[str, bool], ...] = ()


@dataclass(frozen=True, slots=True)
class ChargebackCounts:
    """A gateway's chargebacks and settled transactions over one window (the breaker's input)."""

    chargebacks: int = 0
    settled_transactions: int = 0


@dataclass(frozen=True, slots=True)
class RoutingDecision:
    """The candidates in the order to try them, and the record of why (JSON-serialisable)."""

    ordered: tuple[str, ...]
    record: dict[str, Any]

    @property
    def chosen(self) -> str | None:
        return self.ordered[0] if self.ordered else None


def bin_in_range(card_bin: str, low: str, high: str) -> bool:
    """Whether a card's BIN falls in [low, high]: each bound is compared with the card's BIN
    on the digits both have (bounds of 6 to 8 digits, a BIN of 6 or 8)."""
    if not card_bin.isascii() or not card_bin.isdigit():
        return False

    def prefix(bound: str) -> tuple[int, int]:
        digits = min(len(card_bin), len(bound))
        return int(card_bin[:digits]), int(bound[:digits])

    card_low, bound_low = prefix(low)
    card_high, bound_high = prefix(high)
    return bound_low <= card_low and card_high <= bound_high


def exclusion_reason(
    gateway: GatewaySnapshot,
    payment: PaymentFacts,
    health: GatewayHealth,
    processors: frozenset[str] | None,
) -> str | None:
    """Why this gateway may not take the payment, or None if it may."""
    if not gateway.enabled:
        return "disabled"
    if gateway.tripped:
        return "tripped"
    if processors is not None and gateway.processor not in processors:
        return "processor_not_configured"
    if payment.currency not in gateway.currencies:
        return "currency_not_accepted"
    if payment.brand not in gateway.card_brands:
        return "card_brand_not_accepted"
    if gateway.bin_ranges and not any(
        bin_in_range(payment.bin, low, high) for low, high in gateway.bin_ranges
    ):
        return "bin_not_in_ranges"
    if gateway.countries and payment.country not in gateway.countries:
        return "country_not_accepted"
    approved_minor = health.approved_minor_by_currency.get(payment.currency, 0)
    if approved_minor + payment.amount_minor > gateway.monthly_cap_minor:
        return "monthly_cap_reached"
    return None


def _uniform(seed: int, label: str) -> float:
    """A number in (0, 1) from the seed and a label: the same on every machine and run."""
    digest = hashlib.sha256(f"{seed}:{label}".encode()).digest()
    return (int.from_bytes(digest[:7], "big") + 1) / (2**56 + 2)


def _weighted_order(gateways: Sequence[GatewaySnapshot], seed: int) -> list[GatewaySnapshot]:
    """A weighted draw without replacement: key u^(1/w), highest first (as -ln(u)/w, lowest)."""
    weighted = [g for g in gateways if g.weight > 0]
    fallbacks = sorted((g for g in gateways if g.weight <= 0), key=lambda g: g.gateway_id)
    weighted.sort(key=lambda g: (-math.log(_uniform(seed, g.gateway_id)) / g.weight, g.gateway_id))
    return weighted + fallbacks


def success_score(outcomes: Iterable[tuple[str, bool]], segment: str, window_size: int) -> dict:
    """Approvals and attempts over the last ``window_size`` outcomes of a segment, with the
    Laplace-smoothed success rate in basis points (an unseen gateway scores 5,000)."""
    recent = [approved for seen, approved in outcomes if seen == segment][-window_size:]
    approvals = sum(recent)
    return {
        "approvals": approvals,
        "attempts": len(recent),
        "score_bps": (approvals + 1) * BPS // (len(recent) + 2),
    }


def route(
    gateways: Sequence[GatewaySnapshot],
    payment: PaymentFacts,
    health: Mapping[str, GatewayHealth],
    *,
    seed: int,
    config: RoutingConfig,
    processors: frozenset[str] | None = None,
    already_attempted: Iterable[str] = (),
    over_cap: Iterable[str] = (),
) -> RoutingDecision:
    """Order the gateways that may take ``payment``; record every exclusion and the choice."""
    attempted = set(already_attempted)
    refused = set(over_cap)
    excluded: list[dict[str, str]] = []
    eligible: list[GatewaySnapshot] = []
    for gateway in sorted(gateways, key=lambda g: g.gateway_id):
        reason = (
            "already_attempted"
            if gateway.gateway_id in attempted
            else "over_cap"
            if gateway.gateway_id in refused
            else exclusion_reason(
                gateway, payment, health.get(gateway.gateway_id, _EMPTY), processors
            )
        )
        if reason is None:
            eligible.append(gateway)
        else:
            excluded.append({"gateway_id": gateway.gateway_id, "reason": reason})
    scores: dict[str, dict] = {}
    if config.mode == "adaptive":
        ordered, why = _adaptive_order(eligible, payment, health, seed, config, scores)
    else:
        ordered = _weighted_order(eligible, seed)
        why = "weighted draw from the seed" if ordered else "no eligible gateway"
    record: dict[str, Any] = {
        "mode": config.mode,
        "seed": seed,
        "payment": {
            "currency": payment.currency,
            "brand": payment.brand,
            "bin": payment.bin,
            "country": payment.country,
            "amount_minor": payment.amount_minor,
        },
        "considered": [
            {
                "gateway_id": g.gateway_id,
                "name": g.name,
                "weight": g.weight,
                "approved_minor": health.get(g.gateway_id, _EMPTY).approved_minor_by_currency.get(
                    payment.currency, 0
                ),
                **({"score": scores[g.gateway_id]} if g.gateway_id in scores else {}),
            }
            for g in sorted(gateways, key=lambda g: g.gateway_id)
        ],
        "excluded": excluded,
        "ordered": [g.gateway_id for g in ordered],
        "chosen": ordered[0].gateway_id if ordered else None,
        "why": why,
    }
    return RoutingDecision(tuple(g.gateway_id for g in ordered), record)


def _adaptive_order(
    eligible: list[GatewaySnapshot],
    payment: PaymentFacts,
    health: Mapping[str, GatewayHealth],
    seed: int,
    config: RoutingConfig,
    scores: dict[str, dict],
) -> tuple[list[GatewaySnapshot], str]:
    for gateway in eligible:
        outcomes = health.get(gateway.gateway_id, _EMPTY).outcomes
        scores[gateway.gateway_id] = success_score(outcomes, payment.segment, config.window_size)
    if not eligible:
        return [], "no eligible gateway"
    # Ties between equal scores are broken by the weighted draw, not by id.
    draw_rank = {g.gateway_id: rank for rank, g in enumerate(_weighted_order(eligible, seed))}
    ordered = sorted(
        eligible, key=lambda g: (-scores[g.gateway_id]["score_bps"], draw_rank[g.gateway_id])
    )
    best = ordered[0]
    others = ordered[1:]
    hedge = _uniform(seed, "hedge") * BPS < config.hedging_share_bps
    if hedge and others:
        first = _weighted_order(others, seed)[0]
        ordered = [first] + [g for g in ordered if g is not first]
        return ordered, f"hedging share: {first.gateway_id} instead of the best score"
    return ordered, (
        f"best success rate in {payment.segment}: {scores[best.gateway_id]['score_bps']} bps"
    )


def breaker_verdict(outcomes: Sequence[tuple[str, bool]], config: RoutingConfig) -> str | None:
    """Why a gateway's breaker trips on its recent outcomes (all segments), or None.

    It trips when at least ``breaker_sample_min`` outcomes are in the window and their approval
    rate is below ``breaker_approval_rate_bps_min``.
    """
    recent = [approved for _segment, approved in outcomes][-config.window_size :]
    if len(recent) < config.breaker_sample_min or not recent:
        return None
    rate_bps = sum(recent) * BPS // len(recent)
    if rate_bps >= config.breaker_approval_rate_bps_min:
        return None
    return (
        f"approval rate {rate_bps} bps over the last {len(recent)} attempts is below "
        f"{config.breaker_approval_rate_bps_min} bps"
    )


def chargeback_ratio_verdict(
    chargebacks: int,
    settled_transactions: int,
    threshold_bps: int | None,
    *,
    transactions_min: int = 1,
) -> str | None:
    """Why a gateway's breaker trips on its chargeback ratio, or None.

    The ratio follows the Visa rule: this month's disputes over this month's settled
    transactions, in basis points rounded down. It trips when the gateway has a threshold, at
    least ``transactions_min`` settled transactions (a minimum sample) and a ratio at or above
    the threshold; the caller records ``Gateway.trip`` with the reason.
    """
    if threshold_bps is None or settled_transactions < max(transactions_min, 1):
        return None
    ratio_bps = chargebacks * BPS // settled_transactions
    if ratio_bps < threshold_bps:
        return None
    return (
        f"chargeback ratio {ratio_bps} bps ({chargebacks} chargebacks over "
        f"{settled_transactions} settled transactions) reached the threshold of "
        f"{threshold_bps} bps"
    )


_EMPTY = GatewayHealth()
