"""What the HTTP benches share: the real service in a subprocess, a bare ASGI app, and wrk.

``ServiceProcess`` runs ``ledger serve`` (the real entrypoint, the way a user runs it) against the
bench's PostgreSQL and Redis in a fresh schema and namespace; ``BareAppProcess`` runs
``bench.bare_asgi`` under uvicorn on the same tables. Both are started and stopped by their own
process id. ``Wrk`` drives either with wrk on loopback, the request made per request by a Lua
script (random ids from a file, the bearer key, a fresh ``Idempotency-Key``), and reads back the
figures the script's ``done`` callback prints as one JSON line.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg
from psycopg.sql import SQL, Identifier

REPOSITORY = Path(__file__).resolve().parent.parent
LEDGER_COMMAND = Path(sys.executable).parent / "ledger"
TENANT_ID = "default"  # the bootstrap key's tenant
START_TIMEOUT_S = 120
STOP_TIMEOUT_S = 20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bootstrap_api_key() -> str:
    return "lk_bench_" + os.urandom(24).hex()


def tree_rss_mib(pid: int) -> tuple[float, int]:
    """Resident memory of a process and its descendants (MiB), and how many processes that is."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0, 0
    total = 0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += process.memory_info().rss
    return total / 2**20, len(processes)


class _Process:
    """A child process started by a bench and stopped by its id (then its own children's ids)."""

    name = "process"

    def __init__(self, command: Sequence[str], env: dict[str, str], port: int) -> None:
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.log_dir = Path(tempfile.mkdtemp(prefix="ledger_bench_"))
        self.output = (self.log_dir / "output.log").open("wb")
        self.popen = subprocess.Popen(
            list(command),
            env={**os.environ, **env},
            cwd=REPOSITORY,
            stdout=self.output,
            stderr=subprocess.STDOUT,
        )

    def wait_until_up(self, path: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.popen.returncode}:\n{self.tail()}"
                )
            try:
                if httpx.get(self.base_url + path, timeout=2).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(
            f"{self.name} did not answer {path} in {START_TIMEOUT_S} s:\n{self.tail()}"
        )

    def tail(self, lines: int = 40) -> str:
        self.output.flush()
        text = (self.log_dir / "output.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def rss(self) -> str:
        mib, count = tree_rss_mib(self.popen.pid)
        return f"{mib:,.0f} MiB RSS in {count} process{'es' if count != 1 else ''}"

    def stop(self) -> None:
        if self.popen.poll() is None:
            try:
                children = psutil.Process(self.popen.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                children = []
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
            for child in children:  # only the ones this process started, by their ids
                with contextlib.suppress(psutil.NoSuchProcess):
                    child.kill()
        self.output.close()
        shutil.rmtree(self.log_dir, ignore_errors=True)


class ServiceProcess(_Process):
    """``ledger serve --port P [--workers N]`` in a fresh schema, with a known admin key."""

    name = "ledger serve"

    def __init__(
        self,
        *,
        database_url: str,
        redis_url: str,
        schema: str,
        api_key: str,
        workers: int | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        port = free_port()
        command = [str(LEDGER_COMMAND), "serve", "--port", str(port)]
        if workers is not None:
            command += ["--workers", str(workers)]
        self.data_dir = Path(tempfile.mkdtemp(prefix="ledger_bench_data_"))
        env = {
            "LEDGER_DATABASE_URL": database_url,
            "LEDGER_REDIS_URL": redis_url,
            "LEDGER_DB_SCHEMA": schema,
            "LEDGER_REDIS_NAMESPACE": schema,
            "LEDGER_BOOTSTRAP_API_KEY": api_key,
            "LEDGER_DATA_DIR": str(self.data_dir),
            **(extra_env or {}),
        }
        super().__init__(command, env, port)
        self.api_key = api_key
        self.wait_until_up("/healthz")

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def serve_supports_workers() -> bool:
    """Whether this tree's ``ledger serve`` has ``--workers`` (it is being added)."""
    result = subprocess.run(
        [str(LEDGER_COMMAND), "serve", "--help"],
        capture_output=True,
        text=True,
        cwd=REPOSITORY,
        env={**os.environ, "COLUMNS": "200"},
    )
    return "--workers" in result.stdout


class BareAppProcess(_Process):
    """``bench.bare_asgi`` under uvicorn, on the service's tables, with its pool settings."""

    name = "bare ASGI app"

    def __init__(
        self,
        *,
        database_url: str,
        schema: str,
        orders_table: str,
        customers_table: str,
        pool_min: int,
        pool_max: int,
        workers: int = 1,
    ) -> None:
        port = free_port()
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.bare_asgi:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
        ]
        if workers > 1:
            command += ["--workers", str(workers)]
        env = {
            "BENCH_BARE_DATABASE_URL": database_url,
            "BENCH_BARE_SCHEMA": schema,
            "BENCH_BARE_ORDERS_TABLE": orders_table,
            "BENCH_BARE_CUSTOMERS_TABLE": customers_table,
            "BENCH_BARE_TENANT_ID": TENANT_ID,
            "BENCH_BARE_POOL_MIN": str(pool_min),
            "BENCH_BARE_POOL_MAX": str(pool_max),
        }
        super().__init__(command, env, port)
        self.wait_until_up("/healthz")


# The service's tables ----------------------------------------------------------------------------


def connect(database_url: str, timeout_s: float = 60) -> psycopg.Connection[Any]:
    """An autocommit connection; the server is shared, so wait a while for a free slot."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return psycopg.connect(database_url, autocommit=True)
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def serving_table(database_url: str, schema: str, projection: str, suffix: str) -> str:
    """The table a projection serves from now (``<projection>_v<serving version>_<suffix>``)."""
    with connect(database_url) as conn:
        row = conn.execute(
            SQL("SELECT serving_version FROM {}.ledger_projection_versions WHERE name = %s").format(
                Identifier(schema)
            ),
            (projection,),
        ).fetchone()
    version = row[0] if row else 1
    return f"{projection}_v{version}_{suffix}"


def events_table(database_url: str, schema: str) -> str:
    """The ledger's events table: the one with notification ids that the bench did not make."""
    with connect(database_url) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.columns"
            " WHERE table_schema = %s AND column_name IN ('notification_id', 'originator_version')"
            " AND table_name NOT LIKE 'raw%%' AND table_name NOT LIKE '%%dead_letters'"
            " GROUP BY table_name HAVING count(*) = 2",
            (schema,),
        ).fetchall()
    names = sorted(row[0] for row in rows)
    if len(names) != 1:
        raise RuntimeError(f"cannot tell the events table among {names}")
    return names[0]


def wait_for_projections(service: ServiceProcess, timeout_s: float = 1800) -> float:
    """Wait until every projection of the service has applied the whole log (``/readyz`` lag 0);
    return the seconds waited."""
    started = time.monotonic()
    while True:
        body = httpx.get(service.base_url + "/readyz", timeout=10).json()
        projections = body.get("projections") or {}
        if projections and all(p.get("lag") == 0 for p in projections.values()):
            return time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            raise RuntimeError(f"projections still behind after {timeout_s} s: {projections}")
        time.sleep(0.25)


# wrk ---------------------------------------------------------------------------------------------


def ensure_wrk() -> str:
    """The wrk binary; installed from Debian's packages if missing and this user may install."""
    found = shutil.which("wrk")
    if found:
        return found
    install = ["apt-get", "install", "-y", "wrk"]
    if os.geteuid() != 0:
        install = ["sudo", "-n", *install] if shutil.which("sudo") else []
    if install:
        print("# wrk is missing: " + " ".join(install), flush=True)
        if subprocess.run(install, stdout=subprocess.DEVNULL).returncode != 0:
            subprocess.run(install[:-3] + ["update"], stdout=subprocess.DEVNULL)
            subprocess.run(install, stdout=subprocess.DEVNULL)
        found = shutil.which("wrk")
        if found:
            return found
    raise SystemExit(
        "wrk is needed and could not be installed here: run `sudo apt-get install -y wrk` "
        "(Debian/Ubuntu) or `brew install wrk`, then run the bench again"
    )


# The figures wrk's ``done`` callback prints: one JSON object on a line of its own.
_DONE = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests": %d, "duration_us": %d, "non_2xx": %d, "connect": %d,'
    .. ' "read": %d, "write": %d, "timeout": %d, "p50_us": %d, "p95_us": %d, "p99_us": %d,'
    .. ' "mean_us": %.1f, "max_us": %d}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99),
    latency.mean, latency.max))
end
"""

_THREAD_IDS = r"""
local thread_count = 0
setup = function(thread)
  thread_count = thread_count + 1
  thread:set("thread_id", thread_count)
end
init = function(args)
  math.randomseed(os.time() * 1000 + (thread_id or 0))
end
"""


def _lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid Lua string literal for ASCII


def get_script(paths_file: Path, api_key: str | None) -> str:
    """GET a random path of ``paths_file`` (one per line) per request."""
    headers = f'["Authorization"] = {_lua_string("Bearer " + api_key)}' if api_key else ""
    return (
        _THREAD_IDS
        + f"""
local paths = {{}}
for line in io.lines({_lua_string(str(paths_file))}) do paths[#paths + 1] = line end
local headers = {{{headers}}}
request = function()
  return wrk.format("GET", paths[math.random(#paths)], headers)
end
"""
        + _DONE
    )


def post_order_script(pairs_file: Path, api_key: str, key_prefix: str | None) -> str:
    """POST /v1/orders with a sandbox purchase for a random (customer, card) of ``pairs_file``
    ("<customer id> <payment method id>" per line); a fresh Idempotency-Key per request unless
    ``key_prefix`` is None."""
    key_line = (
        f'headers["Idempotency-Key"] = {_lua_string(key_prefix)} .. thread_id .. "-" .. counter'
        if key_prefix is not None
        else ""
    )
    return (
        _THREAD_IDS
        + f"""
local pairs_ = {{}}
for line in io.lines({_lua_string(str(pairs_file))}) do
  local customer, method = line:match("(%S+) (%S+)")
  pairs_[#pairs_ + 1] = {{customer, method}}
end
local counter = 0
request = function()
  counter = counter + 1
  local pair = pairs_[math.random(#pairs_)]
  local headers = {{
    ["Authorization"] = {_lua_string("Bearer " + api_key)},
    ["Content-Type"] = "application/json",
  }}
  {key_line}
  local body = '{{"customer_id": "' .. pair[1] .. '", "currency": "USD", "lines": ['
    .. '{{"sku": "SKU-MUG-RED", "quantity": 2, "unit_price_minor": 1250}}, '
    .. '{{"sku": "SKU-TEE-L", "quantity": 1, "unit_price_minor": 2400}}], '
    .. '"payment": {{"payment_method_id": "' .. pair[2] .. '", "mode": "purchase"}}}}'
  return wrk.format("POST", "/v1/orders", headers, body)
end
"""
        + _DONE
    )


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_s: float
    non_2xx: int
    socket_errors: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float

    @property
    def rate_per_s(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    def summary(self) -> str:
        errors = ""
        if self.non_2xx or self.socket_errors:
            errors = f", {self.non_2xx:,} non-2xx, {self.socket_errors:,} socket errors"
        return (
            f"{self.rate_per_s:,.0f} req/s, p50 {self.p50_ms:.2f} ms, p95 {self.p95_ms:.2f} ms, "
            f"p99 {self.p99_ms:.2f} ms, max {self.max_ms:.0f} ms ({self.requests:,} requests"
            f"{errors})"
        )


class Wrk:
    """Runs wrk with a Lua script against a base URL."""

    def __init__(self) -> None:
        self.binary = ensure_wrk()
        self.work_dir = Path(tempfile.mkdtemp(prefix="ledger_bench_wrk_"))
        self._files = 0

    def write(self, lines: Iterable[str]) -> Path:
        self._files += 1
        path = self.work_dir / f"data_{self._files}.txt"
        path.write_text("".join(line + "\n" for line in lines))
        return path

    def run(
        self,
        base_url: str,
        script: str,
        *,
        connections: int,
        threads: int,
        duration_s: float,
        timeout_s: float = 10,
    ) -> WrkResult:
        self._files += 1
        script_path = self.work_dir / f"script_{self._files}.lua"
        script_path.write_text(script)
        completed = subprocess.run(
            [
                self.binary,
                f"-t{threads}",
                f"-c{connections}",
                f"-d{max(1, round(duration_s))}s",
                f"--timeout={timeout_s:g}s",
                "-s",
                str(script_path),
                base_url,
            ],
            capture_output=True,
            text=True,
        )
        for line in completed.stdout.splitlines():
            if line.startswith("WRK_RESULT "):
                return _parse(json.loads(line.removeprefix("WRK_RESULT ")))
        raise RuntimeError(
            f"wrk failed ({completed.returncode}): {completed.stderr or completed.stdout}"
        )

    def close(self) -> None:
        shutil.rmtree(self.work_dir, ignore_errors=True)


def _parse(figures: dict[str, Any]) -> WrkResult:
    return WrkResult(
        requests=figures["requests"],
        duration_s=figures["duration_us"] / 1e6,
        non_2xx=figures["non_2xx"],
        socket_errors=figures["connect"] + figures["read"] + figures["write"] + figures["timeout"],
        p50_ms=figures["p50_us"] / 1000,
        p95_ms=figures["p95_us"] / 1000,
        p99_ms=figures["p99_us"] / 1000,
        mean_ms=figures["mean_us"] / 1000,
        max_ms=figures["max_us"] / 1000,
    )


def median_result(results: Sequence[WrkResult]) -> WrkResult:
    """The round with the median rate (its own latencies with it: never a mix of rounds)."""
    ordered = sorted(results, key=lambda result: result.rate_per_s)
    return ordered[(len(ordered) - 1) // 2]
