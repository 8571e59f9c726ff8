"""``ledger serve`` as systemd, Docker, make and a terminal stop it: SIGTERM, SIGINT, SIGKILL.

Each test runs the real ``ledger`` command on embedded PostgreSQL and Redis under its own data
directory and reads the process table (``/proc``) for servers left running on that directory.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.integration

LEDGER = Path(sys.executable).with_name("ledger")
STOP_DEADLINE_S = 10
START_DEADLINE_S = 45


class Serve:
    """One ``ledger serve`` process on ``data_dir``, its console kept in a file."""

    def __init__(self, data_dir: Path, name: str, *options: str) -> None:
        self.data_dir = data_dir
        self.port = _free_port()
        self.console = data_dir.parent / f"{name}.console"
        env = {key: value for key, value in os.environ.items() if not key.startswith("LEDGER_")}
        env["LEDGER_DATA_DIR"] = str(data_dir)  # no URLs: embedded PostgreSQL and Redis
        with self.console.open("w") as console:
            self.process = subprocess.Popen(
                [str(LEDGER), "serve", "--port", str(self.port), *options],
                env=env,
                cwd=data_dir.parent,
                stdout=console,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_DEADLINE_S
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"ledger serve exited:\n{self.output()}"
            try:
                base = f"http://127.0.0.1:{self.port}"
                if (
                    httpx.get(f"{base}/healthz", timeout=1).status_code == 200
                    and httpx.get(f"{base}/readyz", timeout=2).status_code == 200
                ):
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        pytest.fail(f"ledger serve did not become ready:\n{self.output()}")

    def stop(self, sig: signal.Signals) -> float:
        """Send ``sig``; return the seconds until the process and its servers are all gone."""
        started = time.monotonic()
        self.process.send_signal(sig)
        self.process.wait(timeout=STOP_DEADLINE_S)
        while servers_on(self.data_dir) and time.monotonic() - started < STOP_DEADLINE_S:
            time.sleep(0.1)
        return time.monotonic() - started

    def output(self) -> str:
        return self.console.read_text()


def servers_on(data_dir: Path) -> list[str]:
    """Live processes with ``data_dir`` in their command line or as their working directory
    (the postmaster, its children and redis-server)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if str(data_dir) in cmdline or cwd.startswith(str(data_dir)):
            found.append(f"{entry.name}: {cmdline}")
    return found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def data_dir(tmp_path: Path):
    directory = tmp_path / "var"
    yield directory
    for line in servers_on(directory):  # never leave servers behind, even when a test fails
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(line.split(":")[0]), signal.SIGKILL)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_stops_the_api_and_every_embedded_server_within_10_s(data_dir, sig):
    serve = Serve(data_dir, "first")
    serve.wait_ready()
    assert servers_on(data_dir), "the embedded PostgreSQL and Redis run on the data directory"

    elapsed_s = serve.stop(sig)

    assert serve.process.returncode == 0, serve.output()
    assert servers_on(data_dir) == []
    assert elapsed_s < STOP_DEADLINE_S
    assert "Traceback" not in serve.output()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_with_two_api_workers_a_stop_signal_stops_them_and_the_servers_within_10_s(data_dir, sig):
    serve = Serve(data_dir, "workers", "--workers", "2")
    serve.wait_ready()
    key = (data_dir / "admin-api-key").read_text().strip()
    workers = _children(serve.process.pid, "spawn_main")
    assert len(workers) == 2, workers
    # Each worker answers, with its own key cache and its own share of the projections.
    for _ in range(8):
        response = httpx.get(
            f"http://127.0.0.1:{serve.port}/v1/orders", headers={"Authorization": f"Bearer {key}"}
        )
        assert response.status_code == 200, response.text

    elapsed_s = serve.stop(sig)

    assert serve.process.returncode == 0, serve.output()
    assert servers_on(data_dir) == []
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)
    assert elapsed_s < STOP_DEADLINE_S
    assert "Traceback" not in serve.output()


def test_in_process_mode_stops_on_sigterm_and_starts_no_children(data_dir):
    serve = Serve(data_dir, "in-process", "--in-process")
    serve.wait_ready()
    assert _children(serve.process.pid, "api.cli") == []

    elapsed_s = serve.stop(signal.SIGTERM)

    assert serve.process.returncode == 0, serve.output()
    assert servers_on(data_dir) == []
    assert elapsed_s < STOP_DEADLINE_S


def test_runners_and_job_worker_run_in_supervised_children_restarted_when_they_die(data_dir):
    serve = Serve(data_dir, "children")
    serve.wait_ready()
    key = (data_dir / "admin-api-key").read_text().strip()
    headers = {"Authorization": f"Bearer {key}"}
    base = f"http://127.0.0.1:{serve.port}"
    runners = _wait_for_children(serve.process.pid, "api.cli project")
    workers = _wait_for_children(serve.process.pid, "api.cli worker")
    assert len(runners) == 1 and len(workers) == 1, (runners, workers)

    os.kill(runners[0], signal.SIGKILL)
    restarted = _wait_for_children(serve.process.pid, "api.cli project", other_than=runners)
    assert len(restarted) == 1, serve.output()
    # Read-your-writes across processes: the API process waits for the runners' process.
    customer = {"email": "a@example.com", "name": "Ada", "country": "US", "currency": "USD"}
    created = httpx.post(f"{base}/v1/customers", json=customer, headers=headers)
    assert created.status_code == 201, created.text
    read = f"{base}/v1/customers/{created.json()['id']}"
    params = {"min_position": created.headers["X-Ledger-Position"]}
    deadline = time.monotonic() + START_DEADLINE_S
    while (response := httpx.get(read, params=params, headers=headers)).status_code == 504:
        assert time.monotonic() < deadline, "the restarted runners never applied the write"
    assert response.status_code == 200, response.text
    assert response.json()["email"] == "a@example.com"

    elapsed_s = serve.stop(signal.SIGTERM)

    assert serve.process.returncode == 0, serve.output()
    assert servers_on(data_dir) == []
    assert not any(Path(f"/proc/{pid}").exists() for pid in [*restarted, *workers])
    assert elapsed_s < STOP_DEADLINE_S
    assert "Traceback" not in serve.output()


def _wait_for_children(pid: int, marker: str, other_than: Sequence[int] = ()) -> list[int]:
    """The children of ``pid`` matching ``marker`` (other than those given), once there are."""
    deadline = time.monotonic() + START_DEADLINE_S
    while time.monotonic() < deadline:
        found = [child for child in _children(pid, marker) if child not in other_than]
        if found:
            return found
        time.sleep(0.1)
    return []


def _children(pid: int, marker: str) -> list[int]:
    """Live child processes of ``pid`` whose command line contains ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if parent == pid and marker in cmdline:
            found.append(int(entry.name))
    return found


def test_a_start_after_sigkill_recovers_and_the_admin_key_is_shown_only_when_generated(data_dir):
    first = Serve(data_dir, "first")
    first.wait_ready()
    key = (data_dir / "admin-api-key").read_text().strip()
    first.process.send_signal(signal.SIGKILL)
    first.process.wait()
    orphans = servers_on(data_dir)
    assert orphans, "SIGKILL leaves PostgreSQL and Redis running without their owner"

    # Orphaned servers, dead pids in the holder files: the next start adopts the servers.
    second = Serve(data_dir, "second")
    second.wait_ready()
    assert second.stop(signal.SIGINT) < STOP_DEADLINE_S
    assert servers_on(data_dir) == []

    # Servers killed too: stale postmaster.pid, Redis pid file and socket. The next start cleans up.
    third = Serve(data_dir, "third")
    third.wait_ready()
    third.process.send_signal(signal.SIGKILL)
    third.process.wait()
    for line in servers_on(data_dir):
        # A postmaster's children exit on their own once it is gone: a listed pid may be dead.
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(line.split(":")[0]), signal.SIGKILL)
    assert (data_dir / "postgres" / "postmaster.pid").exists()
    assert (data_dir / "run" / "redis.sock").exists()
    fourth = Serve(data_dir, "fourth")
    fourth.wait_ready()
    response = httpx.get(
        f"http://127.0.0.1:{fourth.port}/v1/orders", headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 200, response.text
    assert fourth.stop(signal.SIGTERM) < STOP_DEADLINE_S
    assert servers_on(data_dir) == []

    assert key in first.output()
    for later in (second, third, fourth):
        assert key not in later.output()
        assert f"kept in {data_dir / 'admin-api-key'}" in later.output()
