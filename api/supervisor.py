"""Child processes of ``ledger serve``: started, restarted when they die, stopped on the way out.

``ledger serve`` runs the projection runners (``ledger project``) and the job worker
(``ledger worker``) in processes of their own, so the API process only serves requests and
shares its interpreter lock with nothing but its LISTEN thread. The supervisor starts each
child, restarts one that exits while it should run (after a back-off that grows while the child
keeps dying young), and stops all of them on request: SIGTERM, then SIGKILL at a deadline.

Children run in sessions of their own, so a Ctrl-C in the terminal reaches the parent alone and
the parent decides the order (the children stop before the embedded servers they use). A child
also stops by itself when its parent is gone (``parent_gone``), so a SIGKILLed ``serve`` leaves
no orphan working on.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

# The parent's process id, given to each child so it can tell when the parent is gone.
SUPERVISOR_PID_ENV = "LEDGER_SUPERVISOR_PID"
CHECK_INTERVAL_S = 0.2
RESTART_DELAY_S_MIN = 0.5
RESTART_DELAY_S_MAX = 30.0
# A child that ran this long before dying is restarted at once (its back-off starts again).
STABLE_RUN_S = 30.0


@dataclass
class ChildProcess:
    """One supervised command."""

    name: str
    argv: Sequence[str]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    restart_at: float | None = None
    _delay_s: float = field(default=RESTART_DELAY_S_MIN, repr=False)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


class Supervisor:
    """Keeps ``children`` running until ``stop``; safe to stop from a signal handler's thread."""

    def __init__(self, children: Sequence[ChildProcess], env: Mapping[str, str]) -> None:
        self.children = list(children)
        self._env = {**env, SUPERVISOR_PID_ENV: str(os.getpid())}
        # Reentrant: ``begin_stop`` runs in signal handlers, which may interrupt the main thread
        # while it holds the lock.
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with self._lock:
            for child in self.children:
                self._spawn(child)
        self._thread = threading.Thread(target=self._watch, name="supervisor", daemon=True)
        self._thread.start()

    def _spawn(self, child: ChildProcess) -> None:
        child.process = subprocess.Popen(child.argv, env=self._env, start_new_session=True)
        child.started_at = time.monotonic()
        child.restart_at = None
        logger.info("started %s (pid %s)", child.name, child.pid)

    def _watch(self) -> None:
        while not self._stopping.wait(CHECK_INTERVAL_S):
            with self._lock:
                if self._stopping.is_set():
                    return
                for child in self.children:
                    self._keep_alive(child)

    def _keep_alive(self, child: ChildProcess) -> None:
        now = time.monotonic()
        if child.restart_at is not None:
            if now >= child.restart_at:
                child.restarts += 1
                self._spawn(child)
            return
        if child.process is None or child.process.poll() is None:
            return
        ran_s = now - child.started_at
        # A child dying young is retried later and later; one that ran a while, at once.
        if ran_s >= STABLE_RUN_S:
            child._delay_s = RESTART_DELAY_S_MIN
        else:
            child._delay_s = min(child._delay_s * 2, RESTART_DELAY_S_MAX)
        logger.warning(
            "%s (pid %s) exited with %s after %.1f s; restarting it in %.1f s",
            child.name,
            child.pid,
            child.process.returncode,
            ran_s,
            child._delay_s,
        )
        child.restart_at = now + child._delay_s

    def begin_stop(self) -> None:
        """Ask every child to stop (SIGTERM) and restart none from now on; does not wait."""
        with self._lock:
            self._stopping.set()
            for child in self.children:
                if child.alive():
                    assert child.process is not None
                    child.process.send_signal(signal.SIGTERM)

    def stop(self, timeout_s: float) -> None:
        """Stop every child: SIGTERM, and SIGKILL for those still running after ``timeout_s``."""
        self.begin_stop()
        deadline = time.monotonic() + timeout_s
        for child in self.children:
            if child.process is None:
                continue
            try:
                child.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning("%s (pid %s) did not stop in time; killed", child.name, child.pid)
                child.process.kill()
                child.process.wait()
        if self._thread is not None:
            self._thread.join(timeout=1)


def parent_gone(supervisor_pid: int | None) -> bool:
    """Whether the ``serve`` that started this process has exited (the child is re-parented)."""
    return supervisor_pid is not None and os.getppid() != supervisor_pid


def supervisor_pid_of(env: Mapping[str, str]) -> int | None:
    value = env.get(SUPERVISOR_PID_ENV, "")
    return int(value) if value.isdigit() else None
