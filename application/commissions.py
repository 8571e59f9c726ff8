"""Commission plan commands: define a tenant's plan of a code, then revise it version by version.

``PUT /v1/commission-plans/{code}`` defines the plan the first time and adds a version after
(``domain.commission_plan``: a version never changes, a period is computed with the versions in
force during it). The accrual policy, the periods and the payouts build on these plans.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from eventsourcing.application import AggregateNotFoundError

from application.commands import CommandResult, LedgerBase, Step
from domain.commission_plan import CommissionPlan, commission_plan_id_for
from domain.errors import NotFound


class CommissionPlanNotFound(NotFound):
    code = "commission_plan_not_found"


@dataclass(frozen=True)
class PutCommissionPlan:
    code: str
    config: str  # canonical JSON text of the request's configuration
    effective_from: datetime | None


def render_commission_plan(plan: CommissionPlan) -> dict[str, Any]:
    return {
        "id": str(plan.id),
        "code": plan.code,
        "type": plan.plan_type,
        "versions": [
            {
                "number": version.number,
                "config": version.config,
                "effective_from": version.effective_from.isoformat(),
                "effective_until": None
                if version.effective_until is None
                else version.effective_until.isoformat(),
            }
            for version in plan.versions
        ],
    }


class CommissionCommands(LedgerBase):
    def put_commission_plan(
        self,
        *,
        tenant_id: str,
        code: str,
        config: dict[str, Any],
        effective_from: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> CommandResult:
        """Define the plan of ``code`` (version 1), or add a version in force from
        ``effective_from`` (default: now); the same configuration and instant again changes
        nothing. Raises ``InvalidCommissionPlan``, ``InvalidEffectiveFrom``."""
        at = effective_from or self.now()
        command = PutCommissionPlan(
            code, json.dumps(config, sort_keys=True, default=str), effective_from
        )

        def prepare() -> Step:
            try:
                plan = self.repository.get(commission_plan_id_for(tenant_id, code))
            except AggregateNotFoundError:
                plan = CommissionPlan.define(
                    tenant_id=tenant_id, code=code, config=config, effective_from=at
                )
            else:
                assert isinstance(plan, CommissionPlan)
                plan.revise(config, at)
            return Step([plan], render_commission_plan(plan))

        return self.run(tenant_id, idempotency_key, command, prepare)

    def get_commission_plan(self, tenant_id: str, code: str) -> CommissionPlan:
        """Raises ``CommissionPlanNotFound``."""
        try:
            plan = self.repository.get(commission_plan_id_for(tenant_id, code))
        except AggregateNotFoundError:
            plan = None
        if not isinstance(plan, CommissionPlan) or plan.tenant_id != tenant_id:
            raise CommissionPlanNotFound("no commission plan with this code", param="code")
        return plan
