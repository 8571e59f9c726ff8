"""The genealogy read model on real PostgreSQL: closure rows of both trees read as of any
instant (a placement move closes the old paths and opens new ones for the whole moved subtree),
pages of a downline in (depth, id) order, a rebuild in other batch sizes writing identical rows,
random histories agreeing with a naive walk of the parents, and two enrolments racing for one
leg: one wins.

Histories are made through the ledger's commands, effective in the past (imports), then the
projection catches up.
"""

from __future__ import annotations

import contextlib
import random
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from psycopg.sql import SQL

from adapters.bootstrap import Services
from adapters.projection_runner import ProjectionRunner
from domain.distributor import Leg, LegTaken
from domain.errors import DomainError
from projections.genealogy import GenealogyProjection, GenealogyView

pytestmark = pytest.mark.integration

TENANT = "acme"
NOW = datetime.now(UTC).replace(microsecond=0)
START = NOW - timedelta(days=200)


def day(n: float) -> datetime:
    return START + timedelta(days=n)


@dataclass
class Network:
    """Commands through the ledger, and what they did, for a naive reference."""

    services: Services
    joined: dict[UUID, datetime] = field(default_factory=dict)
    sponsor: dict[UUID, UUID | None] = field(default_factory=dict)
    # Per distributor: its placements in the order recorded, (effective_at, parent, leg).
    placements: dict[UUID, list[tuple[datetime, UUID | None, str | None]]] = field(
        default_factory=dict
    )

    def enrol(
        self, at: datetime, sponsor: UUID | None = None, placement: UUID | None = None,
        leg: Leg | None = None,
    ) -> UUID:  # fmt: skip
        body = self.services.ledger.enrol_distributor(
            tenant_id=TENANT, sponsor_id=sponsor, placement_id=placement, leg=leg, joined_at=at
        ).body
        distributor_id = UUID(body["id"])
        self.joined[distributor_id] = at
        self.sponsor[distributor_id] = sponsor
        self.placements[distributor_id] = [(at, placement, None if leg is None else leg.value)]
        return distributor_id

    def move(self, distributor_id: UUID, at: datetime, placement: UUID | None, leg: Leg | None):
        self.services.ledger.move_placement(
            tenant_id=TENANT, distributor_id=distributor_id, placement_id=placement, leg=leg,
            approved_by="compliance", reason="test", effective_at=at,
        )  # fmt: skip
        self.placements[distributor_id].append((at, placement, None if leg is None else leg.value))

    def catch_up(self) -> GenealogyView:
        self.services.runners["genealogy"].catch_up()
        return self.services.genealogy

    # The naive reference: walk the parents as they stood at ``at``.

    def parent(self, tree: str, node: UUID, at: datetime) -> tuple[UUID | None, str | None]:
        if tree == "sponsor":
            return self.sponsor[node], None
        current: tuple[UUID | None, str | None] = (None, None)
        for effective_at, parent, leg in self.placements[node]:
            if effective_at <= at:
                current = (parent, leg)
        return current

    def upline(self, tree: str, node: UUID, at: datetime) -> list[tuple[UUID, int, UUID, Any]]:
        """(ancestor, depth, branch, leg) nearest first; [] if ``node`` had not joined."""
        if self.joined[node] > at:
            return []
        found, below, depth = [], node, 0
        parent, leg = self.parent(tree, node, at)
        while parent is not None:
            depth += 1
            found.append((parent, depth, below, leg))
            below = parent
            parent, leg = self.parent(tree, parent, at)
        return found


def upline_of(view: GenealogyView, tree: str, node: UUID, at: datetime | None) -> list[tuple]:
    rows = view.upline(TENANT, node, tree, as_of=at)
    assert rows is not None
    return [(r["distributor_id"], r["depth"], r["branch_id"], r["branch_leg"]) for r in rows]


def test_reads_as_of_a_date_show_the_tree_before_and_after_a_move(services: Services) -> None:
    net = Network(services)
    a, b = net.enrol(day(0)), net.enrol(day(0))
    x = net.enrol(day(1), sponsor=a, placement=a, leg=Leg.LEFT)
    y = net.enrol(day(2), sponsor=x, placement=x, leg=Leg.RIGHT)
    net.move(x, day(10), b, Leg.RIGHT)
    late = net.enrol(day(12), sponsor=x, placement=x, leg=Leg.LEFT)
    # An import recorded after the move, joined before it: under A, then under B.
    imported = net.enrol(day(5), sponsor=y, placement=y, leg=Leg.LEFT)
    view = net.catch_up()

    def downline(root: UUID, at: datetime | None) -> list[tuple[UUID, int]]:
        rows = view.downline(TENANT, root, "placement", as_of=at, limit=100)
        assert rows is not None
        return [(r["distributor_id"], r["depth"]) for r in rows]

    before, after = day(9), day(10)
    assert set(downline(a, before)) == {(x, 1), (y, 2), (imported, 3)}
    assert downline(b, before) == []
    assert downline(a, after) == []
    assert set(downline(b, after)) == {(x, 1), (y, 2), (imported, 3)}
    assert set(downline(b, None)) == {(x, 1), (y, 2), (late, 2), (imported, 3)}
    assert upline_of(view, "placement", y, before) == [(x, 1, y, "right"), (a, 2, x, "left")]
    assert upline_of(view, "placement", y, None) == [(x, 1, y, "right"), (b, 2, x, "right")]
    assert upline_of(view, "placement", imported, day(4)) == []  # not joined yet
    # The sponsor tree never moves.
    assert upline_of(view, "sponsor", imported, None) == [
        (y, 1, imported, None), (x, 2, y, None), (a, 3, x, None),
    ]  # fmt: skip
    # Counted per leg: what leg volumes group by.
    assert view.legs(TENANT, b, "placement") == [{"branch_id": x, "leg": "right", "size": 4}]
    assert view.legs("globex", b, "placement") is None  # another tenant's
    assert view.get(TENANT, x)["placement_id"] == b


def test_a_downline_pages_by_depth_then_id_with_a_cursor(services: Services) -> None:
    net = Network(services)
    root = net.enrol(day(0))
    frontier, members = [root], []
    for _ in range(3):  # a full binary tree of depth 3 under the root (and each sponsors both)
        nxt = []
        for parent in frontier:
            for leg in (Leg.LEFT, Leg.RIGHT):
                nxt.append(net.enrol(day(1), sponsor=parent, placement=parent, leg=leg))
        members += nxt
        frontier = nxt
    view = net.catch_up()
    whole = view.downline(TENANT, root, "sponsor", limit=100)
    assert [(r["depth"], r["distributor_id"]) for r in whole] == sorted(
        (r["depth"], r["distributor_id"]) for r in whole
    )
    assert len(whole) == len(members) == 14
    pages, after = [], None
    while True:
        page = view.downline(TENANT, root, "placement", after=after, limit=4)
        if not page:
            break
        pages += page
        after = (page[-1]["depth"], page[-1]["distributor_id"])
    assert [r["distributor_id"] for r in pages] == [r["distributor_id"] for r in whole]
    two_levels = view.downline(TENANT, root, "placement", depth=2, limit=100)
    assert len(two_levels) == 6 and {r["depth"] for r in two_levels} == {1, 2}
    assert view.downline("globex", root, "placement") is None


def _rows(view: GenealogyView) -> dict[str, list[tuple]]:
    tables = {}
    with view.datastore.transaction(commit=False) as curs:
        for suffix in view.table_suffixes:
            curs.execute(SQL("SELECT * FROM {}").format(view.table(suffix)))
            tables[suffix] = sorted(tuple(map(str, row.values())) for row in curs.fetchall())
    return tables


def random_history(net: Network, rng: random.Random, size: int) -> None:
    """Enrolments (some imported before later-recorded moves), moves and refusals."""
    ids: list[UUID] = []
    clock = 0.0
    for _ in range(size):
        clock += rng.uniform(0.1, 2)
        if ids and rng.random() < 0.3:
            node, target = rng.choice(ids), rng.choice([None, *ids])
            leg = None if target is None else rng.choice(list(Leg))
            # A cycle, a taken leg, an unchanged placement: refused, nothing recorded.
            with contextlib.suppress(DomainError):
                net.move(node, day(clock), target, leg)
            continue
        sponsor = rng.choice([None, *ids]) if ids else None
        placement = rng.choice([None, *ids]) if ids else None
        leg = None if placement is None else rng.choice(list(Leg))
        parents = [p for p in (sponsor, placement) if p is not None]
        earliest = max([net.joined[p] for p in parents], default=day(0))
        # Now and then an import dated back, between its parents' joining and now.
        at = day(clock)
        if rng.random() < 0.3 and earliest < at:
            at = earliest + (at - earliest) * rng.random()
        with contextlib.suppress(LegTaken):
            ids.append(net.enrol(at, sponsor, placement, leg))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_histories_agree_with_a_walk_of_the_parents_at_every_instant(
    services: Services, seed: int
) -> None:
    rng = random.Random(seed)
    net = Network(services)
    random_history(net, rng, 40)
    assert sum(len(history) - 1 for history in net.placements.values()) >= 3  # moves happened
    services.runners["genealogy"].batch_size = rng.randint(1, 7)
    view = net.catch_up()
    instants = sorted({at for at in net.joined.values()} | {
        at for history in net.placements.values() for at, _, _ in history
    })  # fmt: skip
    probes = [None, *instants, *(at - timedelta(seconds=1) for at in instants)]
    for tree in ("sponsor", "placement"):
        for node in net.joined:
            for at in probes:
                expected = net.upline(tree, node, NOW if at is None else at)
                assert upline_of(view, tree, node, at) == expected, (tree, node, at)


def test_a_rebuild_in_other_batch_sizes_writes_identical_rows(services: Services) -> None:
    net = Network(services)
    random_history(net, random.Random(7), 60)
    live = services.runners["genealogy"]
    live.batch_size = 2
    live.catch_up()
    before = _rows(services.genealogy)
    assert len(before["closure"]) > 60

    for version, size in ((2, 1), (3, 1000)):
        view = GenealogyView(services.ledger.factory.datastore, version=version)
        view.create_table()
        try:
            ProjectionRunner(
                application_name=services.ledger.name,
                recorder=services.ledger.recorder,  # type: ignore[arg-type]
                mapper=services.ledger.mapper,
                projection=GenealogyProjection(view),
                batch_size=size,
            ).catch_up()
            assert _rows(view) == before
        finally:
            view.drop()


def test_two_enrolments_racing_for_one_leg_one_wins(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = services.ledger
    parent = UUID(ledger.enrol_distributor(tenant_id=TENANT).body["id"])
    barrier = threading.Barrier(2, timeout=10)
    original = type(ledger)._legs
    waited: set[int] = set()

    def legs(self: Any, tenant_id: str, parent_id: UUID) -> Any:
        found = original(self, tenant_id, parent_id)
        if threading.get_ident() not in waited:  # both read the legs before either saves
            waited.add(threading.get_ident())
            barrier.wait()
        return found

    monkeypatch.setattr(type(ledger), "_legs", legs)
    outcomes: list[Any] = [None, None]

    def enrol(index: int) -> None:
        try:
            outcomes[index] = ledger.enrol_distributor(
                tenant_id=TENANT, placement_id=parent, leg=Leg.LEFT
            ).body
        except Exception as error:
            outcomes[index] = error

    threads = [threading.Thread(target=enrol, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert sorted(type(o).__name__ for o in outcomes) == ["LegTaken", "dict"]
    winner = next(o for o in outcomes if isinstance(o, dict))
    view = Network(services).catch_up()
    rows = view.downline(TENANT, parent, "placement")
    assert [str(r["distributor_id"]) for r in rows] == [winner["id"]]
