"""``/v1/commission-plans``: a tenant's commission plans, version after version.

``PUT /v1/commission-plans/{code}`` defines a plan (its type is fixed then) or adds a version in
force from ``effective_from`` (default: now; after the latest version's). The configuration of
each type (``unilevel``, ``binary``, ``affiliate``, ``ranks``) is checked by the domain
(422 ``invalid_commission_plan`` naming the field): see ``domain.commission_config``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Response
from pydantic import AwareDatetime, BaseModel, Field

from api.deps import AdminPrincipal, IdempotencyKey, ReadPrincipal, ServicesDep, command_body
from api.schemas import Request
from application.commissions import render_commission_plan

router = APIRouter(prefix="/v1/commission-plans", tags=["network"])

PlanCode = Annotated[
    str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
]


class CommissionPlanPut(Request):
    config: dict[str, Any] = Field(
        description='The plan\'s rules, by type, e.g. `{"type": "unilevel", "levels_bps": '
        '[2000, 500, 400], "compression": "dynamic", "active_min_pv_minor": 5000}`',
        examples=[
            {
                "type": "unilevel",
                "levels_bps": [2000, 500, 400],
                "compression": "dynamic",
                "active_min_pv_minor": 5000,
            }
        ],
    )
    effective_from: AwareDatetime | None = Field(
        default=None, description="When this version takes effect (default: now)"
    )


class PlanVersionOut(BaseModel):
    number: int
    config: dict[str, Any]
    effective_from: str
    effective_until: str | None


class CommissionPlanOut(BaseModel):
    id: str
    code: str
    type: str
    versions: list[PlanVersionOut]


@router.put("/{code}", response_model=CommissionPlanOut)
def put_commission_plan(
    code: PlanCode,
    body: CommissionPlanPut,
    principal: AdminPrincipal,
    services: ServicesDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    """Define the plan, or add a version of it (the same configuration and instant again is
    a replay). 422 ``invalid_commission_plan`` or ``invalid_effective_from``."""
    result = services.ledger.put_commission_plan(
        tenant_id=principal.tenant_id,
        code=code,
        config=body.config,
        effective_from=body.effective_from,
        idempotency_key=idempotency_key,
    )
    return command_body(response, result)


@router.get("/{code}", response_model=CommissionPlanOut)
def get_commission_plan(
    code: PlanCode, principal: ReadPrincipal, services: ServicesDep
) -> dict[str, Any]:
    return render_commission_plan(services.ledger.get_commission_plan(principal.tenant_id, code))
