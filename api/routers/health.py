"""Liveness, readiness and Prometheus metrics; unauthenticated, for the platform's probes."""

from __future__ import annotations

from typing import Any

import prometheus_client
from fastapi import APIRouter, Response

from api.deps import ServicesDep
from api.schemas import OrjsonResponse, ReadinessOut

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up (it says nothing of its dependencies)."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses={
        200: {"model": ReadinessOut, "description": "Ready"},
        503: {"model": ReadinessOut, "description": "Not ready: the failing part says `error: …`"},
    },
)
def readyz(services: ServicesDep) -> OrjsonResponse:
    """Database and Redis reachable (503 otherwise), with each projection's lag in events.

    Answers within about 1.5 s even while a dependency hangs.
    """
    checks: dict[str, Any] = services.readiness()
    ready = checks.get("database") == "ok" and checks.get("redis") == "ok"
    body = {"status": "ok" if ready else "unavailable", **checks}
    return OrjsonResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", include_in_schema=False)
def metrics() -> Response:
    return Response(
        prometheus_client.generate_latest(), media_type=prometheus_client.CONTENT_TYPE_LATEST
    )
