"""Settings that refuse weak secrets, and where log records go in each format."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import get_args

import pytest
from pydantic import ValidationError

from adapters.logs import configure_logging
from adapters.settings import Settings
from api.schemas import RoleName
from application.access import ROLES

LEDGER = Path(sys.executable).with_name("ledger")


def test_a_bootstrap_api_key_shorter_than_32_characters_is_refused():
    with pytest.raises(ValidationError, match="at least 32 characters"):
        Settings(bootstrap_api_key="x" * 31)
    assert Settings(bootstrap_api_key="x" * 32).bootstrap_api_key == "x" * 32


def test_the_ledger_command_names_the_variable_and_never_echoes_the_short_key(tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith("LEDGER_")}
    env.update(LEDGER_BOOTSTRAP_API_KEY="my-short-secret", LEDGER_DATA_DIR=str(tmp_path))
    result = subprocess.run(
        [str(LEDGER), "keys", "list", "--tenant", "t"], env=env, capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "LEDGER_BOOTSTRAP_API_KEY: must be at least 32 characters" in result.stderr
    assert "my-short-secret" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


def test_json_format_writes_one_object_per_line_to_stderr_and_the_file(
    tmp_path, capsys, restore_logging
):
    log_file = configure_logging(data_dir=tmp_path, level="INFO", format="json")
    logging.getLogger("uvicorn.access").info("GET %s", "/healthz")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("adapters.jobs").exception("job failed")
    logging.getLogger("dramatiq").debug("below the level")

    lines = capsys.readouterr().err.splitlines()
    records = [json.loads(line) for line in lines]
    assert [(r["level"], r["logger"], r["message"]) for r in records] == [
        ("INFO", "uvicorn.access", "GET /healthz"),
        ("ERROR", "adapters.jobs", "job failed"),
    ]
    assert all(set(r) >= {"ts", "level", "logger", "message"} for r in records)
    assert "ValueError: boom" in records[1]["exception"]
    assert records[0]["ts"].endswith("+00:00")
    assert [json.loads(line) for line in log_file.read_text().splitlines()] == records


def test_text_format_keeps_library_chatter_in_the_log_file(tmp_path, capsys, restore_logging):
    log_file = configure_logging(data_dir=tmp_path, level="INFO", format="text")
    logging.getLogger("uvicorn.access").info("GET /healthz 200")
    logging.getLogger("adapters.jobs").info("order confirmation sent")
    logging.getLogger("adapters.listener").warning("LISTEN connection lost")

    stderr = capsys.readouterr().err
    assert "GET /healthz" not in stderr and "order confirmation" not in stderr
    assert "LISTEN connection lost" in stderr
    logged = log_file.read_text()
    assert "GET /healthz 200" in logged and "order confirmation sent" in logged
    assert log_file == tmp_path / "log" / "ledger.log"


def test_the_role_enum_of_the_api_is_the_roles_of_the_application():
    assert get_args(RoleName) == ROLES
