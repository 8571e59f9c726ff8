"""The supervisor of ``ledger serve``'s children: restarts one that dies, stops all on request."""

from __future__ import annotations

import os
import sys
import time

from api.supervisor import SUPERVISOR_PID_ENV, ChildProcess, Supervisor, parent_gone

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]
# Ignores SIGTERM: only SIGKILL ends it.
STUBBORN = [
    sys.executable,
    "-c",
    "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
    " sys.stdout.write('ready\\n'); sys.stdout.flush(); time.sleep(60)",
]


def _eventually(condition, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_a_child_that_dies_is_started_again():
    child = ChildProcess("sleeper", SLEEPER)
    supervisor = Supervisor([child], os.environ)
    supervisor.start()
    try:
        first_pid = child.pid
        assert first_pid is not None and child.alive()
        os.kill(first_pid, 9)

        assert _eventually(lambda: child.alive() and child.pid != first_pid)
        assert child.restarts == 1
    finally:
        supervisor.stop(timeout_s=5)
    assert not child.alive()


def test_stop_terminates_every_child_and_restarts_none():
    children = [ChildProcess("one", SLEEPER), ChildProcess("two", SLEEPER)]
    supervisor = Supervisor(children, os.environ)
    supervisor.start()
    pids = [child.pid for child in children]

    started = time.monotonic()
    supervisor.stop(timeout_s=5)

    assert time.monotonic() - started < 2, "SIGTERM ends a well-behaved child at once"
    assert all(child.process.returncode is not None for child in children)  # type: ignore[union-attr]
    time.sleep(0.5)  # longer than the watch interval: nothing comes back
    assert [child.pid for child in children] == pids


def test_a_child_ignoring_sigterm_is_killed_at_the_deadline():
    child = ChildProcess("stubborn", STUBBORN)
    supervisor = Supervisor([child], os.environ)
    supervisor.start()
    time.sleep(1.0)  # let it install its handler

    started = time.monotonic()
    supervisor.stop(timeout_s=0.5)

    assert 0.4 < time.monotonic() - started < 3
    assert child.process is not None and child.process.returncode == -9


def test_children_are_told_their_supervisor_and_can_see_it_gone():
    probe = [sys.executable, "-c", f"import os; print(os.environ['{SUPERVISOR_PID_ENV}'])"]
    child = ChildProcess("probe", probe)
    supervisor = Supervisor([child], os.environ)
    assert supervisor._env[SUPERVISOR_PID_ENV] == str(os.getpid())
    assert not parent_gone(os.getppid())
    assert parent_gone(os.getppid() + 1_000_000)
    assert not parent_gone(None)
