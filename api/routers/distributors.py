"""``/v1/distributors``: enrol, read, downline and upline in either tree, placement moves,
status changes.

Commands answer with the distributor as it stands after them (one rendering with the read
model, ``application.network.render_distributor``). Enrolment under an unknown sponsor or
placement parent is 404 (``sponsor_not_found``, ``placement_not_found``); a leg already held is
409 ``leg_taken``; a move under one's own placement downline is 409 ``placement_cycle``; a leg
without a placement parent (or the reverse) is 422 ``invalid_placement``.

``joined_at`` and ``effective_at`` (admin keys only, 403 otherwise) import history: the change
takes effect at that instant, which is after 1970 and never in the future (422
``invalid_joined_at``, ``invalid_effective_at``); a distributor joins no earlier than their
sponsor and placement parent, and a tenant's moves take effect in the order they are recorded.

Trees are read as of ``as_of`` (default: now): a period close reads them as they stood.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Query, Response
from pydantic import AwareDatetime, BaseModel, Field

from api.deps import (
    CommandPrincipal,
    GenealogyReader,
    IdempotencyKey,
    ServicesDep,
    command_body,
)
from api.schemas import NO_NUL, VISIBLE_PATTERN, Request
from application.access import PermissionDenied, Principal
from application.network import DistributorNotFound, render_distributor
from domain.distributor import (
    APPROVER_LENGTH_MAX,
    REASON_LENGTH_MAX,
    DistributorStatus,
    InvalidEffectiveAt,
    InvalidJoinedAt,
    Leg,
)

router = APIRouter(prefix="/v1/distributors", tags=["network"])

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
DEPTH_MAX = 10_000
DOWNLINE_CURSOR_PATTERN = r"^[0-9]{1,5}_[0-9a-f]{32}$"
Tree = Literal["sponsor", "placement"]


def _effective_field(code: str) -> Any:
    return Field(
        default=None,
        description="Admin only: when this took effect (an import from another system); after "
        f"1970 and not in the future (422 `{code}`). Default: now",
    )


class DistributorCreate(Request):
    customer_id: UUID | None = Field(
        default=None, description="The customer enrolled (at most once: 409 `distributor_exists`)"
    )
    sponsor_id: UUID | None = Field(default=None, description="Who recruited them")
    placement_id: UUID | None = Field(
        default=None, description="Their placement parent; `leg` is then required"
    )
    leg: Leg | None = Field(
        default=None, description="The placement parent's leg (only with `placement_id`)"
    )
    joined_at: AwareDatetime | None = _effective_field("invalid_joined_at")


class PlacementMove(Request):
    placement_id: UUID | None = Field(
        description="The new placement parent (null: out of the placement tree)"
    )
    leg: Leg | None = Field(default=None, description="The new parent's leg (with a parent)")
    approved_by: Annotated[
        str, Field(min_length=1, max_length=APPROVER_LENGTH_MAX, pattern=VISIBLE_PATTERN)
    ]
    reason: Annotated[
        str, Field(min_length=1, max_length=REASON_LENGTH_MAX, pattern=VISIBLE_PATTERN)
    ]
    effective_at: AwareDatetime | None = _effective_field("invalid_effective_at")


class StatusChange(Request):
    status: DistributorStatus
    reason: Annotated[str | None, Field(max_length=REASON_LENGTH_MAX, pattern=NO_NUL)] = None
    effective_at: AwareDatetime | None = _effective_field("invalid_effective_at")


class DistributorOut(BaseModel):
    id: UUID
    customer_id: UUID | None
    sponsor_id: UUID | None
    placement_id: UUID | None
    leg: Leg | None
    status: DistributorStatus
    joined_at: str
    status_changed_at: str
    placement_changed_at: str


class TreeMember(BaseModel):
    depth: int = Field(description="Levels below (downline) or above (upline)")
    branch_id: UUID | None = Field(
        description="The upper distributor's frontline member on the path (its leg)"
    )
    leg: Leg | None = Field(description="Placement tree: the upper distributor's binary leg")
    distributor: DistributorOut = Field(description="The member as it stands now")


class DownlinePage(BaseModel):
    data: list[TreeMember]
    next_cursor: str | None


class Upline(BaseModel):
    data: list[TreeMember]


def _instant(value: datetime | None, principal: Principal | None, error: Any, param: str) -> Any:
    if value is None:
        return None
    if principal is not None and principal.role != "admin":
        raise PermissionDenied(f"only an admin key may set {param} (imports)")
    at = _utc(value)
    if at <= EARLIEST:
        raise error(f"{param} is after 1970", param=param)
    return at


def _utc(value: datetime) -> datetime:
    """In UTC; the first hours of year 1 and the last of year 9999 in a zone that takes them
    beyond the calendar are clamped to its ends."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        return (
            datetime.min.replace(tzinfo=UTC)
            if value.year == 1
            else datetime.max.replace(tzinfo=UTC)
        )


def _as_of(value: datetime | None) -> datetime | None:
    return None if value is None else _utc(value)


@router.post("", status_code=201, response_model=DistributorOut)
def enrol_distributor(
    body: DistributorCreate,
    principal: CommandPrincipal,
    services: ServicesDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    result = services.ledger.enrol_distributor(
        tenant_id=principal.tenant_id,
        customer_id=body.customer_id,
        sponsor_id=body.sponsor_id,
        placement_id=body.placement_id,
        leg=body.leg,
        joined_at=_instant(body.joined_at, principal, InvalidJoinedAt, "joined_at"),
        idempotency_key=idempotency_key,
    )
    return command_body(response, result)


@router.get("/{distributor_id}", response_model=DistributorOut)
def get_distributor(
    distributor_id: UUID, principal: GenealogyReader, services: ServicesDep
) -> dict[str, Any]:
    row = services.genealogy.get(principal.tenant_id, distributor_id)
    if row is None:
        raise DistributorNotFound("no distributor with this id", param="distributor_id")
    return render_distributor(row["distributor_id"], row)


def _member(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "depth": row["depth"],
        "branch_id": row["branch_id"],
        "leg": row["branch_leg"],
        "distributor": render_distributor(row["distributor_id"], row),
    }


@router.get("/{distributor_id}/downline", response_model=DownlinePage)
def get_downline(
    distributor_id: UUID,
    principal: GenealogyReader,
    services: ServicesDep,
    tree: Tree = "sponsor",
    depth: Annotated[
        int | None, Query(ge=1, le=DEPTH_MAX, description="Levels down (default: all)")
    ] = None,
    as_of: Annotated[
        AwareDatetime | None, Query(description="Read the tree as it stood then (default: now)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[
        str | None,
        Query(
            pattern=DOWNLINE_CURSOR_PATTERN,
            max_length=40,
            description="The `next_cursor` of the previous page",
        ),
    ] = None,
) -> dict[str, Any]:
    """The downline by depth, then id, ``limit`` at a time; follow ``next_cursor``."""
    after = None
    if cursor is not None:
        depth_text, id_hex = cursor.split("_")
        after = (int(depth_text), UUID(hex=id_hex))
    rows = services.genealogy.downline(
        principal.tenant_id, distributor_id, tree, depth=depth, as_of=_as_of(as_of),
        after=after, limit=limit + 1,
    )  # fmt: skip
    if rows is None:
        raise DistributorNotFound("no distributor with this id", param="distributor_id")
    page = rows[:limit]
    next_cursor = (
        f"{page[-1]['depth']}_{page[-1]['distributor_id'].hex}" if len(rows) > limit else None
    )
    return {"data": [_member(row) for row in page], "next_cursor": next_cursor}


@router.get("/{distributor_id}/upline", response_model=Upline)
def get_upline(
    distributor_id: UUID,
    principal: GenealogyReader,
    services: ServicesDep,
    tree: Tree = "sponsor",
    as_of: Annotated[
        AwareDatetime | None, Query(description="Read the tree as it stood then (default: now)")
    ] = None,
) -> dict[str, Any]:
    """The upline, nearest first, up to the tree's root."""
    rows = services.genealogy.upline(principal.tenant_id, distributor_id, tree, as_of=_as_of(as_of))
    if rows is None:
        raise DistributorNotFound("no distributor with this id", param="distributor_id")
    return {"data": [_member(row) for row in rows]}


@router.post("/{distributor_id}/placement", response_model=DistributorOut)
def move_placement(
    distributor_id: UUID,
    body: PlacementMove,
    principal: CommandPrincipal,
    services: ServicesDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    """Move the distributor, with the subtree under them, to another placement (compliance:
    who approved it and why are recorded). 409 ``placement_cycle`` under their own downline,
    ``leg_taken``, ``placement_unchanged``, ``distributor_terminated``; 422
    ``invalid_placement`` for a leg without a parent or the reverse, ``invalid_effective_at``
    before the tenant's latest move or the new parent's joining."""
    result = services.ledger.move_placement(
        tenant_id=principal.tenant_id,
        distributor_id=distributor_id,
        placement_id=body.placement_id,
        leg=body.leg,
        approved_by=body.approved_by,
        reason=body.reason,
        effective_at=_instant(body.effective_at, principal, InvalidEffectiveAt, "effective_at"),
        idempotency_key=idempotency_key,
    )
    return command_body(response, result)


@router.post("/{distributor_id}/status", response_model=DistributorOut)
def change_status(
    distributor_id: UUID,
    body: StatusChange,
    principal: CommandPrincipal,
    services: ServicesDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    """Active ↔ inactive, or terminated (final: 409 ``distributor_terminated`` afterwards); the
    status it already has is 409 ``invalid_state``."""
    result = services.ledger.set_distributor_status(
        tenant_id=principal.tenant_id,
        distributor_id=distributor_id,
        status=body.status,
        reason=body.reason,
        effective_at=_instant(body.effective_at, principal, InvalidEffectiveAt, "effective_at"),
        idempotency_key=idempotency_key,
    )
    return command_body(response, result)
