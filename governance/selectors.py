"""Reads shared by more than one door: the audit trail filtered (API JSON and CSV, the officer's table)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.db import connection
from django.db.models import QuerySet

from .audit_actions import AuditAction
from .audit_rollups import seq_bounds
from .models import AuditEvent, AuditHead


def audit_head_seq() -> int:
    """The chain head's seq (0 when there is no head): no event past it is part of the chain."""
    return AuditHead.objects.filter(pk=1).values_list("seq", flat=True).first() or 0

# Reads of content: one per thumbnail shown, so they swamp the trail; the officer's table hides them unless
# asked (a failed read is not one of them: it stays in view).
CONTENT_READS = (AuditAction.PHOTO_CONTENT_READ, AuditAction.RESULT_CONTENT_READ)
ELLIPSES = ("…", "...")
# A subject prefix naming at most this many pseudonyms is filtered by equality on them (an index range each)
SUBJECT_PREFIX_MATCHES = 10


def audit_events(*, action: str | None = None, subject: str | None = None, since: datetime | None = None,
                 until: datetime | None = None, newest_first: bool = False, reads: bool = True,
                 before_seq: int | None = None, after_seq: int | None = None) -> QuerySet[AuditEvent]:
    """Events matching every filter given: `since` inclusive, `until` exclusive; oldest first unless asked.

    `subject` matches a pseudonym or its start, so the shortened form a table shows ("3fa2b1c9…") finds it.
    `reads=False` leaves out content reads (CONTENT_READS) unless `action` asks for one of them.
    Only the chain up to its head: a row stored past the head was planted by a database writer (or left by
    a head moved back), is never shown as an event, and verification reports it (`past_head`).
    `before_seq` / `after_seq` bound the seq for keyset pages (each filter has an index ending in seq).
    """
    events = AuditEvent.objects.filter(seq__lte=audit_head_seq()).order_by("-seq" if newest_first else "seq")
    if action:
        events = events.filter(action=action)
    elif not reads:
        events = events.exclude(action__in=CONTENT_READS)
    if subject:
        subject = subject.strip()
        for ellipsis in ELLIPSES:
            subject = subject.removesuffix(ellipsis)
        named = _subjects_starting(subject)
        if named is None:
            events = events.filter(subject__startswith=subject)
        elif len(named) == 1:
            # The usual case, one pseudonym shortened: equality, so the (subject, seq) index gives the page
            # in order, however many events that person has
            events = events.filter(subject=named[0])
        else:
            events = events.filter(subject__in=named)  # none (an empty result), or an ambiguous start
    if since or until:
        # The days' seq range (audit_rollups), so a page reads the seq index inside it, not every event
        # outside the dates; `at` still filters exactly
        last = until - timedelta(microseconds=1) if until else None  # `until` is exclusive
        bounds = seq_bounds(since=since.astimezone(UTC).date() if since else None,
                            until=last.astimezone(UTC).date() if last else None)
        if bounds is None:
            return events.none()
        if bounds[0] is not None:
            events = events.filter(seq__gte=bounds[0])
        if bounds[1] is not None:
            events = events.filter(seq__lte=bounds[1])
    if since:
        events = events.filter(at__gte=since)
    if until:
        events = events.filter(at__lt=until)
    if before_seq is not None:
        events = events.filter(seq__lt=before_seq)
    if after_seq is not None:
        events = events.filter(seq__gt=after_seq)
    return events


def _subjects_starting(prefix: str) -> list[str] | None:
    """Every distinct stored subject that starts with `prefix`, one probe of the "C" collation subject index
    each (PostgreSQL, migration 0014); None past SUBJECT_PREFIX_MATCHES of them, or on another database
    (the caller filters with LIKE then)."""
    if connection.vendor != "postgresql" or not prefix:
        return None
    found: list[str] = []
    with connection.cursor() as cursor:
        for _ in range(SUBJECT_PREFIX_MATCHES + 1):
            cursor.execute(
                'SELECT subject FROM governance_auditevent WHERE subject COLLATE "C" LIKE %s'
                + (' AND subject COLLATE "C" > %s' if found else "")
                + ' ORDER BY subject COLLATE "C" LIMIT 1',
                [_like_prefix(prefix), *found[-1:]])
            row = cursor.fetchone()
            if row is None:
                break
            found.append(row[0])
    return found if len(found) <= SUBJECT_PREFIX_MATCHES else None


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def audit_stored_actions() -> list[str]:
    """Every distinct action stored, by a skip scan of the (action, seq) index: one indexed read per action,
    however long the trail (DISTINCT reads every row)."""
    actions: list[str] = []
    events = AuditEvent.objects.order_by("action").values_list("action", flat=True)
    while (action := (events.filter(action__gt=actions[-1]) if actions else events).first()) is not None:
        actions.append(action)
    return actions
