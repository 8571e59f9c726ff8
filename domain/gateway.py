"""Gateways (merchant accounts) of a tenant, the tenant's directory of them, and their figures.

- ``Gateway``: one merchant account at a processor adapter (``sandbox`` or ``spreedly``): the
  currencies, card brands, optional BIN ranges and countries it accepts, its monthly cap (minor
  units per currency, gross approved volume), its routing weight and chargeback-ratio threshold;
  enabled or disabled by staff, tripped by the circuit breaker and reset by staff.
- ``GatewayDirectory``: the ids of a tenant's gateways, one aggregate per tenant (so a list is
  one load, in any process).

A gateway's figures (approved volume this month, recent outcomes) are not an aggregate: every
routed outcome would write to it, and concurrent payments through one gateway would conflict.
They are kept by the ``GatewayFigures`` port (``application.gateways``), and every routing
decision records the figures it used, so it replays exactly.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.countries import validate_country
from domain.errors import InvalidInput, InvalidTransition, NotFound
from domain.money import validate_amount_minor, validate_currency
from domain.routing import GatewaySnapshot

PROCESSORS = ("sandbox", "spreedly")
# Processors whose account ids are the processor's own (a Spreedly gateway token): given as is.
# Every other processor's books are ours to name: a gateway's account there is scoped to its
# tenant (``tenant_account_id``), so no tenant can name another tenant's account.
PROCESSORS_NAMING_ACCOUNTS = frozenset({"spreedly"})
ACCOUNT_SCOPE_SEPARATOR = "/"
CARD_BRANDS = ("visa", "mastercard", "amex", "discover", "jcb", "diners", "unionpay")
NAME_LENGTH_MAX = 100
ACCOUNT_LENGTH_MAX = 100
WEIGHT_MAX = 10_000
BIN_RANGES_MAX = 100
LIST_LENGTH_MAX = 250
THRESHOLD_BPS_MAX = 10_000

_NAMESPACE = uuid5(NAMESPACE_URL, "https://commerce-ledger/gateways")


class GatewayNotFound(NotFound):
    code = "gateway_not_found"


class InvalidGatewayConfig(InvalidInput):
    code = "invalid_gateway_config"


class UnknownProcessor(InvalidInput):
    code = "unknown_processor"


class UnknownCardBrand(InvalidInput):
    code = "unknown_card_brand"


class InvalidBinRange(InvalidInput):
    code = "invalid_bin_range"


class GatewayNotTripped(InvalidTransition):
    code = "gateway_not_tripped"


def _string_list(values: Any, param: str, check: Any) -> list[str]:
    if not isinstance(values, list) or len(values) > LIST_LENGTH_MAX:
        raise InvalidGatewayConfig(f"a list of at most {LIST_LENGTH_MAX} values", param=param)
    result: list[str] = []
    for index, value in enumerate(values):
        check(value, f"{param}.{index}")
        if value not in result:
            result.append(value)
    return result


def _validate_brand(brand: Any, param: str) -> None:
    if brand not in CARD_BRANDS:
        raise UnknownCardBrand(f"a card brand is one of {', '.join(CARD_BRANDS)}", param=param)


def _validate_bin_ranges(ranges: Any) -> list[list[str]]:
    if not isinstance(ranges, list) or len(ranges) > BIN_RANGES_MAX:
        raise InvalidBinRange(f"a list of at most {BIN_RANGES_MAX} ranges", param="bin_ranges")
    result = []
    for index, pair in enumerate(ranges):
        param = f"bin_ranges.{index}"
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            raise InvalidBinRange("a BIN range is [low, high]", param=param)
        low, high = pair
        for bound in (low, high):
            if not (isinstance(bound, str) and bound.isascii() and bound.isdigit()):
                raise InvalidBinRange("BIN bounds are strings of 6 to 8 digits", param=param)
            if not 6 <= len(bound) <= 8:
                raise InvalidBinRange("BIN bounds are strings of 6 to 8 digits", param=param)
        # Bounds in either order: the lower one (on 8 digits, zero-padded) comes first.
        result.append(sorted([low, high], key=lambda bound: (bound.ljust(8, "0"), len(bound))))
    return result


def validated_config(fields: dict[str, Any]) -> dict[str, Any]:
    """The given configuration fields, checked and normalised (only those given).

    Raises ``InvalidGatewayConfig``, ``UnknownProcessor``, ``UnknownCardBrand``,
    ``InvalidBinRange``, ``UnknownCurrency``, ``UnknownCountry``, ``InvalidAmount``.
    """
    config: dict[str, Any] = {}
    for name, value in fields.items():
        if name == "name":
            if not isinstance(value, str) or not value.strip() or len(value) > NAME_LENGTH_MAX:
                raise InvalidGatewayConfig(
                    f"a name has 1 to {NAME_LENGTH_MAX} characters", param="name"
                )
        elif name == "processor":
            if value not in PROCESSORS:
                raise UnknownProcessor(
                    f"the processor is one of {', '.join(PROCESSORS)}", param="processor"
                )
        elif name == "currencies":
            value = _string_list(value, name, lambda v, p: validate_currency(v, param=p))
            if not value:
                raise InvalidGatewayConfig("at least one currency", param=name)
        elif name == "card_brands":
            value = _string_list(value, name, _validate_brand)
            if not value:
                raise InvalidGatewayConfig("at least one card brand", param=name)
        elif name == "countries":
            if value is not None:
                value = _string_list(value, name, lambda v, p: validate_country(v, param=p))
        elif name == "bin_ranges":
            if value is not None:
                value = _validate_bin_ranges(value)
        elif name == "monthly_cap_minor":
            validate_amount_minor(value, param=name, allow_zero=False)
        elif name == "weight":
            if (
                isinstance(value, bool)
                or not isinstance(value, int)
                or not 0 <= value <= WEIGHT_MAX
            ):
                raise InvalidGatewayConfig(f"a weight is 0 to {WEIGHT_MAX}", param=name)
        elif name == "chargeback_ratio_threshold_bps":
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, int)
                or not 1 <= value <= THRESHOLD_BPS_MAX
            ):
                raise InvalidGatewayConfig(
                    f"a threshold is 1 to {THRESHOLD_BPS_MAX} basis points", param=name
                )
        elif name == "processor_account":
            if value is not None and (
                not isinstance(value, str)
                or not value
                or len(value) > ACCOUNT_LENGTH_MAX
                or not value.isascii()
                or not value.isprintable()
                or " " in value
            ):
                raise InvalidGatewayConfig(
                    f"an account id has 1 to {ACCOUNT_LENGTH_MAX} visible ASCII characters",
                    param=name,
                )
        else:
            raise InvalidGatewayConfig("this field is not a gateway's", param=name)
        config[name] = value
    return config


class Gateway(Aggregate):
    """A merchant account at a processor, routed to by the tenant's payments."""

    @classmethod
    def register(
        cls,
        *,
        tenant_id: str,
        name: str,
        processor: str,
        currencies: list[str],
        card_brands: list[str],
        monthly_cap_minor: int,
        weight: int = 1,
        bin_ranges: list[list[str]] | None = None,
        countries: list[str] | None = None,
        chargeback_ratio_threshold_bps: int | None = None,
        processor_account: str | None = None,
    ) -> Gateway:
        """A new gateway, enabled. Raises what ``validated_config`` raises."""
        config = validated_config(
            {
                "name": name,
                "processor": processor,
                "currencies": currencies,
                "card_brands": card_brands,
                "monthly_cap_minor": monthly_cap_minor,
                "weight": weight,
                "bin_ranges": bin_ranges,
                "countries": countries,
                "chargeback_ratio_threshold_bps": chargeback_ratio_threshold_bps,
                "processor_account": processor_account,
            }
        )
        return cls(tenant_id=tenant_id, **config)

    @event("Registered")
    def __init__(
        self,
        *,
        tenant_id: str,
        name: str,
        processor: str,
        currencies: list[str],
        card_brands: list[str],
        monthly_cap_minor: int,
        weight: int,
        bin_ranges: list[list[str]] | None,
        countries: list[str] | None,
        chargeback_ratio_threshold_bps: int | None,
        processor_account: str | None,
    ):
        self.tenant_id = tenant_id
        self.name = name
        self.processor = processor
        self.currencies = currencies
        self.card_brands = card_brands
        self.monthly_cap_minor = monthly_cap_minor
        self.weight = weight
        self.bin_ranges = bin_ranges
        self.countries = countries
        self.chargeback_ratio_threshold_bps = chargeback_ratio_threshold_bps
        self.processor_account = processor_account
        self.enabled = True
        self.tripped_reason: str | None = None
        # Outcomes before the last reset do not count for the breaker or the scores.
        self.reset_at: datetime | None = None

    def update(self, changes: dict[str, Any]) -> None:
        """Change the given fields only (PATCH). ``enabled`` enables or disables.

        Raises what ``validated_config`` raises.
        """
        changes = dict(changes)
        enabled = changes.pop("enabled", None)
        if enabled is not None and not isinstance(enabled, bool):
            raise InvalidGatewayConfig("enabled is true or false", param="enabled")
        config = {
            name: value
            for name, value in validated_config(changes).items()
            if getattr(self, name) != value
        }
        if config:
            self._updated(changes=config)
        if enabled is True and not self.enabled:
            self._enabled()
        elif enabled is False and self.enabled:
            self._disabled()

    @event("Updated")
    def _updated(self, *, changes: dict[str, Any]) -> None:
        for name, value in changes.items():
            setattr(self, name, value)

    @event("Enabled")
    def _enabled(self) -> None:
        self.enabled = True

    @event("Disabled")
    def _disabled(self) -> None:
        self.enabled = False

    @property
    def tripped(self) -> bool:
        return self.tripped_reason is not None

    def trip(self, *, reason: str) -> None:
        """The circuit breaker opens: routing skips the gateway until it is reset (a gateway
        already tripped stays tripped for its first reason)."""
        if not self.tripped:
            self._tripped(reason=reason[:500])

    @event("Tripped")
    def _tripped(self, *, reason: str) -> None:
        self.tripped_reason = reason

    def reset(self, *, at: datetime) -> None:
        """Close the breaker after staff looked into it; the gateway is judged afresh on the
        outcomes after ``at``. Raises ``GatewayNotTripped``."""
        if not self.tripped:
            raise GatewayNotTripped("the gateway is not tripped")
        self._reset(at=at)

    @event("Reset")
    def _reset(self, *, at: datetime) -> None:
        self.tripped_reason = None
        self.reset_at = at

    @property
    def account_id(self) -> str:
        """The merchant account at the processor: its own books (the gateway id by default),
        scoped to the gateway's tenant (``tenant_account_id``)."""
        account = self.processor_account or str(self.id)
        return tenant_account_id(self.tenant_id, self.processor, account)

    def snapshot(self) -> GatewaySnapshot:
        return GatewaySnapshot(
            gateway_id=str(self.id),
            name=self.name,
            processor=self.processor,
            currencies=tuple(self.currencies),
            card_brands=tuple(self.card_brands),
            monthly_cap_minor=self.monthly_cap_minor,
            weight=self.weight,
            bin_ranges=tuple((low, high) for low, high in self.bin_ranges or ()),
            countries=tuple(self.countries or ()),
            enabled=self.enabled,
            tripped=self.tripped,
        )


class GatewayDirectory(Aggregate):
    """The ids of one tenant's gateways, in the order they were registered."""

    @staticmethod
    def create_id(tenant_id: str) -> UUID:
        return gateway_directory_id(tenant_id)

    @event("Created")
    def __init__(self, *, tenant_id: str):
        self.tenant_id = tenant_id
        self.gateway_ids: list[UUID] = []

    def add(self, gateway_id: UUID) -> None:
        if gateway_id not in self.gateway_ids:
            self._added(gateway_id=gateway_id)

    @event("GatewayAdded")
    def _added(self, *, gateway_id: UUID) -> None:
        self.gateway_ids.append(gateway_id)


def gateway_directory_id(tenant_id: str) -> UUID:
    return uuid5(_NAMESPACE, f"directory:{tenant_id}")


def tenant_account_id(tenant_id: str, processor: str, account: str) -> str:
    """The account id a tenant's routed attempt gives its processor adapter for ``account``
    (a gateway's ``processor_account`` or id): ``<tenant_id>/<account>``, so two tenants'
    accounts never coincide and none is a tenant's own default account (named by the tenant
    id). A processor naming its accounts itself (``PROCESSORS_NAMING_ACCOUNTS``) gets ``account``.

    Attempts recorded before accounts were scoped keep the account id they recorded.
    """
    if processor in PROCESSORS_NAMING_ACCOUNTS:
        return account
    return f"{tenant_id}{ACCOUNT_SCOPE_SEPARATOR}{account}"


def tenant_of_account_id(account_id: str) -> str:
    """The tenant of an account id: the scope of a ``tenant_account_id``, else the id itself
    (a tenant's default account is named by the tenant id)."""
    return account_id.partition(ACCOUNT_SCOPE_SEPARATOR)[0]


def is_tenant_account_id(tenant_id: str, account_id: str) -> bool:
    """Whether the account is the tenant's own: its default account (named by the tenant id) or
    one scoped to it by ``tenant_account_id``."""
    return account_id == tenant_id or account_id.startswith(tenant_id + ACCOUNT_SCOPE_SEPARATOR)
