"""The OpenAPI document matches behaviour: a schema-driven fuzzer finds no difference.

schemathesis generates requests from ``/openapi.json`` (in process, over ASGI) with a fixed seed
and a bounded number of examples per operation, authenticated as a tenant's admin, and runs
every check: no server error, only documented statuses and headers, responses that match their
schemas, schema-valid requests accepted. The stateful run follows the links schemathesis infers
(a registered customer's id into its orders, an order's id into its refunds).

Rules the schema cannot state, named in the operations' descriptions, are the only rejections of
schema-valid requests allowed: a card failing the Luhn check or expired (``invalid_card``), and
an order total above the maximum or a purchase of a zero total (``invalid_amount``), a
``min_position`` the log has not reached (``position_not_reached``), and a report period whose
``from`` is after its ``to`` or that is longer than 366 days (``invalid_period``,
``period_too_long``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import positive_data_acceptance

from adapters.bootstrap import Services
from api.app import create_app

pytestmark = pytest.mark.e2e

MAX_EXAMPLES = 25
SEED = 20_260_501

# Rejections of schema-valid requests by rules across fields or against the world, documented.
DOCUMENTED_RULES = {
    ("POST", "/v1/customers/{customer_id}/payment-methods", 422, "invalid_card"),
    ("POST", "/v1/orders", 422, "invalid_amount"),
    # A ``min_position`` beyond the log's head (the schema cannot know the head).
    *(
        ("GET", path, 422, "position_not_reached")
        for path in (
            "/v1/orders",
            "/v1/orders/{order_id}",
            "/v1/customers/{customer_id}",
            "/v1/reports/sales",
            "/v1/reports/gateways",
        )
    ),
    # A report's period: ``from`` not after ``to``, at most 366 days (across two parameters).
    *(
        ("GET", path, 422, code)
        for path in ("/v1/reports/sales", "/v1/reports/gateways")
        for code in ("invalid_period", "period_too_long")
    ),
    # The MRR report: its period (at most 120 months), a rate for every currency and month, a
    # position; an FX rate's two currencies must differ.
    *(
        ("GET", "/v1/reports/mrr", 422, code)
        for code in ("invalid_period", "period_too_long", "fx_rate_missing", "position_not_reached")
    ),
    ("POST", "/v1/fx-rates", 422, "invalid_fx_rate"),
    *(
        ("GET", path, 422, "position_not_reached")
        for path in ("/v1/subscriptions", "/v1/subscriptions/{subscription_id}")
    ),
    # ``effective_at``: after 1970, not in the future, not before the subscription's last change.
    *(
        ("POST", path, 422, "invalid_effective_at")
        for path in (
            "/v1/subscriptions",
            *(
                f"/v1/subscriptions/{{subscription_id}}/{action}"
                for action in (
                    "cancel",
                    "change-plan",
                    "pause",
                    "resume",
                    "reactivate",
                    "payment-method",
                )
            ),
        )
    ),
    # Distributors: a leg goes with a placement parent (across two fields); an effective
    # instant after 1970, not in the future, not before a parent joined or the tenant's latest
    # move; reads wait for a position.
    *(
        ("POST", path, 422, code)
        for path, codes in (
            ("/v1/distributors", ("invalid_placement", "invalid_joined_at")),
            (
                "/v1/distributors/{distributor_id}/placement",
                ("invalid_placement", "invalid_effective_at"),
            ),
            ("/v1/distributors/{distributor_id}/status", ("invalid_effective_at",)),
        )
        for code in codes
    ),
    *(
        ("GET", path, 422, "position_not_reached")
        for path in (
            "/v1/distributors/{distributor_id}",
            "/v1/distributors/{distributor_id}/downline",
            "/v1/distributors/{distributor_id}/upline",
        )
    ),
    # A commission plan's configuration is free-form by type (checked by the domain), and a
    # version takes effect after the latest one.
    *(
        ("PUT", "/v1/commission-plans/{code}", 422, code)
        for code in ("invalid_commission_plan", "invalid_effective_from")
    ),
    # A dunning policy's retry days increase (across the list's items).
    ("PUT", "/v1/billing/dunning-policy", 422, "invalid_dunning_policy"),
}


@pytest.fixture
def fuzzed_app(running_services: Services, key_of: Any) -> Iterator[tuple[FastAPI, str]]:
    yield create_app(running_services), key_of("acme", "admin")


@pytest.fixture
def api_schema(fuzzed_app: tuple[FastAPI, str]) -> Any:
    app, key = fuzzed_app
    config = SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "auth": {"openapi": {"HTTPBearer": {"bearer": key}}},
            "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True},
            "phases": {"coverage": {"enabled": False}},
        }
    )
    return schemathesis.openapi.from_asgi("/openapi.json", app, config=config)


REFUSALS: list[str] = []


@schemathesis.check
def schema_valid_requests_are_accepted(ctx: Any, response: Any, case: Any) -> bool | None:
    """``positive_data_acceptance``, except for the documented rules the schema cannot state."""
    if response.status_code == 422:
        code = response.json().get("error", {}).get("code")
        rule = (case.operation.method.upper(), case.operation.path, 422, code)
        if rule in DOCUMENTED_RULES:
            return None
    try:
        return positive_data_acceptance(ctx, response, case)
    except Exception:
        # Say what was refused and why: the default message names neither.
        REFUSALS.append(
            f"{case.operation.label} -> {response.status_code} {response.text[:300]}"
            f" (path {case.path_parameters}, query {case.query}, body {str(case.body)[:300]})"
        )
        raise


def test_every_operation_behaves_as_its_schema_says(api_schema: Any) -> None:
    failures: dict[str, str] = {}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 10

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            suppress_health_check=list(HealthCheck),
            deadline=None,
            max_examples=MAX_EXAMPLES,
            derandomize=True,
            database=None,
        )
        def fuzz(case: Any) -> None:
            case.call_and_validate(
                additional_checks=[schema_valid_requests_are_accepted],
                excluded_checks=[positive_data_acceptance],
            )

        try:
            fuzz()
        except (Exception, BaseExceptionGroup) as error:  # report every operation's failures
            failures[operation.label] = _describe(error)

    assert not failures, (
        "\n".join(REFUSALS[-20:])
        + "\n\n"
        + "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())
    )


def _describe(error: BaseException) -> str:
    """The failures schemathesis found (its group's members), without the tracebacks."""
    members = error.exceptions if isinstance(error, BaseExceptionGroup) else [error]
    return "\n".join(f"  - {type(member).__name__}: {member}"[:1500] for member in members)


def test_sequences_of_calls_follow_their_links(api_schema: Any) -> None:
    """Stateful: schemathesis chains operations along the links it infers from the schema (a
    created customer's id into its payment methods and orders, an order's id into its refunds
    and reads), with every check on every step."""
    # The linked resources of the first capabilities: the genealogy's and the billing routes'
    # state (a taken leg, a taken plan code) stays in the shared database between examples, so
    # replays answer differently and hypothesis reports a flaky strategy. Every operation is
    # still fuzzed statelessly above.
    machine = api_schema.include(
        path_regex=r"^/v1/(customers|orders|gateways|api-keys|reports)"
    ).as_state_machine()
    links = sum(len(t.outgoing) for t in machine._transitions.operations.values())
    assert links > 0, "no links inferred: the stateful run would test nothing"

    class Checked(machine):  # type: ignore[misc,valid-type]
        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            case.validate_response(
                response,
                additional_checks=[schema_valid_requests_are_accepted],
                excluded_checks=[positive_data_acceptance],
            )

    Checked.run(
        settings=settings(
            max_examples=30,
            stateful_step_count=6,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
    )
