"""Spreedly as a routed processor: one ``PaymentGateway`` for every Spreedly gateway of the tenants.

A routed attempt names its merchant account in ``account_id``: for a gateway of processor
``spreedly`` that is the gateway's ``processor_account``, the Spreedly gateway token. This adapter
keeps one ``SpreedlyGateway`` client per token (created on first use, sharing one HTTP
connection pool and one set of credentials: the environment's) and hands each call to the
client of its account, so everything ``SpreedlyGateway`` guarantees (idempotency by look-up,
unknown outcomes never read as declines) holds per merchant account.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import date, datetime
from typing import Any
from uuid import UUID

import httpx

from adapters.gateways.spreedly import SpreedlyGateway
from application.ports import GatewayOutcome, ProcessorTransaction


class SpreedlyAccounts:
    """Spreedly's gateways (merchant accounts) of one Spreedly environment, by gateway token."""

    name = "spreedly"

    def __init__(
        self,
        base_url: str,
        environment_key: str,
        access_secret: str,
        *,
        timeout_s: float = 10,
        client: httpx.Client | None = None,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self._base_url = base_url
        self._environment_key = environment_key
        self._access_secret = access_secret
        self._timeout_s = timeout_s
        self._owns_client = client is None
        # No retries (see ``SpreedlyGateway``): one pool for every account.
        self._client = client if client is not None else httpx.Client()
        self._now = now
        self._gateways: dict[str, SpreedlyGateway] = {}
        self._lock = threading.Lock()

    def gateway(self, account_id: str) -> SpreedlyGateway:
        """The client of one Spreedly gateway token."""
        with self._lock:
            gateway = self._gateways.get(account_id)
            if gateway is None:
                gateway = SpreedlyGateway(
                    self._base_url,
                    self._environment_key,
                    self._access_secret,
                    account_id,
                    timeout_s=self._timeout_s,
                    client=self._client,
                    now=self._now,
                )
                self._gateways[account_id] = gateway
            return gateway

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    # The port: each call goes to its account's client -------------------------------------------

    def purchase(self, *, account_id: str, **request: Any) -> GatewayOutcome:
        return self.gateway(account_id).purchase(account_id=account_id, **request)

    def authorize(self, *, account_id: str, **request: Any) -> GatewayOutcome:
        return self.gateway(account_id).authorize(account_id=account_id, **request)

    def capture(self, *, account_id: str, **request: Any) -> GatewayOutcome:
        return self.gateway(account_id).capture(account_id=account_id, **request)

    def refund(self, *, account_id: str, **request: Any) -> GatewayOutcome:
        return self.gateway(account_id).refund(account_id=account_id, **request)

    def void(self, *, account_id: str, **request: Any) -> GatewayOutcome:
        return self.gateway(account_id).void(account_id=account_id, **request)

    def status(self, *, account_id: str, idempotency_key: UUID) -> GatewayOutcome | None:
        return self.gateway(account_id).status(
            account_id=account_id, idempotency_key=idempotency_key
        )

    def transactions_on(self, day: date, account_id: str) -> list[ProcessorTransaction]:
        """One Spreedly gateway's money transactions of a UTC day (the processor's books)."""
        return self.gateway(account_id).transactions_on(day, account_id)
