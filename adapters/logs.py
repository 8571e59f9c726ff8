"""Where log records go: the log file under the data directory, and stderr.

- ``text`` format (the default; people at a terminal): stderr shows warnings and errors only (the
  ``ledger`` command itself prints what a person needs: the URL, where the admin key is, progress),
  and every record at ``LEDGER_LOG_LEVEL`` goes to ``<data_dir>/log/ledger.log``: the
  libraries' chatter (uvicorn's access log, dramatiq, eventsourcing, server commands) and ours.
  With ``LEDGER_LOG_LEVEL=DEBUG`` stderr shows everything too.
- ``json`` format (operators, log shippers): one JSON object per line
  (``ts``, ``level``, ``logger``, ``message``, and ``exception`` when there is one), on stderr
  and in the file, at ``LEDGER_LOG_LEVEL``.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from logging.handlers import WatchedFileHandler
from pathlib import Path

import orjson

LOG_FILE = Path("log") / "ledger.log"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(*, data_dir: Path, level: str, format: str) -> Path:
    """Send log records to the log file and stderr as the module docstring says; return the
    log file's path. Calling it again replaces what an earlier call installed."""
    log_file = Path(data_dir) / LOG_FILE
    log_file.parent.mkdir(parents=True, exist_ok=True)
    formatter = JsonFormatter() if format == "json" else logging.Formatter(TEXT_FORMAT)
    file_handler = WatchedFileHandler(log_file)  # reopened after logrotate moves it
    console = logging.StreamHandler(sys.stderr)
    if format == "text" and level != "DEBUG":
        console.setLevel(logging.WARNING)
    root = logging.getLogger()
    for handler in [handler for handler in root.handlers if getattr(handler, "_ledger", False)]:
        root.removeHandler(handler)
        handler.close()
    for handler in (file_handler, console):
        handler.setFormatter(formatter)
        handler._ledger = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)
    return log_file
