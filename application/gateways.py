"""Gateway commands: register, change, enable/disable and reset a tenant's merchant accounts.

A tenant's gateways are listed by its ``GatewayDirectory`` (one aggregate per tenant, saved with
each registration), so any process lists them with one load plus one per gateway. A tenant with
no gateway keeps the default processor (see ``payments``).

``GatewayFigures`` is the port that keeps each gateway's approved volume per UTC month and
currency and its recent outcomes: the payment commands record every routed outcome in it
(idempotently, per attempt) and routing reads it. It is a counter store, not an aggregate, so
concurrent payments through one gateway never conflict; a reset of the breaker makes the gateway
judged on the outcomes after it only.

The chargeback-ratio breaker (``count_chargeback``): the order commands count every chargeback
opened against a routed gateway's capture in its figures (once per chargeback id) and, when its
ratio this month (``domain.routing.chargeback_ratio_verdict``: chargebacks over settled
transactions, both since the later of the month's start and the last reset) reaches the
gateway's ``chargeback_ratio_threshold_bps``, trip it in the same save as the chargeback.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from application.commands import CommandResult, LedgerBase, Step
from domain.gateway import Gateway, GatewayDirectory, GatewayNotFound, gateway_directory_id
from domain.routing import BPS, ChargebackCounts, GatewayHealth, chargeback_ratio_verdict

# Recent outcomes read per gateway: scores take the last ``window_size`` of a segment among them.
OUTCOMES_READ = 200


class GatewayFigures(Protocol):
    """Each gateway's approved volume per month and currency, and its recent outcomes."""

    def record(
        self,
        *,
        gateway_id: str,
        attempt_id: UUID,
        segment: str,
        approved: bool,
        currency: str,
        amount_minor: int,
        month: str,
        at: datetime,
    ) -> None:
        """Count one attempt's outcome; a second record of the same attempt changes nothing.

        An approval settles the attempt's held reservation (its amount stays counted, and is
        not added again) or, without one, adds its amount; a decline releases it."""
        ...

    def reserve(
        self,
        *,
        gateway_id: str,
        attempt_id: UUID,
        month: str,
        currency: str,
        amount_minor: int,
        cap_minor: int,
    ) -> bool:
        """Hold ``amount_minor`` of the gateway's ``month`` volume in ``currency`` for an attempt
        about to be sent, atomically, only if the volume counted (approved and held) stays
        within ``cap_minor``; whether it is held. A second reservation of the same attempt
        holds nothing more (and answers whether the first still holds)."""
        ...

    def release(self, attempt_id: UUID) -> None:
        """Free an attempt's held reservation (its intent was not saved, or it was declined);
        a second release, or one of a settled reservation, changes nothing."""
        ...

    def health(
        self,
        gateway_ids: Sequence[str],
        *,
        month: str,
        since: Mapping[str, datetime | None],
        outcomes_max: int,
    ) -> dict[str, GatewayHealth]:
        """Per gateway: the approved volume of ``month`` per currency and its last
        ``outcomes_max`` outcomes recorded after ``since[gateway_id]``, oldest first."""
        ...

    def approved_volume(
        self, gateway_ids: Sequence[str], *, month: str
    ) -> dict[str, dict[str, int]]:
        """Per gateway: the volume of ``month`` per currency that routing counts against the
        monthly cap: approved, plus held reservations."""
        ...

    def record_chargeback(self, *, gateway_id: str, chargeback_id: str, at: datetime) -> None:
        """Count one chargeback against a gateway; a second record of the same id changes
        nothing."""
        ...

    def chargeback_counts(self, gateway_id: str, *, since: datetime) -> ChargebackCounts:
        """The gateway's chargebacks and approved outcomes (its settled transactions) recorded
        at or after ``since``."""
        ...


@dataclass(frozen=True)
class RegisterGateway:
    config: dict[str, Any]


@dataclass(frozen=True)
class UpdateGateway:
    gateway_id: UUID
    changes: dict[str, Any]


@dataclass(frozen=True)
class ResetGateway:
    gateway_id: UUID


def month_of(moment: datetime) -> str:
    """The UTC month of a moment, as ``2026-11``."""
    return f"{moment.year:04d}-{moment.month:02d}"


def month_start(moment: datetime) -> datetime:
    """The first instant of the UTC month of a moment."""
    return moment.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def count_chargeback(
    gateway: Gateway,
    figures: GatewayFigures,
    *,
    chargeback_id: str,
    at: datetime,
    transactions_min: int,
) -> list[Gateway]:
    """Count a chargeback against the gateway that captured the money; returns the gateway,
    tripped, when its chargeback ratio reached its threshold (to save with the chargeback),
    else nothing.

    The window is the UTC month of ``at`` from the later of its start and the gateway's last
    reset, so a reset gateway is judged afresh (as the approval-rate breaker is). The count is
    recorded before the chargeback is saved: if that save fails, the chargeback stays counted
    and the breaker errs toward tripping (a retry with the same id counts it once).
    """
    figures.record_chargeback(gateway_id=str(gateway.id), chargeback_id=chargeback_id, at=at)
    if gateway.tripped:
        return []
    since = month_start(at)
    if gateway.reset_at is not None and gateway.reset_at > since:
        since = gateway.reset_at
    counts = figures.chargeback_counts(str(gateway.id), since=since)
    verdict = chargeback_ratio_verdict(
        counts.chargebacks,
        counts.settled_transactions,
        gateway.chargeback_ratio_threshold_bps,
        transactions_min=transactions_min,
    )
    if verdict is None:
        return []
    gateway.trip(reason=verdict)
    return [gateway]


def cap_usage(gateway: Gateway, committed_minor_by_currency: Mapping[str, int]) -> dict[str, Any]:
    """A gateway's monthly cap beside its committed volume, per currency (the cap is per
    currency): the volume, what is left (never below 0) and the share used in basis points,
    rounded down (above 10,000 when the cap was lowered below the volume)."""
    cap_minor = gateway.monthly_cap_minor
    currencies = [*gateway.currencies]
    currencies += sorted(set(committed_minor_by_currency) - set(currencies))
    by_currency = {}
    for currency in currencies:
        committed_minor = committed_minor_by_currency.get(currency, 0)
        by_currency[currency] = {
            "committed_minor": committed_minor,
            "remaining_minor": max(cap_minor - committed_minor, 0),
            "used_bps": committed_minor * BPS // cap_minor,
        }
    return {
        "gateway_id": str(gateway.id),
        "gateway": gateway.name,
        "monthly_cap_minor": cap_minor,
        "by_currency": by_currency,
    }


def gateway_body(gateway: Gateway) -> dict[str, Any]:
    """A gateway as the API shows it."""
    return {
        "id": str(gateway.id),
        "name": gateway.name,
        "processor": gateway.processor,
        "currencies": list(gateway.currencies),
        "card_brands": list(gateway.card_brands),
        "bin_ranges": [list(pair) for pair in gateway.bin_ranges] if gateway.bin_ranges else None,
        "countries": list(gateway.countries) if gateway.countries else None,
        "monthly_cap_minor": gateway.monthly_cap_minor,
        "weight": gateway.weight,
        "chargeback_ratio_threshold_bps": gateway.chargeback_ratio_threshold_bps,
        "processor_account": gateway.processor_account,
        "enabled": gateway.enabled,
        "tripped": gateway.tripped,
        "tripped_reason": gateway.tripped_reason,
        "created_at": gateway.created_on.isoformat(),
    }


class GatewayCommands(LedgerBase):
    # Given by ``PaymentCommands`` (``bootstrap_ledger`` always gives one).
    gateway_figures: GatewayFigures | None

    def register_gateway(
        self, *, tenant_id: str, config: dict[str, Any], idempotency_key: str | None = None
    ) -> CommandResult:
        """Register a merchant account; from now on the tenant's payments are routed.

        Raises ``InvalidGatewayConfig``, ``UnknownProcessor``, ``UnknownCardBrand``,
        ``InvalidBinRange``, ``UnknownCurrency``, ``UnknownCountry``, ``InvalidAmount``,
        ``ConcurrentModification``, ``IdempotencyKeyReused``.
        """

        def prepare() -> Step:
            gateway = Gateway.register(tenant_id=tenant_id, **config)
            directory = self._directory(tenant_id) or GatewayDirectory(tenant_id=tenant_id)
            directory.add(gateway.id)
            return Step([gateway, directory], gateway_body(gateway))

        return self.run(tenant_id, idempotency_key, RegisterGateway(config=config), prepare)

    def update_gateway(
        self,
        *,
        tenant_id: str,
        gateway_id: UUID,
        changes: dict[str, Any],
        idempotency_key: str | None = None,
    ) -> CommandResult:
        """Change some fields of a gateway (PATCH); ``enabled`` enables or disables it.

        Raises ``GatewayNotFound`` and what ``register_gateway`` raises.
        """

        def prepare() -> Step:
            gateway = self.get_gateway(tenant_id, gateway_id)
            gateway.update(changes)
            return Step([gateway], gateway_body(gateway))

        command = UpdateGateway(gateway_id=gateway_id, changes=changes)
        return self.run(tenant_id, idempotency_key, command, prepare)

    def reset_gateway(
        self, *, tenant_id: str, gateway_id: UUID, idempotency_key: str | None = None
    ) -> CommandResult:
        """Close a tripped gateway's breaker; it is judged on the outcomes after this only.

        Raises ``GatewayNotFound``, ``GatewayNotTripped``, ``ConcurrentModification``.
        """

        def prepare() -> Step:
            gateway = self.get_gateway(tenant_id, gateway_id)
            gateway.reset(at=self.now())
            return Step([gateway], gateway_body(gateway))

        command = ResetGateway(gateway_id=gateway_id)
        return self.run(tenant_id, idempotency_key, command, prepare)

    def monthly_caps(self, tenant_id: str, *, month: str) -> list[dict[str, Any]]:
        """Each of the tenant's gateways, in the order they were registered, with its monthly
        cap beside its volume of ``month`` (``YYYY-MM``, UTC) as routing counts it, per
        currency: approved purchases and authorizations, gross, plus the amounts reserved for
        attempts whose outcome is not known yet (``cap_usage``)."""
        gateways = self.tenant_gateways(tenant_id)
        if not gateways or self.gateway_figures is None:
            return []
        volume = self.gateway_figures.approved_volume(
            [str(gateway.id) for gateway in gateways], month=month
        )
        return [
            {"month": month, **cap_usage(gateway, volume.get(str(gateway.id), {}))}
            for gateway in gateways
        ]

    def list_gateways(self, tenant_id: str) -> list[dict[str, Any]]:
        return [gateway_body(gateway) for gateway in self.tenant_gateways(tenant_id)]

    def read_gateway(self, tenant_id: str, gateway_id: UUID) -> dict[str, Any]:
        """Raises ``GatewayNotFound``."""
        return gateway_body(self.get_gateway(tenant_id, gateway_id))

    def get_gateway(self, tenant_id: str, gateway_id: UUID) -> Gateway:
        """Raises ``GatewayNotFound``."""
        return self.get_owned(Gateway, tenant_id, gateway_id, GatewayNotFound)

    def tenant_gateways(self, tenant_id: str) -> list[Gateway]:
        """The tenant's gateways, in the order they were registered (none: the default)."""
        directory = self._directory(tenant_id)
        if directory is None:
            return []
        return [self.repository.get(gateway_id) for gateway_id in directory.gateway_ids]

    def processor_accounts(self, tenant_id: str) -> list[str]:
        """The accounts (books) at the processors the tenant's calls go to: the tenant's own
        (the default gateway's, named by the tenant id) and each gateway's, scoped to the tenant
        (``Gateway.account_id``). For reconciliation's ``accounts_of`` and the sandbox listing."""
        return [tenant_id, *(gateway.account_id for gateway in self.tenant_gateways(tenant_id))]

    def _directory(self, tenant_id: str) -> GatewayDirectory | None:
        try:
            return self.repository.get(gateway_directory_id(tenant_id))  # type: ignore[no-any-return]
        except AggregateNotFoundError:
            return None
