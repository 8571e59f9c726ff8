"""Gateway commands: register, change, enable/disable, trip and reset a tenant's merchant accounts.

A tenant's gateways are listed by its ``GatewayDirectory`` (one aggregate per tenant, saved with
each registration), so any process lists them with one load plus one per gateway. A tenant with
no gateway keeps the default processor (see ``payments``).

``GatewayFigures`` is the port that keeps each gateway's approved volume per UTC month and
currency and its recent outcomes: the payment commands record every routed outcome in it
(idempotently, per attempt) and routing reads it. It is a counter store, not an aggregate, so
concurrent payments through one gateway never conflict; a reset of the breaker makes the gateway
judged on the outcomes after it only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from application.commands import CommandResult, LedgerBase, Step
from domain.gateway import Gateway, GatewayDirectory, GatewayNotFound, gateway_directory_id
from domain.routing import GatewayHealth

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
        """Count one attempt's outcome; a second record of the same attempt changes nothing."""
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

    def trip_gateway(self, *, tenant_id: str, gateway_id: UUID, reason: str) -> CommandResult:
        """Open a gateway's breaker (a hook for the chargeback-ratio check, which calls it with
        ``domain.routing.chargeback_ratio_verdict``'s reason). Raises ``GatewayNotFound``."""

        def prepare() -> Step:
            gateway = self.get_gateway(tenant_id, gateway_id)
            gateway.trip(reason=reason)
            return Step([gateway], gateway_body(gateway))

        return self.run(tenant_id, None, None, prepare)

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
        (the default gateway's) and each gateway's. For reconciliation's ``accounts_of``."""
        return [tenant_id, *(gateway.account_id for gateway in self.tenant_gateways(tenant_id))]

    def _directory(self, tenant_id: str) -> GatewayDirectory | None:
        try:
            return self.repository.get(gateway_directory_id(tenant_id))  # type: ignore[no-any-return]
        except AggregateNotFoundError:
            return None
