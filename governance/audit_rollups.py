"""Per-day roll-ups of the retention actions, kept as events are appended (issue 23): the retention chart
reads a few rows per day instead of every `*.expired` event of its window."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

from django.db.models import F

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


def rollup_counts(kind: str, *, actions: Iterable[str],
                  since: date | None = None) -> dict[tuple[date, str], int]:
    """(day, action) -> count of one kind, from `since` on (all days when None)."""
    rows = AuditDaily.objects.filter(kind=kind, action__in=list(actions))
    if since is not None:
        rows = rows.filter(day__gte=since)
    return {(day, action): n for day, action, n in rows.values_list("day", "action", "n")}
