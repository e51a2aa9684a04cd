"""Per-day roll-ups of the retention actions, kept as events are appended (issue 23): the retention chart
reads a few rows per day instead of every `*.expired` event of its window."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

from django.db.models import F, Max, Min
from django.db.models.functions import Greatest

from .audit_actions import AuditAction
from .models import AuditDaily

# Actions the charts count per day, by event day ("at") and by the deadline their details name ("deadline").
ROLLED_UP = frozenset({AuditAction.PHOTO_EXPIRED, AuditAction.RESULT_EXPIRED})


def _deadline_day(details: dict[str, Any]) -> date | None:
    value = (details or {}).get("expires_at")
    try:
        return datetime.fromisoformat(value).date() if isinstance(value, str) else None
    except ValueError:
        return None


def rollup_add(events: Iterable[Any], *, model: Any = AuditDaily) -> None:
    """Count appended events (AuditEvent-like: at, action, details) into AuditDaily; call in the append's
    transaction, under the head lock, so the counts and the chain commit or roll back together. `model`:
    a migration's historical AuditDaily."""
    counts: Counter[tuple[str, str, date]] = Counter()
    for event in events:
        if event.action not in ROLLED_UP:
            continue
        counts[("at", event.action, event.at.date())] += 1
        if (deadline := _deadline_day(event.details)) is not None:
            counts[("deadline", event.action, deadline)] += 1
            counts[("gone", event.action, event.at.date())] += 1  # deleted that day, with a deadline
    for (kind, action, day), n in counts.items():
        if not model.objects.filter(kind=kind, action=action, day=day).update(n=F("n") + n):
            model.objects.create(kind=kind, action=action, day=day, n=n)
    _seq_bounds_add(events, model)


# Every event's day bounds its seq: kind "first" holds the lowest seq of an event of that day (the day's first
# chained: seqs only grow), "last" the highest; `action` is empty. A date filter reads a seq range from them,
# so the trail's keyset pages walk the seq index inside it (an event's time does not grow strictly with its
# seq: concurrent actions queue and chain in slightly different orders, so the range is a bound, never the
# filter itself).
SEQ_FIRST, SEQ_LAST = "first", "last"


def _seq_bounds_add(events: Iterable[Any], model: Any) -> None:
    days: dict[date, tuple[int, int]] = {}
    for event in events:
        day = event.at.date()
        low, high = days.get(day, (event.seq, event.seq))
        days[day] = (min(low, event.seq), max(high, event.seq))
    for day, (low, high) in days.items():
        # One statement a day an append touches, usually one: later appends only have higher seqs
        if not model.objects.filter(kind=SEQ_LAST, action="", day=day).update(n=Greatest(F("n"), high)):
            model.objects.bulk_create([model(kind=SEQ_FIRST, action="", day=day, n=low),
                                       model(kind=SEQ_LAST, action="", day=day, n=high)])


def seq_bounds(*, since: date | None, until: date | None) -> tuple[int | None, int | None] | None:
    """The seqs (lowest, highest) of events of days `since` to `until` (both inclusive; None: unbounded
    that side), or None when no event has such a day."""
    low = high = None
    if since is not None:
        low = AuditDaily.objects.filter(kind=SEQ_FIRST, action="", day__gte=since).aggregate(m=Min("n"))["m"]
        if low is None:
            return None
    if until is not None:
        high = AuditDaily.objects.filter(kind=SEQ_LAST, action="", day__lte=until).aggregate(m=Max("n"))["m"]
        if high is None:
            return None
    return low, high


def rollup_counts(kind: str, *, actions: Iterable[str],
                  since: date | None = None) -> dict[tuple[date, str], int]:
    """(day, action) -> count of one kind, from `since` on (all days when None)."""
    rows = AuditDaily.objects.filter(kind=kind, action__in=list(actions))
    if since is not None:
        rows = rows.filter(day__gte=since)
    return {(day, action): n for day, action, n in rows.values_list("day", "action", "n")}
