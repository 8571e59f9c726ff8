"""The Gateway aggregate: validated configuration, PATCH updates, breaker trips and resets."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from domain.countries import UnknownCountry
from domain.errors import DomainError
from domain.gateway import (
    Gateway,
    GatewayNotTripped,
    InvalidBinRange,
    InvalidGatewayConfig,
    UnknownCardBrand,
    UnknownProcessor,
)
from domain.money import InvalidAmount, UnknownCurrency

NOW = datetime(2026, 11, 22, tzinfo=UTC)


def registered(**fields: Any) -> Gateway:
    config: dict[str, Any] = {
        "tenant_id": "acme",
        "name": "main",
        "processor": "sandbox",
        "currencies": ["USD"],
        "card_brands": ["visa"],
        "monthly_cap_minor": 1000,
        **fields,
    }
    return Gateway.register(**config)


@pytest.mark.parametrize(
    ("fields", "error", "param"),
    [
        ({"processor": "stripe"}, UnknownProcessor, "processor"),
        ({"currencies": ["XXY"]}, UnknownCurrency, "currencies.0"),
        ({"currencies": []}, InvalidGatewayConfig, "currencies"),
        ({"card_brands": ["visa", "maestro"]}, UnknownCardBrand, "card_brands.1"),
        ({"bin_ranges": [["42", "43"]]}, InvalidBinRange, "bin_ranges.0"),
        ({"bin_ranges": [["400000", "4000000x"]]}, InvalidBinRange, "bin_ranges.0"),
        ({"bin_ranges": [["400000"]]}, InvalidBinRange, "bin_ranges.0"),
        ({"countries": ["ZZ"]}, UnknownCountry, "countries.0"),
        ({"monthly_cap_minor": 10**20}, InvalidAmount, "monthly_cap_minor"),
        ({"monthly_cap_minor": 0}, InvalidAmount, "monthly_cap_minor"),
        ({"weight": -1}, InvalidGatewayConfig, "weight"),
        ({"weight": True}, InvalidGatewayConfig, "weight"),
        (
            {"chargeback_ratio_threshold_bps": 0},
            InvalidGatewayConfig,
            "chargeback_ratio_threshold_bps",
        ),
        ({"name": " "}, InvalidGatewayConfig, "name"),
        ({"processor_account": "has space"}, InvalidGatewayConfig, "processor_account"),
    ],
)
def test_an_invalid_configuration_is_a_named_error_naming_the_field(
    fields: dict[str, Any], error: type[DomainError], param: str
) -> None:
    with pytest.raises(error) as raised:
        registered(**fields)
    assert raised.value.param == param


def test_bin_range_bounds_in_either_order_are_kept_lower_first() -> None:
    gateway = registered(bin_ranges=[["499999", "400000"], ["53269500", "532695"]])

    assert gateway.bin_ranges == [["400000", "499999"], ["532695", "53269500"]]


def test_a_patch_changes_only_the_given_fields_and_can_disable() -> None:
    gateway = registered(bin_ranges=[["400000", "499999"]])

    gateway.update({"weight": 7, "enabled": False})

    assert (gateway.weight, gateway.enabled, gateway.name) == (7, False, "main")
    assert gateway.bin_ranges == [["400000", "499999"]]
    assert [type(e).__name__ for e in gateway.collect_events()] == [
        "Registered",
        "Updated",
        "Disabled",
    ]
    gateway.update({"weight": 7})
    assert gateway.collect_events() == []  # nothing changed: nothing recorded
    with pytest.raises(InvalidGatewayConfig):
        gateway.update({"tenant_id": "other"})


def test_a_tripped_gateway_stays_tripped_for_its_first_reason_until_reset() -> None:
    gateway = registered()

    gateway.trip(reason="approval rate collapsed")
    gateway.trip(reason="again")

    assert gateway.tripped_reason == "approval rate collapsed"
    assert gateway.snapshot().tripped is True
    gateway.reset(at=NOW)
    assert not gateway.tripped and gateway.reset_at == NOW
    with pytest.raises(GatewayNotTripped):
        gateway.reset(at=NOW)
