"""Prometheus metrics of the process (exported at ``/metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

PROJECTION_LAG = Gauge(
    "ledger_projection_lag_events",
    "Events recorded but not yet applied by a projection (max notification id - position)",
    ["projection"],
)
PROJECTION_POSITION = Gauge(
    "ledger_projection_position", "Last notification id applied by a projection", ["projection"]
)
PROJECTION_EVENTS = Counter(
    "ledger_projection_events_total", "Notifications processed by a projection", ["projection"]
)
PROJECTION_ERRORS = Counter(
    "ledger_projection_errors_total", "Failed batches of a projection (retried)", ["projection"]
)
PROJECTION_PARKED = Counter(
    "ledger_projection_parked_total", "Poison events parked by a projection", ["projection"]
)
JOBS_ENQUEUED = Counter("ledger_jobs_enqueued_total", "Jobs enqueued by dispatchers", ["job"])
HTTP_REQUESTS = Histogram(
    "ledger_http_request_seconds", "HTTP request latency", ["method", "route", "status"]
)
PAYMENTS_RECONCILED = Counter(
    "ledger_payments_reconciled_total",
    "Payment attempts finished by the reconciler, by the status they ended in",
    ["status"],
)
