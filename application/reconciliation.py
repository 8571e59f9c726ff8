"""Reconciliation of a day of our gateway calls with the processor's own books: the service.

*Ours* comes from the event store, not from a read model: the log is scanned for the intents
(``Order.PaymentRequested``, ``CaptureRequested``, ``VoidRequested``, ``RefundRequested``) of the
UTC day, and each order's own events say what became of each call (``recorded_calls``). *Theirs*
comes from the ``ProcessorBooks`` port, one merchant account at a time.

A call belongs to the day its intent was recorded; a processor transaction of the day whose
intent is older (a call sent just before midnight) is looked up by its reference (the order id),
and a call of the day still unmatched is looked for in the processor's next day. So a call made
across midnight is never reported missing on either side.

Nothing here edits our records. An item the processor can settle (our outcome unknown, theirs
final) is settled by the existing commands, ``reconcile_attempt`` and ``reconcile_call``, which
repeat the call with its own idempotency key and record the processor's answer; every other item
is reported for staff.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.utils import get_topic

from application.ledger import Ledger
from application.ports import ProcessorBooks, ProcessorTransaction
from domain.gateway import tenant_of_account_id
from domain.order import Order
from domain.reconciliation import (
    ATTEMPT_KINDS,
    ReconciliationItem,
    ReconciliationResult,
    RecordedCall,
    compare,
    recorded_calls,
)

logger = logging.getLogger(__name__)

INTENT_TOPICS = tuple(
    get_topic(cls)
    for cls in (
        Order.PaymentRequested,
        Order.CaptureRequested,
        Order.VoidRequested,
        Order.RefundRequested,
    )
)
# Notification ids follow commit order, timestamps creation order: an event may be committed a
# little after a later-created one (group commit, a slow gateway call). The scan reads this much
# beyond each end of the day and keeps only the day's own events.
SCAN_SLACK = timedelta(minutes=10)
SCAN_PAGE_SIZE = 500
# Days so far from now that no call can exist; outside them, the scan's slack or the next day
# would leave the calendar, so such a day is answered empty at once.
EARLIEST_DAY = date(1970, 1, 1)
LATEST_DAY = date(9998, 12, 31)


@dataclass
class ReconciliationReport:
    """One tenant's day: the comparison, and what settling did to each settleable item.

    ``resolutions``: key → the command's answer (``succeeded``, ``declined``, ``resolved``,
    ``unknown``), ``in_flight`` when the call was too recent to settle, ``error`` if it failed.
    """

    tenant_id: str
    day: date
    result: ReconciliationResult
    resolutions: dict[UUID, str] = field(default_factory=dict)


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(), tzinfo=UTC)
    return start, start + timedelta(days=1)


class BooksReconciliation:
    """Compares a tenant's day of calls with the processor's books; settles what it can.

    ``accounts_of(tenant_id)``: the processor accounts the tenant's calls go to; by default the
    ledger's ``processor_accounts`` (the tenant's own account, named by its id, and each of its
    gateways'). ``tenant_of_account``: the other way round, for an account none of the day's
    tenants has (None: no tenant's); by default the tenant a gateway's account is scoped to
    (``domain.gateway.tenant_of_account_id``), or the account's name itself. ``lease_s``: a
    call still ``requested`` and younger than this may be in the middle of its own request, which
    will finish it: it is not settled.
    """

    def __init__(
        self,
        ledger: Ledger,
        books: ProcessorBooks,
        *,
        accounts_of: Callable[[str], Iterable[str]] | None = None,
        tenant_of_account: Callable[[str], str | None] = tenant_of_account_id,
        lease_s: float = 60.0,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.ledger = ledger
        self.books = books
        self.accounts_of = accounts_of or ledger.processor_accounts
        self.tenant_of_account = tenant_of_account
        self.lease = timedelta(seconds=lease_s)
        self._now = now

    def report(
        self,
        tenant_id: str,
        day: date,
        *,
        settle: bool = False,
        intent_orders: dict[str, list[UUID]] | None = None,
    ) -> ReconciliationReport:
        """Compare ``tenant_id``'s calls of the UTC ``day`` with the processor's; with
        ``settle``, run the settling command of every settleable item. ``intent_orders``: the
        day's ``intent_orders``, when already read (one scan of the log for every tenant).

        Raises whatever reading the processor's books raises (it cannot be read now).
        """
        if not EARLIEST_DAY <= day <= LATEST_DAY:
            return ReconciliationReport(tenant_id, day, ReconciliationResult())
        if intent_orders is None:
            intent_orders = self.intent_orders(day)
        own_orders = intent_orders.get(tenant_id, [])
        orders = _OrderCalls(self.ledger, tenant_id, owned=own_orders)
        start, end = day_bounds(day)
        ours = [
            call
            for order_id in own_orders
            for call in orders.calls(order_id)
            if start <= call.requested_at < end
        ]
        accounts = list(dict.fromkeys(self.accounts_of(tenant_id)))
        theirs = self._transactions(day, accounts)
        known = {call.key for call in ours}
        for transaction in list(theirs):
            if transaction.idempotency_key in known:
                continue
            if orders.of_another_tenant(transaction.reference):
                theirs.remove(transaction)  # an account shared with another tenant: theirs
                continue
            found = orders.find(transaction.reference, transaction.idempotency_key)
            if found is not None:
                ours.append(found)
                known.add(found.key)
        paired = {t.idempotency_key for t in theirs}
        unpaired = {call.key for call in ours} - paired
        if unpaired:
            next_day = day + timedelta(days=1)
            theirs += [
                t for t in self._transactions(next_day, accounts) if t.idempotency_key in unpaired
            ]
        report = ReconciliationReport(tenant_id, day, compare(ours, theirs))
        if settle:
            for item in report.result.settleable:
                assert item.key is not None  # a settleable item has both sides
                report.resolutions[item.key] = self._settle(item)
        return report

    def tenants_on(self, day: date, intent_orders: dict[str, list[UUID]] | None = None) -> set[str]:
        """Tenants with calls of ours on the UTC day, or with processor transactions on it.

        Raises whatever reading the processor's books raises.
        """
        if not EARLIEST_DAY <= day <= LATEST_DAY:
            return set()
        if intent_orders is None:
            intent_orders = self.intent_orders(day)
        ours = {tenant for tenant in intent_orders if tenant}
        covered = {account for tenant in ours for account in self.accounts_of(tenant)}
        theirs = {
            self.tenant_of_account(t.account_id)
            for t in self.books.transactions_on(day)
            if t.account_id not in covered
        }
        return {tenant for tenant in ours | theirs if tenant}

    def intent_orders(self, day: date) -> dict[str, list[UUID]]:
        """Orders with an intent recorded on the UTC day, by tenant, in log order, each once."""
        start, end = day_bounds(day)
        orders: dict[UUID, None] = {}
        for timestamp, order_id in self._intents_from(start - SCAN_SLACK):
            if timestamp >= end + SCAN_SLACK:
                break
            if start <= timestamp < end:
                orders[order_id] = None
        by_tenant: dict[str, list[UUID]] = {}
        for order_id in orders:
            by_tenant.setdefault(_tenant_of(self.ledger, order_id), []).append(order_id)
        return by_tenant

    def _transactions(self, day: date, accounts: list[str]) -> list[ProcessorTransaction]:
        return [t for account in accounts for t in self.books.transactions_on(day, account)]

    def _settle(self, item: ReconciliationItem) -> str:
        ours = item.ours
        assert ours is not None
        # An outcome recorded as unknown ends its request; a call still requested may be in the
        # middle of one, which would finish it itself.
        if ours.state == "requested" and ours.requested_at > self._now() - self.lease:
            return "in_flight"
        try:
            if ours.kind in ATTEMPT_KINDS:
                return self.ledger.reconcile_attempt(ours.key)
            return self.ledger.reconcile_call(ours.order_id, str(ours.key))
        except Exception:
            logger.warning("settling %s %s failed", ours.kind, ours.key, exc_info=True)
            return "error"

    def _intents_from(self, moment: datetime) -> Iterator[tuple[datetime, UUID]]:
        """(timestamp, order id) of intents in log order, from the first created at ``moment``
        or later (by a binary search over notification ids: the log has no time index)."""
        recorder: Any = self.ledger.recorder
        position = self._first_position_at(moment)
        while True:
            page = recorder.select_notifications(position, SCAN_PAGE_SIZE, topics=INTENT_TOPICS)
            for notification in page:
                event = self.ledger.mapper.to_domain_event(notification)
                yield event.timestamp, event.originator_id
            if len(page) < SCAN_PAGE_SIZE:
                return
            position = page[-1].id + 1

    def _first_position_at(self, moment: datetime) -> int:
        recorder: Any = self.ledger.recorder
        low, high = 1, (recorder.max_notification_id() or 0) + 1
        while low < high:
            middle = (low + high) // 2
            found = recorder.select_notifications(middle, 1, topics=INTENT_TOPICS)
            if not found or found[0].id >= high:
                high = middle
                continue
            if self.ledger.mapper.to_domain_event(found[0]).timestamp < moment:
                low = found[0].id + 1
            else:
                high = middle
        return low


class _OrderCalls:
    """The calls of one tenant's orders, each order's events read once."""

    def __init__(self, ledger: Ledger, tenant_id: str, *, owned: Iterable[UUID] = ()) -> None:
        self.ledger = ledger
        self.tenant_id = tenant_id
        self._owned = set(owned)  # known to be the tenant's
        self._calls: dict[UUID, list[RecordedCall]] = {}

    def calls(self, order_id: UUID) -> list[RecordedCall]:
        if order_id not in self._calls:
            owned = order_id in self._owned or _tenant_of(self.ledger, order_id) == self.tenant_id
            events = list(self.ledger.events.get(order_id)) if owned else []
            self._calls[order_id] = recorded_calls(events)
        return self._calls[order_id]

    def of_another_tenant(self, reference: str) -> bool:
        """Whether the reference names an order, of another tenant."""
        try:
            order_id = UUID(reference)
        except ValueError:
            return False
        if order_id in self._owned:
            return False
        return _tenant_of(self.ledger, order_id) not in ("", self.tenant_id)

    def find(self, reference: str, key: UUID | None) -> RecordedCall | None:
        """Our call with this key on the order named by ``reference``, if it is ours."""
        try:
            order_id = UUID(reference)
        except ValueError:
            return None
        return next((call for call in self.calls(order_id) if call.key == key), None)


def _tenant_of(ledger: Ledger, order_id: UUID) -> str:
    """The order's tenant, from its first event alone ("" if there is no such order)."""
    first = next(iter(ledger.events.get(order_id, limit=1)), None)
    return getattr(first, "tenant_id", "") if isinstance(first, Order.Placed) else ""


def processor_books(gateway: object, sandbox_book: object | None) -> ProcessorBooks | None:
    """The books to reconcile with: the sandbox's, or the gateway's own listing; None if the
    configured processor offers none."""
    for candidate in (sandbox_book, gateway):
        if isinstance(candidate, ProcessorBooks):
            return candidate
    return None


class RoutedBooks:
    """The books of every processor a tenant's calls go to, read account by account.

    ``default``: the configured processor's books (the sandbox's), which keep the tenant's own
    account and every account of a gateway whose processor has no listing of its own.
    ``processors``: the ledger's routed processors by name; those offering a listing
    (``ProcessorBooks``) are read for their gateways' accounts, e.g. a Spreedly gateway token at
    that token's client. Which processor keeps an account is learnt from the tenants' gateways
    by ``accounts_of`` (the ``accounts_of`` of ``BooksReconciliation``), which reconciliation
    asks before reading any account of the tenant; an account never seen there is the default's.
    """

    def __init__(
        self, ledger: Ledger, default: ProcessorBooks, processors: Mapping[str, object]
    ) -> None:
        self.ledger = ledger
        self.default = default
        self.routes: dict[str, ProcessorBooks] = {
            name: processor
            for name, processor in processors.items()
            if isinstance(processor, ProcessorBooks)
        }
        self._processor_of: dict[str, str] = {}

    def accounts_of(self, tenant_id: str) -> list[str]:
        """The tenant's accounts (``Ledger.processor_accounts``), remembering which routed
        processor keeps each of its gateways' accounts."""
        accounts = [tenant_id]
        for gateway in self.ledger.tenant_gateways(tenant_id):
            if gateway.processor in self.routes:
                self._processor_of[gateway.account_id] = gateway.processor
            accounts.append(gateway.account_id)
        return accounts

    def transactions_on(
        self, day: date, account_id: str | None = None
    ) -> list[ProcessorTransaction]:
        """One account's transactions at the processor keeping it; with no account, every
        account of the default books (a routed processor's accounts are read one by one)."""
        if account_id is None:
            return self.default.transactions_on(day)
        name = self._processor_of.get(account_id)
        books = self.default if name is None else self.routes[name]
        return books.transactions_on(day, account_id)


def books_reconciliation(
    ledger: Ledger, sandbox_book: object | None, **options: Any
) -> BooksReconciliation | None:
    """The reconciliation of the ledger's calls with the books of the processors they go to:
    the configured processor's (``processor_books``) and, for each routed gateway whose processor
    offers a listing, that processor's (``RoutedBooks``). None if the configured processor offers
    no listing. ``options``: ``BooksReconciliation``'s."""
    books = processor_books(ledger.gateway, sandbox_book)
    if books is None:
        return None
    routed = RoutedBooks(ledger, books, getattr(ledger, "processors", {}))
    if not routed.routes:
        return BooksReconciliation(ledger, books, **options)
    return BooksReconciliation(ledger, routed, accounts_of=routed.accounts_of, **options)
