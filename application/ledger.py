"""The Ledger application: one eventsourcing Application, one ordered log, every capability.

The service layer is split by capability — ``customers``, ``gateways`` (merchant accounts),
``payments`` (routed through the gateways), ``orders``, ``billing`` (plans and
subscriptions), ``network`` (distributors and their genealogy) — over the shared command
plumbing of ``commands``. ``Ledger`` composes them; entrypoints hold one instance.
"""

from __future__ import annotations

from application.billing import BillingCommands
from application.commissions import CommissionCommands
from application.gateways import GatewayCommands
from application.network import NetworkCommands


class Ledger(CommissionCommands, NetworkCommands, BillingCommands, GatewayCommands):
    """Customers, gateways, orders and payment attempts of every tenant, in one ordered log."""

    name = "Ledger"
