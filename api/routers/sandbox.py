"""``/v1/sandbox/transactions``: the sandbox processor's own books, as its dashboard shows them.

Present only when the sandbox gateway is configured. Reconciliation compares the ledger with
these: for every order, processor charges minus refunds equal our captured minus refunded.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from api.deps import AdminPrincipal, ServicesDep
from api.errors import ApiError
from api.schemas import SandboxTransactionPage
from domain.gateway import is_tenant_account_id

router = APIRouter(prefix="/v1/sandbox", tags=["sandbox"])

LIMIT_DEFAULT = 50
LIMIT_MAX = 500


@router.get("/transactions", response_model=SandboxTransactionPage)
def list_sandbox_transactions(
    principal: AdminPrincipal,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=LIMIT_MAX)] = LIMIT_DEFAULT,
    cursor: Annotated[
        str | None, Query(max_length=20, pattern=r"^[0-9]{1,19}$", description="next_cursor")
    ] = None,
) -> dict[str, Any]:
    """Charges and refunds the sandbox processor executed for this tenant, oldest first: on its
    own account and on its gateways' (scoped to the tenant), never on another tenant's.

    404 ``sandbox_not_configured`` when another gateway is configured.
    """
    book = services.sandbox_book
    if book is None:
        raise ApiError(
            404,
            "invalid_request_error",
            "sandbox_not_configured",
            "the sandbox gateway is not configured",
        )
    after = int(cursor) if cursor else 0
    tenant_id = principal.tenant_id
    accounts = [
        account
        for account in services.ledger.processor_accounts(tenant_id)
        if is_tenant_account_id(tenant_id, account)
    ]
    rows = book.transactions(accounts, after=after, limit=limit + 1)
    page = rows[:limit]
    return {
        "data": [txn.as_dict() for _, txn in page],
        "next_cursor": str(page[-1][0]) if len(rows) > limit else None,
    }
