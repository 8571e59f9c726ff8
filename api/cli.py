"""The ``ledger`` command: serve, worker, project, rebuild, keys, demo.

An entrypoint: it may import the composition root, and nothing else from ``adapters``.
"""

from __future__ import annotations

import logging
import secrets
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from adapters.bootstrap import Services, bootstrap
from adapters.projection_runner import ProjectionRunner
from adapters.settings import Settings
from application.demo import load_demo
from domain.errors import DomainError

app = typer.Typer(
    help="Commerce Ledger: an event-sourced ledger for commerce.", no_args_is_help=True
)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
console = Console(stderr=True)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def _wait_for_signal() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()


def _admin_key(services: Services) -> str:
    """LEDGER_BOOTSTRAP_API_KEY if set; else a key generated once and kept in the data dir."""
    settings = services.settings
    if settings.bootstrap_api_key:
        return settings.bootstrap_api_key
    key_file = Path(settings.data_dir) / "admin-api-key"
    if key_file.exists():
        key = key_file.read_text().strip()
    else:
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key = "lk_" + secrets.token_urlsafe(32)
        key_file.write_text(key + "\n")
        key_file.chmod(0o600)
    services.access.create_key("default", "admin", key)
    return key


def _load_demo(services: Services, customers: int) -> None:
    with _progress() as progress:
        task = progress.add_task("Loading demo data", total=customers)
        counts = load_demo(
            services.ledger,
            customers=customers,
            progress=lambda done: progress.update(task, completed=done),
        )
    console.print(f"Demo data in tenant 'default': {counts}")


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
) -> None:
    """API + projection runners + job worker in one process (embedded services if no URLs)."""
    import uvicorn

    from api.app import create_app

    settings = Settings()
    services = bootstrap(settings)
    try:
        key = _admin_key(services)
        if demo:
            _load_demo(services, customers=300)
        services.start_listener()
        services.start_runners()
        services.start_worker()
        bind_host, bind_port = host or settings.host, port or settings.port
        console.print(f"[bold]Commerce Ledger[/bold] on http://{bind_host}:{bind_port}/docs")
        console.print(f"Admin API key (tenant 'default'): [bold]{key}[/bold]")
        uvicorn.run(create_app(services), host=bind_host, port=bind_port, log_level="info")
    finally:
        services.close()


@app.command()
def worker(threads: Annotated[int | None, typer.Option(help="Worker threads")] = None) -> None:
    """The dramatiq worker (jobs) against Redis."""
    services = bootstrap()
    try:
        services.start_worker(threads)
        console.print("worker running; Ctrl-C to stop")
        _wait_for_signal()
    finally:
        services.close()


@app.command()
def project(
    names: Annotated[list[str] | None, typer.Argument(help="Projections to run")] = None,
) -> None:
    """Projection runners only (all of them unless names are given)."""
    services = bootstrap()
    try:
        unknown = set(names or ()) - set(services.runners)
        if unknown:
            raise typer.BadParameter(
                f"unknown projections {sorted(unknown)}; known: {sorted(services.runners)}"
            )
        services.start_listener()
        services.start_runners(names)
        console.print(f"running {', '.join(names or services.runners)}; Ctrl-C to stop")
        _wait_for_signal()
    finally:
        services.close()


@app.command()
def rebuild(name: Annotated[str, typer.Argument(help="Projection to rebuild from zero")]) -> None:
    """Drop a read model and replay the whole log into it (stop its runner first)."""
    services = bootstrap()
    try:
        runner = _runner_named(services, name)
        runner.reset()
        head = services.ledger.recorder.max_notification_id() or 0
        with _progress() as progress:
            task = progress.add_task(f"Rebuilding {name}", total=head)
            while runner.process_next_batch():
                progress.update(task, completed=runner.position)
            progress.update(task, completed=head)
    finally:
        services.close()


@app.command("retry-parked")
def retry_parked(
    name: Annotated[str, typer.Argument(help="Projection whose parked events to retry")],
) -> None:
    """Apply a projection's parked (dead-lettered) events again (stop its runner first)."""
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
) -> None:
    """Create an API key; the key is printed alone on the last line."""
    services = bootstrap()
    try:
        key = services.access.create_key(tenant, role)
    except DomainError as error:
        console.print(f"[red]error:[/red] {error.message}")
        raise typer.Exit(code=2) from None
    finally:
        services.close()
    typer.echo(f"Created a {role} key for tenant {tenant}:")
    typer.echo(key)


@app.command()
def demo(customers: Annotated[int, typer.Option(min=1, max=100_000)] = 300) -> None:
    """Load a realistic data set into tenant 'default' (idempotent)."""
    services = bootstrap()
    try:
        _load_demo(services, customers)
    finally:
        services.close()


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("eventsourcing").setLevel(logging.WARNING)
    app()
