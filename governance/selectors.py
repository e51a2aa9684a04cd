"""Reads shared by more than one door: the audit trail filtered (API JSON and CSV, the officer's table)."""

from __future__ import annotations

from datetime import datetime

from django.db.models import QuerySet

from .audit_actions import AuditAction
from .models import AuditEvent, AuditHead


def audit_head_seq() -> int:
    """The chain head's seq (0 when there is no head): no event past it is part of the chain."""
    return AuditHead.objects.filter(pk=1).values_list("seq", flat=True).first() or 0

# Reads of content: one per thumbnail shown, so they swamp the trail; the officer's table hides them unless
# asked (a failed read is not one of them: it stays in view).
CONTENT_READS = (AuditAction.PHOTO_CONTENT_READ, AuditAction.RESULT_CONTENT_READ)
ELLIPSES = ("…", "...")


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
        events = events.filter(subject__startswith=subject)
    if since:
        events = events.filter(at__gte=since)
    if until:
        events = events.filter(at__lt=until)
    if before_seq is not None:
        events = events.filter(seq__lt=before_seq)
    if after_seq is not None:
        events = events.filter(seq__gt=after_seq)
    return events


def audit_stored_actions() -> list[str]:
    """Every distinct action stored, by a skip scan of the (action, seq) index: one indexed read per action,
    however long the trail (DISTINCT reads every row)."""
    actions: list[str] = []
    events = AuditEvent.objects.order_by("action").values_list("action", flat=True)
    while (action := (events.filter(action__gt=actions[-1]) if actions else events).first()) is not None:
        actions.append(action)
    return actions
