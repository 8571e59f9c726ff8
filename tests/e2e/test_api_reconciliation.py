"""``/v1/reports/reconciliation`` over HTTP: each kind of mismatch with the sandbox processor's
own books is reported, and the ones the processor can settle are settled by a run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from psycopg.sql import SQL

from adapters.bootstrap import Services
from adapters.gateways.sandbox_book import PgSandboxBook, SandboxTransaction
from tests.e2e.conftest import Merchant, assert_error
from tests.integration.payment_fakes import FaultyGateway, install_faulty_gateway, timeout

TODAY = datetime.now(UTC).date()


@pytest.fixture
def gateway(running_services: Services) -> FaultyGateway:
    return install_faulty_gateway(running_services)


@pytest.fixture
def book(running_services: Services) -> PgSandboxBook:
    assert isinstance(running_services.sandbox_book, PgSandboxBook)
    return running_services.sandbox_book


def alter_book(book: PgSandboxBook, statement: str, key: str) -> None:
    """Change the processor's row of a key behind our back: what reconciliation must catch."""
    with book.datastore.transaction(commit=True) as curs:
        curs.execute(SQL(statement).format(book.table), (key,))
        assert curs.rowcount == 1


def paid(acme: Merchant) -> dict[str, Any]:
    customer = acme.customer()
    method = acme.card(customer["id"])
    order = acme.paid_order(customer["id"], method["id"])
    order["attempt_id"] = order["payment"]["history"][-1]["attempt_id"]
    return order


def lost_purchase(acme: Merchant, gateway: FaultyGateway, running_services: Services) -> str:
    """An order whose purchase the sandbox charged but whose answer was lost: its order id."""
    customer = acme.customer()
    method = acme.card(customer["id"])
    gateway.after = timeout
    assert_error(acme.place_order(customer["id"], method["id"]), 502, "gateway_outcome_unknown")
    head = running_services.ledger.recorder.max_notification_id()
    orders = acme.get("/v1/orders", params={"customer_id": customer["id"], "min_position": head})
    [order] = orders.json()["data"]
    assert (order["status"], order["payment"]["outcome"]) == ("processing", "unknown")
    return str(order["id"])


def report(merchant: Merchant, **params: Any) -> dict[str, Any]:
    response = merchant.get(
        "/v1/reports/reconciliation", params={"date": TODAY.isoformat(), **params}
    )
    assert response.status_code == 200, response.text
    return response.json()


def by_order(body: dict[str, Any]) -> dict[str, tuple[str, str, bool]]:
    return {
        item["order_id"]: (item["classification"], item["kind"], item["settleable"])
        for item in body["items"]
    }


def test_each_mismatch_is_reported_and_the_settleable_ones_are_settled_by_a_run(
    acme: Merchant,
    gateway: FaultyGateway,
    book: PgSandboxBook,
    running_services: Services,
    key_of: Any,
) -> None:
    matched = paid(acme)
    vanished = paid(acme)
    alter_book(book, "DELETE FROM {} WHERE idempotency_key = %s", vanished["attempt_id"])
    short = paid(acme)
    alter_book(
        book,
        "UPDATE {} SET amount_minor = amount_minor - 1 WHERE idempotency_key = %s",
        short["attempt_id"],
    )
    refused = paid(acme)
    alter_book(
        book,
        "UPDATE {} SET status = 'declined', decline_code = 'generic_decline'"
        " WHERE idempotency_key = %s",
        refused["attempt_id"],
    )
    # A charge made at the processor with no call of ours (from its dashboard, say).
    stranger = book.add_charge(
        SandboxTransaction(
            id="ch_dashboard_1",
            account_id="acme",
            kind="charge",
            status="succeeded",
            idempotency_key=uuid4(),
            amount_minor=990,
            currency="USD",
            reference="dashboard",
            decline_code=None,
            charge_id=None,
            created_at=datetime.now(UTC),
        )
    )
    unknown = lost_purchase(acme, gateway, running_services)
    refunded = paid(acme)
    gateway.after = timeout  # the refund is made; its answer is lost
    lost_refund = acme.post(f"/v1/orders/{refunded['id']}/refunds", {"amount_minor": 700})
    assert_error(lost_refund, 502, "gateway_outcome_unknown")
    # Another tenant's books are not this tenant's report.
    globex = Merchant(acme.client, key_of("globex", "admin"))
    paid(globex)

    found = report(acme, include_matched="true")

    assert found["date"] == TODAY.isoformat()
    assert found["counts"] == {
        "matched": 2,  # the matched order, and the refunded order's purchase
        "missing_ours": 3,  # the stranger, the lost purchase, the lost refund
        "missing_processor": 1,
        "amount_mismatch": 1,
        "state_mismatch": 1,
    }
    items = by_order(found)
    assert items[matched["id"]] == ("matched", "purchase", False)
    assert items[vanished["id"]] == ("missing_processor", "purchase", False)
    assert items[short["id"]] == ("amount_mismatch", "purchase", False)
    assert items[refused["id"]] == ("state_mismatch", "purchase", False)
    assert items[unknown] == ("missing_ours", "purchase", True)
    [stranger_item] = [
        i for i in found["items"] if i["theirs"] and i["theirs"]["transaction_id"] == stranger.id
    ]
    assert (stranger_item["classification"], stranger_item["ours"]) == ("missing_ours", None)
    [short_item] = [i for i in found["items"] if i["order_id"] == short["id"]]
    assert (short_item["ours"]["amount_minor"], short_item["theirs"]["amount_minor"]) == (
        2500,
        2499,
    )
    assert short_item["attempt_id"] == short["attempt_id"] and short_item["call_id"] is None
    [refund_item] = [
        i for i in found["items"] if i["order_id"] == refunded["id"] and i["kind"] == "refund"
    ]
    assert refund_item["classification"] == "missing_ours" and refund_item["settleable"]
    assert (refund_item["ours"]["state"], refund_item["theirs"]["state"]) == (
        "unknown",
        "succeeded",
    )
    assert report(acme)["counts"] == found["counts"]
    assert all(i["classification"] != "matched" for i in report(acme)["items"])

    run = acme.post("/v1/reports/reconciliation/run", {"date": TODAY.isoformat()})

    assert run.status_code == 200, run.text
    resolutions = {i["order_id"]: i["resolution"] for i in run.json()["items"] if i["settleable"]}
    assert resolutions == {unknown: "succeeded", refunded["id"]: "resolved"}
    after = report(acme)
    assert after["counts"] == {
        "matched": 4,
        "missing_ours": 1,
        "missing_processor": 1,
        "amount_mismatch": 1,
        "state_mismatch": 1,
    }
    # Settled through the ledger's commands: the orders read as the processor says.
    head = running_services.ledger.recorder.max_notification_id()
    order = acme.get(f"/v1/orders/{unknown}", params={"min_position": head}).json()
    assert order["status"] == "paid"
    order = acme.get(f"/v1/orders/{refunded['id']}", params={"min_position": head}).json()
    assert order["status"] == "partially_refunded"
    # Nothing moved twice at the processor.
    charged = [t for _, t in book.transactions("acme", limit=1000) if t.reference == unknown]
    assert len(charged) == 1


def test_a_day_without_payments_is_empty_and_read_roles_may_not_run_it(
    acme: Merchant, key_of: Any
) -> None:
    paid(acme)
    yesterday = (TODAY - timedelta(days=1)).isoformat()
    readonly = Merchant(acme.client, key_of("acme", "readonly"))

    empty = readonly.get("/v1/reports/reconciliation", params={"date": yesterday})
    refused = readonly.post("/v1/reports/reconciliation/run", {"date": yesterday})

    assert empty.status_code == 200, empty.text
    assert sum(empty.json()["counts"].values()) == 0 and empty.json()["items"] == []
    assert_error(refused, 403, "permission_denied")


@pytest.mark.parametrize(
    "day", ["2026-13-01", "yesterday", "20261121", "2026-1-1", "2026-11-21T00:00:00", "0"]
)
def test_a_bad_date_is_a_422_naming_it(acme: Merchant, day: str) -> None:
    error = assert_error(
        acme.get("/v1/reports/reconciliation", params={"date": day}), 422, "validation_error"
    )
    assert error["param"] == "date"
    error = assert_error(
        acme.post("/v1/reports/reconciliation/run", {"date": day}), 422, "validation_error"
    )
    assert error["param"] == "date"


def test_the_date_is_required(acme: Merchant) -> None:
    error = assert_error(acme.get("/v1/reports/reconciliation"), 422, "parameter_missing")
    assert error["param"] == "date"
    error = assert_error(acme.post("/v1/reports/reconciliation/run", {}), 422, "parameter_missing")
    assert error["param"] == "date"
