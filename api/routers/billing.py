"""``POST /v1/billing/run``: what is due of the caller's subscriptions, done now.

The worker does the same every ``billing_interval_s`` for every tenant (the billing scheduler);
this route lets an admin run it at once, synchronously, and see what happened. It is safe to
repeat and to run beside the scheduler: each renewal and retry runs under its own idempotency
key, so a period is never charged twice.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.deps import AdminPrincipal, ServicesDep

router = APIRouter(prefix="/v1/billing", tags=["billing"])

Count = Annotated[int, Field(ge=0)]


class BillingRunOut(BaseModel):
    """How many subscriptions were due, and what became of them."""

    due: Count = Field(description="Subscriptions due by now (read model), at most 10,000 a run")
    renewed: Count = Field(
        description="Charged and active: a renewal, a recovering dunning retry, a lost outcome "
        "learnt as paid"
    )
    failed: Count = Field(description="A renewal or retry declined: past due")
    ended: Count = Field(description="Cancelled at the end of their period")
    churned: Count = Field(description="Ended by failed payment recovery")
    unknown: Count = Field(
        description="The gateway did not answer; the outcome is learnt by a later run"
    )
    skipped: Count = Field(
        description="Nothing due any more: done already, or being done by another run"
    )
    errors: Count = Field(description="Failed unexpectedly (logged); retried by a later run")


@router.post(
    "/run",
    response_model=BillingRunOut,
    description="Run what is due now of the caller's tenant's subscriptions (renewals, dunning "
    "retries, cancellations at period end, churns), synchronously. Admin role only. Safe to "
    "repeat: a period is never charged twice.",
)
def run_billing(principal: AdminPrincipal, services: ServicesDep) -> dict[str, int]:
    return services.billing.run_due(tenant_id=principal.tenant_id)


class AccountUpdaterRunOut(BaseModel):
    customers: Count = Field(description="Customers with live subscriptions looked at")
    cards_updated: Count = Field(description="Cards the vault had newer details for")
    retried: Count = Field(description="Past-due subscriptions retried at once on them")


@router.post(
    "/account-updater/run",
    response_model=AccountUpdaterRunOut,
    description="Ask the vault for the current details of expiring cards (within 31 days) of "
    "the tenant's customers with live subscriptions, keep them, and retry at once the past-due "
    "subscriptions paid with a refreshed card. Admin role only. Safe to repeat. The worker "
    "runs it daily for every tenant.",
)
def run_account_updater(principal: AdminPrincipal, services: ServicesDep) -> dict[str, int]:
    return services.billing.run_account_updater(tenant_id=principal.tenant_id)
