"""The ``genealogy`` read model: distributors, and closure tables of both trees, dated.

Tables:

- ``distributors``: one row per distributor, its current fields (what the API renders).
- ``closure``: one row per (tree, ancestor, descendant) path and the interval it holds,
  ``[valid_from, valid_to)`` in effective time (``valid_to`` null: still holds). ``tree`` is
  ``sponsor`` or ``placement``; ``depth`` 0 is the distributor itself. ``branch_id`` is the
  ancestor's child on the path (its frontline distributor heading the branch: a sponsor-tree
  "leg"), and in the placement tree ``leg`` is the ancestor's binary leg the descendant sits in.
  Reading the rows valid at an instant gives the trees as of that instant (``?as_of=``), as a
  period close does.

Folding. An enrolment under parent P copies P's rows (every interval of them, so an imported
enrolment dated before a later-recorded move of P lands on both sides of it) one level deeper,
from the enrolment's ``joined_at``. A placement move of X at ``t`` closes at ``t`` every current
row from X's old ancestors to X's current subtree (a row that would start at or after ``t`` is
deleted) and opens rows from the new parent's chain to the whole subtree. This is exact because
a tenant's moves are recorded in effective-time order (``domain.distributor.PlacementMoves``):
after ``t`` no edge of the tree changes except the ones enrolments add. Folding reads rows
through the batch's cursor into an in-memory overlay that is authoritative for every descendant
it has loaded, so a batch of any size folds to the same rows; new rows are written with COPY.

Indexes: ``(tree, ancestor_id, depth, descendant_id) INCLUDE (valid_from, valid_to, branch_id,
leg)`` serves a downline page in its order (depth, then id) as an index-only scan that filters
the validity of each entry, whatever the subtree's size; the unique ``(tree, descendant_id,
ancestor_id, valid_from)`` is the rows' key and serves the upline.

Volumes (TODO, for the commissions projection): personal volume per distributor and period
will live in the commission read model; group volume, leg volumes and active legs are then one
join of its table with ``closure`` rows valid at the period's end, grouped by ``branch_id`` or
``leg`` (``legs`` below already counts the downline that way).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.utils import get_topic
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed

from domain.distributor import Distributor
from projections.base import BatchProjection, BatchView

TREES = ("sponsor", "placement")
_DISTRIBUTOR_COLUMNS = (
    "distributor_id",
    "tenant_id",
    "customer_id",
    "sponsor_id",
    "placement_id",
    "leg",
    "status",
    "joined_at",
    "status_changed_at",
    "placement_changed_at",
    "created_at",
    "updated_at",
)
CLOSURE_COLUMNS = (
    "tree",
    "ancestor_id",
    "descendant_id",
    "depth",
    "branch_id",
    "leg",
    "valid_from",
    "valid_to",
)
# A closure row's key: (tree, ancestor_id, descendant_id, valid_from).
Key = tuple[str, UUID, UUID, datetime]


def row_key(row: dict[str, Any]) -> Key:
    return (row["tree"], row["ancestor_id"], row["descendant_id"], row["valid_from"])


# COPY's text format, written by hand: psycopg's per-value dumpers cost more than the database.
_COPY_CHUNK_ROWS = 10_000
_NULL = "\\N"


def _copy_text(rows: Sequence[dict[str, Any]]) -> str:
    """Rows in COPY's text format. Ids and instants repeat across rows (an ancestor's id on
    every row of its downline), so each is rendered once."""
    text: dict[Any, str] = {None: _NULL}

    def of(value: Any) -> str:
        rendered = text.get(value)
        if rendered is None:
            rendered = text[value] = (
                value.isoformat() if isinstance(value, datetime) else str(value)
            )
        return rendered

    return "".join(
        f"{row['tree']}\t{of(row['ancestor_id'])}\t{of(row['descendant_id'])}\t{row['depth']}"
        f"\t{of(row['branch_id'])}\t{of(row['leg'])}\t{of(row['valid_from'])}"
        f"\t{of(row['valid_to'])}\n"
        for row in rows
    )


def _uuid(value: str | None) -> UUID | None:
    return None if value is None else UUID(value)


class GenealogyView(BatchView):
    base_name = "genealogy"
    table_suffixes = ("distributors", "closure")

    def table_statements(self) -> Iterable[Composed]:
        distributors = self.table("distributors")
        yield SQL(
            "CREATE TABLE IF NOT EXISTS {} ("
            " distributor_id uuid PRIMARY KEY,"
            " tenant_id text NOT NULL,"
            " customer_id uuid,"
            " sponsor_id uuid,"
            " placement_id uuid,"
            " leg text,"
            " status text NOT NULL,"
            " joined_at timestamptz NOT NULL,"
            " status_changed_at timestamptz NOT NULL,"
            " placement_changed_at timestamptz NOT NULL,"
            " created_at timestamptz NOT NULL,"
            " updated_at timestamptz NOT NULL)"
        ).format(distributors)
        yield SQL("CREATE INDEX IF NOT EXISTS {} ON {} (tenant_id, joined_at)").format(
            SQL(f'"{self.name}_distributors_tenant_idx"'), distributors
        )
        closure = self.table("closure")
        yield SQL(
            "CREATE TABLE IF NOT EXISTS {} ("
            " tree text NOT NULL,"
            " ancestor_id uuid NOT NULL,"
            " descendant_id uuid NOT NULL,"
            " depth integer NOT NULL,"
            " branch_id uuid,"
            " leg text,"
            " valid_from timestamptz NOT NULL,"
            " valid_to timestamptz)"
        ).format(closure)
        yield SQL(
            "CREATE UNIQUE INDEX IF NOT EXISTS {} ON {}"
            " (tree, descendant_id, ancestor_id, valid_from)"
        ).format(SQL(f'"{self.name}_closure_key_idx"'), closure)
        yield SQL(
            "CREATE INDEX IF NOT EXISTS {} ON {} (tree, ancestor_id, depth, descendant_id)"
            " INCLUDE (valid_from, valid_to, branch_id, leg)"
        ).format(SQL(f'"{self.name}_closure_downline_idx"'), closure)

    # Folding support ---------------------------------------------------------------------------

    def load_distributors(
        self, curs: Cursor[DictRow], ids: Iterable[UUID]
    ) -> dict[UUID, dict[str, Any]]:
        ids = list(ids)
        if not ids:
            return {}
        curs.execute(
            SQL("SELECT * FROM {} WHERE distributor_id = ANY(%s)").format(
                self.table("distributors")
            ),
            (ids,),
        )
        return {row["distributor_id"]: dict(row) for row in curs.fetchall()}

    def load_paths(
        self, curs: Cursor[DictRow], tree: str, descendant_ids: Sequence[UUID]
    ) -> list[dict[str, Any]]:
        """Every row (all intervals) of these descendants in ``tree``."""
        if not descendant_ids:
            return []
        curs.execute(
            SQL(
                "SELECT " + ", ".join(CLOSURE_COLUMNS) + " FROM {}"
                " WHERE tree = %s AND descendant_id = ANY(%s)"
            ).format(self.table("closure")),
            (tree, list(descendant_ids)),
        )
        return [dict(row) for row in curs.fetchall()]

    def current_subtree(self, curs: Cursor[DictRow], tree: str, ancestor_id: UUID) -> list[UUID]:
        curs.execute(
            SQL(
                "SELECT descendant_id FROM {}"
                " WHERE tree = %s AND ancestor_id = %s AND valid_to IS NULL"
            ).format(self.table("closure")),
            (tree, ancestor_id),
        )
        return [row["descendant_id"] for row in curs.fetchall()]

    def write(self, curs: Cursor[DictRow], changes: GenealogyChanges) -> None:
        if changes.distributors:
            self.upsert(curs, "distributors", _DISTRIBUTOR_COLUMNS, changes.distributors.values())
        closure = self.table("closure")
        stale = [key for key in changes.stored if key in changes.touched]
        if stale:
            curs.executemany(
                SQL(
                    "DELETE FROM {} WHERE tree = %s AND ancestor_id = %s AND descendant_id = %s"
                    " AND valid_from = %s"
                ).format(closure),
                stale,
            )
        rows = list(changes.present_touched())
        if rows:
            statement = SQL("COPY {} (" + ", ".join(CLOSURE_COLUMNS) + ") FROM STDIN").format(
                closure
            )
            with curs.copy(statement) as copy:
                for start in range(0, len(rows), _COPY_CHUNK_ROWS):
                    copy.write(_copy_text(rows[start : start + _COPY_CHUNK_ROWS]))

    # Queries ----------------------------------------------------------------------------------

    def get(self, tenant_id: str, distributor_id: UUID) -> dict[str, Any] | None:
        with self.datastore.cursor() as curs:
            curs.execute(
                SQL("SELECT * FROM {} WHERE distributor_id = %s AND tenant_id = %s").format(
                    self.table("distributors")
                ),
                (distributor_id, tenant_id),
            )
            row = curs.fetchone()
        return dict(row) if row else None

    def downline(
        self,
        tenant_id: str,
        distributor_id: UUID,
        tree: str,
        *,
        depth: int | None = None,
        as_of: datetime | None = None,
        after: tuple[int, UUID] | None = None,
        limit: int = 50,
    ) -> list[dict[str, Any]] | None:
        """The distributor's downline in ``tree`` (without itself), ``depth`` levels deep (None:
        all), as of ``as_of`` (None: now), by depth then id, after the (depth, id) ``after``.
        Each row: the closure row's depth, branch_id and leg, and the distributor's row.
        None if the distributor is not this tenant's."""
        conditions = ["c.tree = %s", "c.ancestor_id = %s", "c.depth > 0"]
        params: list[Any] = [tree, distributor_id]
        if after is not None:
            conditions.append("(c.depth, c.descendant_id) > (%s, %s)")
            params.extend(after)
        if depth is not None:
            conditions.append("c.depth <= %s")
            params.append(depth)
        conditions.append(self._valid("c", as_of, params))
        params.append(limit)
        statement = SQL(
            "SELECT c.depth, c.branch_id, c.leg AS branch_leg, d.* FROM {} c"
            " JOIN {} d ON d.distributor_id = c.descendant_id"
            " WHERE " + " AND ".join(conditions) + " ORDER BY c.depth, c.descendant_id LIMIT %s"
        ).format(self.table("closure"), self.table("distributors"))
        return self._of_tenant(tenant_id, distributor_id, statement, params)

    def upline(
        self, tenant_id: str, distributor_id: UUID, tree: str, *, as_of: datetime | None = None
    ) -> list[dict[str, Any]] | None:
        """The distributor's ancestors in ``tree``, nearest first, as of ``as_of``; None if the
        distributor is not this tenant's."""
        params: list[Any] = [tree, distributor_id]
        valid = self._valid("c", as_of, params)
        statement = SQL(
            "SELECT c.depth, c.branch_id, c.leg AS branch_leg, d.* FROM {} c"
            " JOIN {} d ON d.distributor_id = c.ancestor_id"
            " WHERE c.tree = %s AND c.descendant_id = %s AND c.depth > 0 AND "
            + valid
            + " ORDER BY c.depth"
        ).format(self.table("closure"), self.table("distributors"))
        return self._of_tenant(tenant_id, distributor_id, statement, params)

    def legs(
        self, tenant_id: str, distributor_id: UUID, tree: str, *, as_of: datetime | None = None
    ) -> list[dict[str, Any]] | None:
        """The downline counted per branch (frontline distributor) and binary leg, as of
        ``as_of``: what leg volumes and active legs group by. None if not this tenant's."""
        params: list[Any] = [tree, distributor_id]
        valid = self._valid("c", as_of, params)
        statement = SQL(
            "SELECT c.branch_id, c.leg, count(*) AS size FROM {} c"
            " WHERE c.tree = %s AND c.ancestor_id = %s AND c.depth > 0 AND "
            + valid
            + " GROUP BY c.branch_id, c.leg ORDER BY c.leg NULLS LAST, c.branch_id"
        ).format(self.table("closure"))
        return self._of_tenant(tenant_id, distributor_id, statement, params)

    @staticmethod
    def _valid(alias: str, as_of: datetime | None, params: list[Any]) -> str:
        if as_of is None:
            return f"{alias}.valid_to IS NULL"
        params.extend((as_of, as_of))
        return f"{alias}.valid_from <= %s AND ({alias}.valid_to IS NULL OR {alias}.valid_to > %s)"

    def _of_tenant(
        self, tenant_id: str, distributor_id: UUID, statement: Composed, params: list[Any]
    ) -> list[dict[str, Any]] | None:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL("SELECT 1 FROM {} WHERE distributor_id = %s AND tenant_id = %s").format(
                    self.table("distributors")
                ),
                (distributor_id, tenant_id),
            )
            if curs.fetchone() is None:
                return None
            curs.execute(statement, params)
            return [dict(row) for row in curs.fetchall()]


@dataclass
class GenealogyChanges:
    """What a batch changes: distributor rows, and closure rows by key (None: deleted).

    ``paths`` holds, per (tree, descendant) loaded or created in the batch, every one of its
    rows: it is authoritative for that descendant. ``stored`` are the keys read from the table.
    """

    distributors: dict[UUID, dict[str, Any]] = field(default_factory=dict)
    paths: dict[tuple[str, UUID], dict[Key, dict[str, Any]]] = field(default_factory=dict)
    stored: set[Key] = field(default_factory=set)
    touched: set[Key] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.distributors or self.touched)

    def put(self, row: dict[str, Any]) -> None:
        key = row_key(row)
        self.paths[(row["tree"], row["descendant_id"])][key] = row
        self.touched.add(key)

    def delete(self, row: dict[str, Any]) -> None:
        key = row_key(row)
        del self.paths[(row["tree"], row["descendant_id"])][key]
        self.touched.add(key)

    def present_touched(self) -> Iterable[dict[str, Any]]:
        for key in self.touched:
            row = self.paths[(key[0], key[2])].get(key)
            if row is not None:
                yield row


class GenealogyProjection(BatchProjection[GenealogyView]):
    name = "genealogy"
    topics = tuple(
        get_topic(cls)
        for cls in (Distributor.Enrolled, Distributor.Moved, Distributor.StatusChanged)
    )

    def fold(self, events: Sequence[Any]) -> GenealogyChanges:
        changes = GenealogyChanges()
        enrolled = {e.originator_id for e in events if isinstance(e, Distributor.Enrolled)}
        others = {e.originator_id for e in events if isinstance(e, Distributor.Event)} - enrolled
        parents: dict[str, set[UUID]] = {tree: set() for tree in TREES}
        for e in events:
            if isinstance(e, Distributor.Enrolled):
                for tree, parent in (("sponsor", e.sponsor_id), ("placement", e.placement_id)):
                    if parent is not None:
                        parents[tree].add(UUID(parent))
            elif isinstance(e, Distributor.Moved):
                parents["placement"].add(e.originator_id)
                if e.placement_id is not None:
                    parents["placement"].add(UUID(e.placement_id))
        with self.view.reading() as curs:
            changes.distributors = self.view.load_distributors(curs, others)
            for tree, ids in parents.items():
                self._load(curs, changes, tree, ids - enrolled)
            for domain_event in events:
                self.apply(domain_event, changes, curs)
        return changes

    def _load(
        self, curs: Cursor[DictRow], changes: GenealogyChanges, tree: str, ids: Iterable[UUID]
    ) -> None:
        """Make these descendants' rows authoritative in ``changes`` (read once)."""
        missing = [i for i in ids if (tree, i) not in changes.paths]
        for descendant_id in missing:
            changes.paths[(tree, descendant_id)] = {}
        for row in self.view.load_paths(curs, tree, missing):
            key = row_key(row)
            changes.paths[(tree, row["descendant_id"])][key] = row
            changes.stored.add(key)

    @singledispatchmethod
    def apply(self, domain_event: Any, changes: GenealogyChanges, curs: Cursor[DictRow]) -> None:
        """Events of other kinds change nothing here."""

    @apply.register
    def _(self, e: Distributor.Enrolled, changes: GenealogyChanges, curs: Cursor[DictRow]) -> None:
        distributor_id = e.originator_id
        changes.distributors[distributor_id] = {
            "distributor_id": distributor_id,
            "tenant_id": e.tenant_id,
            "customer_id": _uuid(e.customer_id),
            "sponsor_id": _uuid(e.sponsor_id),
            "placement_id": _uuid(e.placement_id),
            "leg": e.leg,
            "status": "active",
            "joined_at": e.joined_at,
            "status_changed_at": e.joined_at,
            "placement_changed_at": e.joined_at,
            "created_at": e.timestamp,
            "updated_at": e.timestamp,
        }
        for tree, parent, leg in (
            ("sponsor", e.sponsor_id, None),
            ("placement", e.placement_id, e.leg),
        ):
            changes.paths[(tree, distributor_id)] = {}
            changes.put(
                self._path(tree, distributor_id, distributor_id, 0, None, None, e.joined_at, None)
            )
            if parent is not None:
                self._attach(changes, tree, distributor_id, UUID(parent), leg, e.joined_at)

    def _attach(
        self,
        changes: GenealogyChanges,
        tree: str,
        child_id: UUID,
        parent_id: UUID,
        leg: str | None,
        joined_at: datetime,
    ) -> None:
        """Rows from every (dated) ancestor of the parent, the parent included, to the child."""
        parent_rows = list(changes.paths[(tree, parent_id)].values())
        if not parent_rows:
            # The parent's rows are missing (its own enrolment was parked): park this one too.
            raise LookupError(f"{tree} parent {parent_id} of {child_id} has no genealogy rows")
        for row in parent_rows:
            valid_from = max(row["valid_from"], joined_at)
            if row["valid_to"] is not None and row["valid_to"] <= valid_from:
                continue
            below = row["depth"] > 0
            changes.put(
                self._path(
                    tree,
                    row["ancestor_id"],
                    child_id,
                    row["depth"] + 1,
                    row["branch_id"] if below else child_id,
                    row["leg"] if below else leg,
                    valid_from,
                    row["valid_to"],
                )  # fmt: skip
            )

    @apply.register
    def _(self, e: Distributor.Moved, changes: GenealogyChanges, curs: Cursor[DictRow]) -> None:
        moved_id, at, tree = e.originator_id, e.effective_at, "placement"
        row = changes.distributors[moved_id]
        row.update(
            placement_id=_uuid(e.placement_id), leg=e.leg, placement_changed_at=at,
            updated_at=e.timestamp,
        )  # fmt: skip
        subtree = self._current_subtree(curs, changes, moved_id)
        self._load(curs, changes, tree, subtree)
        old_ancestors = {
            r["ancestor_id"]
            for r in changes.paths[(tree, moved_id)].values()
            if r["valid_to"] is None and r["depth"] > 0
        }
        new_chain = (
            []
            if e.placement_id is None
            else [
                r
                for r in changes.paths[(tree, UUID(e.placement_id))].values()
                if r["valid_to"] is None
            ]
        )
        for descendant_id in subtree:
            rows = changes.paths[(tree, descendant_id)]
            below = next(
                r for r in rows.values() if r["ancestor_id"] == moved_id and r["valid_to"] is None
            )
            for r in [r for r in rows.values() if r["valid_to"] is None]:
                if r["ancestor_id"] not in old_ancestors:
                    continue
                if r["valid_from"] >= at:
                    changes.delete(r)
                else:
                    changes.put({**r, "valid_to": at})
            for r in new_chain:
                deeper = r["depth"] > 0
                changes.put(
                    self._path(
                        tree,
                        r["ancestor_id"],
                        descendant_id,
                        r["depth"] + 1 + below["depth"],
                        r["branch_id"] if deeper else moved_id,
                        r["leg"] if deeper else e.leg,
                        max(at, r["valid_from"], below["valid_from"]),
                        None,
                    )  # fmt: skip
                )

    def _current_subtree(
        self, curs: Cursor[DictRow], changes: GenealogyChanges, ancestor_id: UUID
    ) -> list[UUID]:
        """The descendants (itself included) under ``ancestor_id`` now in the placement tree:
        the table's, except those the batch has loaded, which answer for themselves."""
        found = {
            d
            for d in self.view.current_subtree(curs, "placement", ancestor_id)
            if ("placement", d) not in changes.paths
        }
        for (tree, descendant_id), rows in changes.paths.items():
            if tree == "placement" and any(
                r["ancestor_id"] == ancestor_id and r["valid_to"] is None for r in rows.values()
            ):
                found.add(descendant_id)
        return sorted(found)

    @apply.register
    def _(
        self, e: Distributor.StatusChanged, changes: GenealogyChanges, curs: Cursor[DictRow]
    ) -> None:
        changes.distributors[e.originator_id].update(
            status=e.status, status_changed_at=e.effective_at, updated_at=e.timestamp
        )

    @staticmethod
    def _path(
        tree: str,
        ancestor_id: UUID,
        descendant_id: UUID,
        depth: int,
        branch_id: UUID | None,
        leg: str | None,
        valid_from: datetime,
        valid_to: datetime | None,
    ) -> dict[str, Any]:
        return {
            "tree": tree,
            "ancestor_id": ancestor_id,
            "descendant_id": descendant_id,
            "depth": depth,
            "branch_id": branch_id,
            "leg": leg,
            "valid_from": valid_from,
            "valid_to": valid_to,
        }
