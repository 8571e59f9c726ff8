"""Blue/green rebuilds of a read model: replay the log into version N+1 while N serves, switch.

``rebuild`` replays the whole log into a fresh version beside the serving one (readers, the live
runner and the position waiter keep using version N meanwhile), catches up to the head, and
switches the serving version in one transaction that checks the new version has applied every
event (``ServingVersions.switch``). The live runner then continues on N+1 from N+1's own tracked
position. Version N stays until ``drop_old`` (``ledger rebuild NAME --drop-old``), so a switch
can be inspected, and readers that have not yet seen the switch keep working.
"""

from __future__ import annotations

from collections.abc import Callable

from psycopg.sql import SQL, Identifier

from adapters.projection_lock import ProjectionLock
from adapters.projection_runner import ProjectionRunner
from projections.versions import ServingVersions

SWITCH_ATTEMPTS_MAX = 100


class RebuildInProgress(Exception):
    """Another ``ledger rebuild`` of this projection is running."""


class RebuildFellBehind(Exception):
    """The log grew faster than the rebuild could catch up for the switch."""


def rebuild(
    live: ProjectionRunner,
    serving: ServingVersions,
    database_url: str,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Build the next version of ``live``'s read model beside the serving one and switch to it;
    return the new serving version. ``progress(position, head)`` is called after each batch.

    Raises ``RebuildInProgress`` if another rebuild of the projection runs, ``VersionConflict``
    if the serving version changed meanwhile, ``RebuildFellBehind`` if it cannot catch up.
    """
    name = live.name
    lock = ProjectionLock(database_url, serving.schema, f"{name}:rebuild")
    if not lock.try_acquire():
        raise RebuildInProgress(f"{name} is being rebuilt by another process")
    try:
        serving.refresh()
        from_version = serving.serving_version(name)
        to_version = from_version + 1
        view = serving.view(name, to_version)
        view.drop()  # leftovers of an interrupted rebuild: a rebuild always replays from zero
        view.create_table()
        builder = ProjectionRunner(
            application_name=live.application_name,
            recorder=live.recorder,
            mapper=live.mapper,
            projection=live.projection.for_view(view),
            batch_size=live.batch_size,
        )
        recorder = live.recorder
        events_table = SQL("{}.{}").format(
            Identifier(serving.schema), Identifier(recorder.events_table_name)
        )
        for _ in range(SWITCH_ATTEMPTS_MAX):
            while builder.process_next_batch():
                if progress is not None:
                    progress(builder.position, recorder.max_notification_id() or 0)
            switched = serving.switch(
                name,
                from_version,
                to_version,
                events_table=events_table,
                application_name=live.application_name,
            )
            if switched:
                return to_version
        raise RebuildFellBehind(f"{name} v{to_version} could not catch up with the log")
    finally:
        lock.release()


def drop_old(serving: ServingVersions, name: str) -> list[int]:
    """Drop every version of ``name`` except the serving one; return the versions dropped."""
    serving.refresh()
    keep = serving.serving_version(name)
    dropped = [version for version in serving.existing_versions(name) if version != keep]
    for version in dropped:
        serving.view(name, version).drop()
    return dropped
