"""A realistic demo data set, loaded through the application's own commands.

Every command carries an idempotency key derived from the seed, so loading the demo twice
changes nothing the second time.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from application.ledger import Ledger
from domain.fx import FxRate, validated_rate

_FIRST = [
    "Ada",
    "Ben",
    "Chloe",
    "Diego",
    "Emma",
    "Farid",
    "Grace",
    "Hiro",
    "Ines",
    "Jonas",
    "Kemi",
    "Liam",
    "Maya",
    "Noor",
    "Olga",
    "Pavel",
]
_LAST = [
    "Nakamura",
    "Okafor",
    "Silva",
    "Novak",
    "Dubois",
    "Schmidt",
    "Rossi",
    "Haddad",
    "Kowalski",
    "Jensen",
    "Moreau",
    "Lee",
]
# (country, currency) pairs a cross-border merchant typically sees.
_MARKETS = [
    ("US", "USD"),
    ("US", "USD"),
    ("GB", "GBP"),
    ("DE", "EUR"),
    ("FR", "EUR"),
    ("JP", "JPY"),
    ("CA", "CAD"),
    ("AU", "AUD"),
    ("KW", "KWD"),
]
_PRODUCTS = [
    ("SKU-SERUM-30", 3900),
    ("SKU-CREAM-50", 5400),
    ("SKU-VITC-90", 2900),
    ("SKU-STARTER-KIT", 12900),
    ("SKU-REFILL", 1900),
]
# Mostly good cards, with the sandbox's declines and its dispute card sprinkled in.
_CARDS = ["4242424242424242"] * 7 + [
    "5555555555554444",
    "4000000000000002",
    "4000000000009995",
    "4000000000000259",
]
_CURRENCIES = sorted({currency for _country, currency in _MARKETS})
# Three merchant accounts at the sandbox processor; the third soft-declines every card
# (``+decline_<code>``), so the demo shows cascades to the others and, after enough declines, a
# tripped circuit breaker.
_GATEWAYS = [
    {"name": "Northwind Merchant Services", "weight": 60, "processor_account": "northwind"},
    {"name": "Harbor Payments", "weight": 40, "processor_account": "harbor"},
    {
        "name": "Legacy Acquirer",
        "weight": 20,
        "processor_account": "legacy+decline_insufficient_funds",
    },
]
_CHARGEBACK_REASONS = ["10.4", "13.1", "4837", "4853"]


def _scaled_price(price_minor_usd: int, currency: str) -> int:
    """Round demo prices per currency exponent (JPY has none, KWD has three)."""
    if currency == "JPY":
        return price_minor_usd  # 3900 cents → ¥3,900: close enough for a demo
    if currency == "KWD":
        return price_minor_usd * 3  # 3900 cents → 11.700 KWD
    return price_minor_usd


def load_demo(
    ledger: Ledger,
    *,
    tenant_id: str = "default",
    customers: int = 300,
    seed: int = 42,
    progress: Callable[[int], None] = lambda _: None,
) -> dict[str, int]:
    """Register gateways, customers with cards, and orders: most paid at once, some authorized
    then captured or voided, some declined (cascading between gateways), refunded, cancelled,
    charged back, or followed by a one-click upsell."""
    rng = random.Random(seed)
    counts = {
        "gateways": 0,
        "customers": 0,
        "orders": 0,
        "refunds": 0,
        "cancellations": 0,
        "captures": 0,
        "voids": 0,
        "chargebacks": 0,
        "upsells": 0,
        "plans": 0,
        "subscriptions": 0,
    }
    for index, gateway in enumerate(_GATEWAYS):
        ledger.register_gateway(
            tenant_id=tenant_id,
            config={
                "processor": "sandbox",
                "currencies": _CURRENCIES,
                "card_brands": ["visa", "mastercard", "amex"],
                "monthly_cap_minor": 500_000_000,
                "chargeback_ratio_threshold_bps": 500,
                **gateway,
            },
            idempotency_key=f"demo-{seed}-gateway-{index}",
        )
        counts["gateways"] += 1
    plans = _plans(ledger, tenant_id, seed, counts)
    # Its own random stream: a reload that skips subscriptions draws the same orders.
    subscription_rng = random.Random(seed * 7919 + 1)
    for index in range(customers):
        key = f"demo-{seed}-{index}"
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        country, currency = rng.choice(_MARKETS)
        customer = ledger.register_customer(
            tenant_id=tenant_id,
            email=f"{first}.{last}.{index}@example.com".lower(),
            name=f"{first} {last}",
            country=country,
            currency=currency,
            idempotency_key=f"{key}-customer",
        )
        customer_id = UUID(customer.body["id"])
        method = ledger.attach_payment_method(
            tenant_id=tenant_id,
            customer_id=customer_id,
            card_number=rng.choice(_CARDS),
            exp_month=rng.randint(1, 12),
            exp_year=2030 + rng.randint(0, 4),
            idempotency_key=f"{key}-card",
        )
        counts["customers"] += 1
        if plans and currency in plans and subscription_rng.random() < 0.45:
            _subscribe(
                ledger,
                subscription_rng,
                tenant_id,
                customer_id,
                method.body["id"],
                plans[currency],
                key,
            )
            counts["subscriptions"] += 1
        for order_index in range(rng.choice([0, 1, 1, 2, 3])):
            lines = [
                {
                    "sku": sku,
                    "quantity": rng.randint(1, 3),
                    "unit_price_minor": _scaled_price(price, currency),
                }
                for sku, price in rng.sample(_PRODUCTS, rng.randint(1, 3))
            ]
            pay = rng.random() < 0.9
            mode = "authorize" if rng.random() < 0.1 else "purchase"
            order = ledger.place_order(
                tenant_id=tenant_id,
                customer_id=customer_id,
                currency=currency,
                lines=lines,
                payment={"payment_method_id": method.body["id"], "mode": mode} if pay else None,
                source=rng.choice(["web", "web", "phone", "affiliate"]),
                idempotency_key=f"{key}-order-{order_index}",
            )
            counts["orders"] += 1
            order_id = UUID(order.body["id"])
            status = order.body["status"]
            if status == "authorized":
                if rng.random() < 0.75:
                    ledger.capture_order(
                        tenant_id=tenant_id,
                        order_id=order_id,
                        idempotency_key=f"{key}-capture-{order_index}",
                    )
                    counts["captures"] += 1
                else:
                    ledger.void_order(
                        tenant_id=tenant_id,
                        order_id=order_id,
                        idempotency_key=f"{key}-void-{order_index}",
                    )
                    counts["voids"] += 1
            elif status == "paid" and rng.random() < 0.02:
                _dispute(ledger, rng, tenant_id, order_id, order.body, f"{key}-{order_index}")
                counts["chargebacks"] += 1
            elif status == "paid" and rng.random() < 0.1:
                ledger.place_upsell(
                    tenant_id=tenant_id,
                    parent_order_id=order_id,
                    lines=[
                        {
                            "sku": "SKU-REFILL",
                            "quantity": 1,
                            "unit_price_minor": _scaled_price(1900, currency),
                        }
                    ],
                    idempotency_key=f"{key}-upsell-{order_index}",
                )
                counts["upsells"] += 1
            elif status == "paid" and rng.random() < 0.15:
                amount = order.body["captured_minor"] // rng.choice([1, 2])
                ledger.refund_order(
                    tenant_id=tenant_id,
                    order_id=order_id,
                    amount_minor=amount,
                    reason="customer request",
                    idempotency_key=f"{key}-refund-{order_index}",
                )
                counts["refunds"] += 1
            elif status in ("pending", "declined") and rng.random() < 0.5:
                ledger.cancel_order(
                    tenant_id=tenant_id,
                    order_id=order_id,
                    reason="abandoned",
                    idempotency_key=f"{key}-cancel-{order_index}",
                )
                counts["cancellations"] += 1
        progress(index + 1)
    return counts


# (code, name, USD price per period, interval, trial days, setup fee) of the demo's plans,
# offered in USD, EUR and GBP.
_PLANS = [
    ("essentials-monthly", "Essentials", 2900, "month", 14, 0),
    ("pro-monthly", "Pro", 7900, "month", 0, 4900),
    ("pro-yearly", "Pro (yearly)", 79000, "year", 0, 0),
    ("team-monthly", "Team", 19900, "month", 0, 0),
]
_PLAN_CURRENCIES = ("USD", "EUR", "GBP")


def _plans(
    ledger: Ledger, tenant_id: str, seed: int, counts: dict[str, int]
) -> dict[str, dict[str, str]]:
    """The demo's plans by currency and code; empty when a previous load created them already
    (subscriptions are imported relative to the day of the first load, so they load once)."""
    from application.billing import PlanNotFound

    try:
        ledger.plan_by_code(tenant_id, f"{_PLANS[0][0]}-{_PLAN_CURRENCIES[0].lower()}")
        return {}
    except PlanNotFound:
        pass
    plans: dict[str, dict[str, str]] = {}
    for currency in _PLAN_CURRENCIES:
        for code, name, price, interval, trial_days, setup_fee in _PLANS:
            body = ledger.create_plan(
                tenant_id=tenant_id,
                code=f"{code}-{currency.lower()}",
                name=name,
                currency=currency,
                amount_minor=price,
                interval=interval,
                trial_days=trial_days,
                setup_fee_minor=setup_fee,
                idempotency_key=f"demo-{seed}-plan-{code}-{currency}",
            ).body
            plans.setdefault(currency, {})[code] = body["id"]
            counts["plans"] += 1
    return plans


def _subscribe(
    ledger: Ledger,
    rng: random.Random,
    tenant_id: str,
    customer_id: UUID,
    method_id: str,
    plans: dict[str, str],
    key: str,
) -> None:
    """Most demo subscriptions are imported with up to 18 months of history (upgrades,
    cancellations, returns), so the MRR report has a story; the rest start today, some in a
    trial. Declines, dunning and churn follow from the cards."""
    now = ledger.now()
    code = rng.choice(["essentials-monthly", "pro-monthly", "pro-monthly", "pro-yearly"])
    arguments: dict[str, Any] = {
        "tenant_id": tenant_id,
        "customer_id": customer_id,
        "plan_id": UUID(plans[code]),
        "payment_method_id": UUID(method_id),
        "quantity": rng.choice([1, 1, 1, 2, 5]),
    }
    if rng.random() < 0.3:
        ledger.create_subscription(**arguments, idempotency_key=f"{key}-subscription")
        return
    at = now - timedelta(days=rng.randint(20, 540), hours=rng.randint(0, 23))
    created = ledger.create_subscription(
        **arguments, effective_at=at, idempotency_key=f"{key}-subscription"
    )
    subscription_id = UUID(created.body["id"])
    ids = {"tenant_id": tenant_id, "subscription_id": subscription_id}
    for step in range(3):
        at += timedelta(days=rng.randint(10, 120))
        if at >= now:
            return
        roll = rng.random()
        step_key = f"{key}-subscription-{step}"
        if roll < 0.25 and code.endswith("monthly"):
            code = "team-monthly" if code == "pro-monthly" else "pro-monthly"
            ledger.change_subscription_plan(
                **ids, plan_id=UUID(plans[code]), effective_at=at, idempotency_key=step_key
            )
        elif roll < 0.4:
            ledger.cancel_subscription(**ids, effective_at=at, idempotency_key=step_key)
            if rng.random() < 0.5:
                return
            at += timedelta(days=rng.randint(30, 90))
            if at >= now:
                return
            ledger.reactivate_subscription(
                **ids, effective_at=at, idempotency_key=f"{step_key}-back"
            )


def demo_fx_rates(today: date, months: int = 30) -> list[FxRate]:
    """Euro reference rates (ECB style: USD and GBP per EUR) for the first day of each of the
    last ``months`` months, drifting a little from month to month, so the demo's MRR report
    converts EUR and GBP subscriptions (and shows an FX adjustment)."""
    rates = []
    year, month = today.year, today.month
    for back in range(months + 1):
        index = year * 12 + month - 1 - back
        day = date(index // 12, index % 12 + 1, 1)
        wobble = Decimal((back * 37) % 11 - 5) / 1000
        rates.append(validated_rate(day, "EUR", "USD", Decimal("1.0850") + wobble))
        rates.append(validated_rate(day, "EUR", "GBP", Decimal("0.8550") + wobble / 2))
    return rates


def _dispute(
    ledger: Ledger,
    rng: random.Random,
    tenant_id: str,
    order_id: UUID,
    order: dict,
    key: str,
) -> None:
    """Open a chargeback for the order's captured amount; resolve most of them, won or lost."""
    opened = ledger.open_chargeback(
        tenant_id=tenant_id,
        order_id=order_id,
        amount_minor=order["captured_minor"],
        reason_code=rng.choice(_CHARGEBACK_REASONS),
        idempotency_key=f"{key}-chargeback",
    )
    if rng.random() < 0.7:
        chargeback = opened.body["payment"]["chargebacks"][-1]
        ledger.resolve_chargeback(
            tenant_id=tenant_id,
            order_id=order_id,
            chargeback_id=chargeback["id"],
            outcome=rng.choice(["won", "lost"]),
            idempotency_key=f"{key}-chargeback-resolve",
        )
