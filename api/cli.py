"""The ``ledger`` command: serve, worker, project, rebuild, keys, demo.

An entrypoint: it may import the composition root, and nothing else from ``adapters`` (but
settings and logging set-up).

What a person sees on the console is printed here (the URL, where the admin key is, progress);
log records go to ``<data_dir>/log/ledger.log`` (see ``adapters.logs``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import typer
import uvicorn
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text
from uvicorn.supervisors.multiprocess import Multiprocess

from adapters import rebuild as rebuilding
from adapters.bootstrap import EmbeddedServers, Services, bootstrap, start_embedded
from adapters.logs import LOG_FILE, configure_logging
from adapters.projection_runner import ProjectionRunner
from adapters.settings import Settings
from api.supervisor import ChildProcess, Supervisor, parent_gone, supervisor_pid_of
from application.demo import demo_fx_rates, load_demo
from domain.errors import DomainError

app = typer.Typer(
    help="Commerce Ledger: an event-sourced ledger for commerce.", no_args_is_help=True
)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
fx_app = typer.Typer(help="FX rates the MRR report converts currencies with.", no_args_is_help=True)
app.add_typer(fx_app, name="fx")
console = Console(stderr=True)
logger = logging.getLogger(__name__)

ADMIN_KEY_FILE = "admin-api-key"
# How long uvicorn lets open connections finish once asked to stop; the services close after.
API_SHUTDOWN_TIMEOUT_S = 3
# How long ``serve --workers`` waits for its workers to close their services (the job worker may
# take 5 s to finish a job) before killing them; the same for the runners' and the job worker's
# processes.
WORKER_STOP_TIMEOUT_S = 7
# Set by ``serve`` for its API processes (``--workers N``): serve requests only, the runners and
# the job worker run in processes of their own.
API_ONLY_ENV = "LEDGER_SERVE_API_ONLY"
# How often ``ledger project`` / ``ledger worker`` look whether the ``serve`` that started them
# is still there.
PARENT_CHECK_INTERVAL_S = 1.0


def _progress(disable: bool = False) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=disable,
    )


def _stop_requested() -> threading.Event:
    """An event that SIGTERM and SIGINT set (from now on)."""
    stop = threading.Event()
    for sig in _STOP_SIGNALS:
        signal.signal(sig, lambda *_: stop.set())
    return stop


def _on_stop_signal() -> threading.Event | None:
    """How ``ledger project`` / ``ledger worker`` take a stop signal while they start.

    Run by a person: SIGTERM as Ctrl-C, at once (``_interrupt``); returns None. Run by
    ``ledger serve``: the signal only sets the returned event, which the command checks once
    started. A KeyboardInterrupt raised anywhere in start-up (a pool's thread, a ``__del__``)
    could print a traceback, and the supervisor kills a child that does not stop in time anyway.
    """
    if supervisor_pid_of(os.environ) is None:
        signal.signal(signal.SIGTERM, _interrupt)
        return None
    return _stop_requested()


def _wait_for_signal(stop: threading.Event | None = None) -> None:
    """Until SIGTERM or SIGINT (or ``stop`` is set), or, in a child of ``ledger serve``, until
    that parent is gone (a SIGKILLed parent cannot stop its children; they must not work on as
    orphans)."""
    stop = stop or _stop_requested()
    supervisor_pid = supervisor_pid_of(os.environ)
    while not stop.wait(PARENT_CHECK_INTERVAL_S):
        if parent_gone(supervisor_pid):
            logger.warning("ledger serve (pid %s) is gone; stopping", supervisor_pid)
            return


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _interrupt(signum: int, frame: Any) -> None:
    """SIGTERM as Ctrl-C: unwind through ``finally`` so everything started is stopped."""
    raise KeyboardInterrupt


def _ignore_stop_signals() -> None:
    """While closing, a second SIGTERM or Ctrl-C must not cut the closing short."""
    for sig in _STOP_SIGNALS:
        signal.signal(sig, lambda *_: logger.warning("already stopping"))


class _ApiServer(uvicorn.Server):
    """uvicorn's server, minus one behaviour: after a signal-initiated shutdown uvicorn raises the
    signal again, so that the default handler kills the process, which would skip closing the
    runners, the worker and the embedded services. Here ``run()`` simply returns.

    ``on_exit`` is called at the stop signal, so the child processes stop while the API drains.
    """

    def __init__(self, config: uvicorn.Config, on_exit: Any = None) -> None:
        super().__init__(config)
        self.on_exit = on_exit

    def handle_exit(self, sig: int, frame: Any) -> None:
        super().handle_exit(sig, frame)
        if self.on_exit is not None:
            self.on_exit()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in _STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _say(settings: Settings, markup: str) -> None:
    """A message for the person running the command: on the console, or with the json log
    format a log record (so stderr stays one JSON object per line)."""
    if settings.log_format == "json":
        logger.info(Text.from_markup(markup).plain)
    else:
        console.print(markup, soft_wrap=True)  # a path or URL stays on one line


def announce_admin_key(services: Services) -> None:
    """Make sure tenant 'default' has an admin key and say where it is.

    ``LEDGER_BOOTSTRAP_API_KEY`` if set; else a key generated at the first start and kept in
    ``<data_dir>/admin-api-key``. The key itself is shown once, when generated, and never
    logged (with the json log format it is not shown: read the file), so it does not end up in
    logs at every start.
    """
    settings = services.settings
    if settings.bootstrap_api_key:
        _say(settings, "Admin API key (tenant 'default'): the one in LEDGER_BOOTSTRAP_API_KEY")
        return
    key_file = Path(settings.data_dir) / ADMIN_KEY_FILE
    key_file.parent.mkdir(parents=True, exist_ok=True)
    generated = "lk_" + secrets.token_urlsafe(32)
    try:
        # Exclusive and private from the first byte: two first starts cannot both write it.
        with os.fdopen(os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
            f.write(generated + "\n")
    except FileExistsError:
        key = key_file.read_text().strip()
    else:
        key = generated
    services.access.create_key("default", "admin", key, name="admin (generated at first start)")
    if key == generated and settings.log_format == "text":
        console.print("Admin API key of tenant 'default', shown only this once:")
        console.print(f"  [bold]{key}[/bold]", soft_wrap=True)
    _say(settings, f"Admin API key (tenant 'default'): kept in {key_file}")


def _load_demo(services: Services, customers: int) -> None:
    with _progress(disable=services.settings.log_format == "json") as progress:
        task = progress.add_task("Loading demo data", total=customers)
        counts = load_demo(
            services.ledger,
            customers=customers,
            progress=lambda done: progress.update(task, completed=done),
        )
    if services.fx_rates is not None:
        counts["fx rates"] = services.fx_rates.record(demo_fx_rates(services.ledger.now().date()))
    summary = ", ".join(f"{count} {name}" for name, count in counts.items())
    _say(services.settings, f"Demo data in tenant 'default': {summary}")


def _runner_named(services: Services, name: str) -> ProjectionRunner:
    runner = services.runners.get(name)
    if runner is None:
        raise typer.BadParameter(f"unknown projection {name!r}; known: {sorted(services.runners)}")
    return runner


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind")] = None,
    port: Annotated[int | None, typer.Option(help="Port to bind")] = None,
    demo: Annotated[bool, typer.Option(help="Load the demo data set first (idempotent)")] = False,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="API processes (the projection runners and the job worker run once, in "
            "processes of their own)",
        ),
    ] = 1,
    in_process: Annotated[
        bool,
        typer.Option(
            "--in-process",
            help="Run the projection runners and the job worker as threads of each API process "
            "instead of child processes (one process; they then share its CPU)",
        ),
    ] = False,
) -> None:
    """API + projection runners + job worker (embedded services if no URLs).

    The runners (``ledger project``) and the job worker (``ledger worker``) run in child
    processes, restarted if they die; the API processes only serve requests. SIGTERM or Ctrl-C,
    at any moment, stops the API, the children and then the embedded PostgreSQL and Redis.
    """
    signal.signal(signal.SIGTERM, _interrupt)
    services: Services | None = None
    embedded: EmbeddedServers | None = None
    supervisor: Supervisor | None = None
    try:
        embedded = start_embedded(Settings())
        settings = embedded.settings
        services = bootstrap(settings)
        announce_admin_key(services)
        if demo:
            _load_demo(services, customers=300)
        bind_host, bind_port = host or settings.host, port or settings.port
        _say(settings, f"Logs: {Path(settings.data_dir) / LOG_FILE}")
        _say(
            settings,
            f"[bold]Commerce Ledger[/bold] on http://{bind_host}:{bind_port}/docs"
            " (Ctrl-C stops it)",
        )
        options: dict[str, Any] = {
            "host": bind_host,
            "port": bind_port,
            "log_config": None,  # records go to our handlers (adapters.logs)
            # One log line per request costs the event loop ~8% at load; /metrics counts them.
            "access_log": settings.access_log,
            "timeout_graceful_shutdown": API_SHUTDOWN_TIMEOUT_S,
        }
        # Children and API workers bootstrap themselves (tables and keys exist by now) from these.
        os.environ["LEDGER_DATABASE_URL"] = settings.database_url or ""
        os.environ["LEDGER_REDIS_URL"] = settings.redis_url or ""
        if not in_process:
            supervisor = _start_children(os.environ)
        if workers == 1:
            services.start_listener()  # positions (read-your-writes) and API key changes
            if in_process:
                services.start_runners()
                services.start_worker()
            on_exit = supervisor.begin_stop if supervisor is not None else None
            _ApiServer(uvicorn.Config(_app_of(services), **options), on_exit=on_exit).run()
            return
        services.close()
        services = None
        if not in_process:
            os.environ[API_ONLY_ENV] = "1"
        config = uvicorn.Config("api.cli:worker_app", factory=True, workers=workers, **options)
        _ApiWorkers(config, sockets=[config.bind_socket()], supervisor=supervisor).run()
    except KeyboardInterrupt:
        pass  # a stop signal during start-up
    finally:
        _ignore_stop_signals()
        if supervisor is not None:
            supervisor.stop(WORKER_STOP_TIMEOUT_S)
        if services is not None:
            services.close()
        if embedded is not None:
            embedded.stop()


def _ledger_argv(*arguments: str) -> list[str]:
    """This interpreter running the ``ledger`` command (whatever its script is called)."""
    return [sys.executable, "-m", "api.cli", *arguments]


def _start_children(env: Any) -> Supervisor:
    """The projection runners and the job worker, each in a supervised child process."""
    supervisor = Supervisor(
        [
            ChildProcess("projection runners", _ledger_argv("project")),
            ChildProcess("job worker", _ledger_argv("worker")),
        ],
        env,
    )
    supervisor.start()
    return supervisor


def _app_of(services: Services) -> Any:
    from api.app import create_app

    return create_app(services)


def worker_app() -> Any:
    """One API process of ``ledger serve --workers N`` (uvicorn's app factory): logging as the
    parent's, and an app whose lifespan bootstraps, starts and closes this process's services."""
    from api.app import create_app

    settings = Settings()
    configure_logging(
        data_dir=settings.data_dir, level=settings.log_level, format=settings.log_format
    )
    return create_app(api_only=os.environ.get(API_ONLY_ENV) == "1")


class _ApiWorkers(Multiprocess):
    """uvicorn's supervisor of worker processes, with a bounded wait for them to stop: a worker
    still running after ``WORKER_STOP_TIMEOUT_S`` is killed, so the parent stops the embedded
    servers in time. The runners' and job worker's processes are told to stop at the same
    moment as the API workers."""

    def __init__(self, config: uvicorn.Config, sockets: Any, supervisor: Supervisor | None):
        super().__init__(config, sockets)
        self.supervisor = supervisor

    def terminate_all(self) -> None:
        if self.supervisor is not None:
            self.supervisor.begin_stop()
        super().terminate_all()

    def join_all(self) -> None:
        deadline = time.monotonic() + WORKER_STOP_TIMEOUT_S
        for process in self.processes:
            process.process.join(max(0.0, deadline - time.monotonic()))
            if process.process.is_alive():
                logger.warning("API worker %s did not stop in time; killing it", process.pid)
                process.process.kill()
                process.process.join()


@app.command()
def worker(threads: Annotated[int | None, typer.Option(help="Worker threads")] = None) -> None:
    """The dramatiq worker (jobs) against Redis."""
    stop = _on_stop_signal()
    services = bootstrap()
    try:
        if stop is not None and stop.is_set():
            return
        services.start_worker(threads)
        _say(services.settings, "worker running; Ctrl-C to stop")
        _wait_for_signal(stop)
    finally:
        services.close()


@app.command()
def project(
    names: Annotated[list[str] | None, typer.Argument(help="Projections to run")] = None,
) -> None:
    """Projection runners only (all of them unless names are given)."""
    stop = _on_stop_signal()
    services = bootstrap()
    try:
        unknown = set(names or ()) - set(services.runners)
        if unknown:
            raise typer.BadParameter(
                f"unknown projections {sorted(unknown)}; known: {sorted(services.runners)}"
            )
        if stop is not None and stop.is_set():
            return
        services.start_listener()
        services.start_runners(names)
        _say(services.settings, f"running {', '.join(names or services.runners)}; Ctrl-C to stop")
        _wait_for_signal(stop)
    finally:
        services.close()


@app.command()
def rebuild(
    name: Annotated[str, typer.Argument(help="Projection to rebuild from zero")],
    drop_old: Annotated[
        bool,
        typer.Option(
            "--drop-old", help="Do not rebuild: drop the versions no longer serving instead"
        ),
    ] = False,
) -> None:
    """Replay the log into a new version beside the serving one, then switch to it (blue/green).

    Safe while the projection serves: readers and the live runner use the serving version until
    the switch; the previous version is kept until `ledger rebuild NAME --drop-old`.
    """
    services = bootstrap()
    try:
        runner = _runner_named(services, name)
        if drop_old:
            dropped = rebuilding.drop_old(services.serving, name)
            typer.echo(f"{name}: dropped versions {dropped or 'none'}")
            return
        if not runner.view.table_suffixes:
            raise typer.BadParameter(f"{name} has no read model to rebuild")
        with _progress() as progress:
            task = progress.add_task(f"Rebuilding {name}", total=None)

            def report(position: int, head: int) -> None:
                progress.update(task, completed=position, total=head)

            try:
                version = rebuilding.rebuild(
                    runner, services.serving, services.database_url, progress=report
                )
            except (rebuilding.RebuildInProgress, rebuilding.RebuildFellBehind) as error:
                console.print(f"[red]error:[/red] {error}")
                raise typer.Exit(code=1) from None
        typer.echo(f"{name}: version {version} is serving")
    finally:
        services.close()


@app.command("retry-parked")
def retry_parked(
    name: Annotated[str, typer.Argument(help="Projection whose parked events to retry")],
) -> None:
    """Apply a projection's parked (dead-lettered) events again (safe while it runs)."""
    services = bootstrap()
    try:
        runner = _runner_named(services, name)
        applied, still_parked = runner.retry_parked()
    finally:
        services.close()
    typer.echo(f"{name}: {applied} parked events applied, {still_parked} still parked")


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="Tenant id (created if absent)")],
    role: Annotated[str, typer.Option(help="platform, admin, manager, agent, auditor or readonly")],
    name: Annotated[str, typer.Option(help="What the key is for")] = "",
) -> None:
    """Create an API key; the key is printed alone on the last line."""
    services = bootstrap()
    try:
        key = services.access.create_key(tenant, role, name=name)
    except DomainError as error:
        console.print(f"[red]error:[/red] {error.message}")
        raise typer.Exit(code=2) from None
    finally:
        services.close()
    typer.echo(f"Created a {role} key for tenant {tenant}:")
    typer.echo(key)


@keys_app.command("list")
def keys_list(
    tenant: Annotated[str, typer.Option(help="Tenant id")],
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 1000,
) -> None:
    """The tenant's keys that are not revoked (never the keys themselves)."""
    services = bootstrap()
    try:
        keys = services.access.list_keys(tenant, limit)
    finally:
        services.close()
    table = Table("id", "name", "role", "created at", "last used at", box=None)
    for key in keys:
        last_used = key.last_used_at.isoformat(timespec="seconds") if key.last_used_at else "-"
        table.add_row(
            str(key.id),
            key.name or "-",
            key.role,
            key.created_at.isoformat(timespec="seconds"),
            last_used,
        )
    Console(width=200).print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[UUID, typer.Argument(help="The key's id (`keys list`)")]) -> None:
    """Revoke a key: requests with it get 401 from now on."""
    services = bootstrap()
    try:
        revoked = services.access.revoke_key(key_id)
    finally:
        services.close()
    if not revoked:
        console.print(f"[red]error:[/red] no unrevoked API key with id {key_id}")
        raise typer.Exit(code=1)
    typer.echo(f"Revoked API key {key_id}")


@fx_app.command("import")
def fx_import(
    file: Annotated[
        Path, typer.Argument(help="An ECB-style CSV (eurofxref.csv or eurofxref-hist.csv)")
    ],
) -> None:
    """Record the file's euro rates for every tenant (a rate already there is replaced)."""
    services = bootstrap()
    try:
        assert services.fx_rates is not None
        recorded = services.fx_rates.import_file(file)
    except (OSError, ValueError) as error:
        console.print(f"[red]error:[/red] {file}: {error}", soft_wrap=True)
        raise typer.Exit(code=2) from None
    finally:
        services.close()
    typer.echo(f"Recorded {recorded} FX rates from {file}")


@app.command()
def demo(customers: Annotated[int, typer.Option(min=1, max=100_000)] = 300) -> None:
    """Load a realistic data set into tenant 'default' (idempotent)."""
    services = bootstrap()
    try:
        _load_demo(services, customers)
    finally:
        services.close()


def main() -> None:
    try:
        settings = Settings()
    except ValidationError as error:
        # Named by variable, never echoing the value (it may be a secret).
        for problem in error.errors():
            variable = "LEDGER_" + "_".join(str(part) for part in problem["loc"]).upper()
            message = str(problem["msg"]).removeprefix("Value error, ")
            console.print(f"[red]error:[/red] {variable}: {message}", soft_wrap=True)
        raise SystemExit(2) from None
    configure_logging(
        data_dir=settings.data_dir, level=settings.log_level, format=settings.log_format
    )
    app()


if __name__ == "__main__":  # ``python -m api.cli``: how ``serve`` starts its children
    main()
