"""Reads shared by more than one door: the audit trail filtered (API JSON and CSV, the officer's table)."""

from __future__ import annotations

from datetime import datetime

from django.db.models import QuerySet

from .models import AuditEvent

# Reads of content: one per thumbnail shown, so they swamp the trail; the officer's table hides them unless
# asked (a failed read is not one of them: it stays in view).
CONTENT_READS = ("photo.content_read", "result.content_read")
ELLIPSES = ("…", "...")


def audit_events(*, action: str | None = None, subject: str | None = None, since: datetime | None = None,
                 until: datetime | None = None, newest_first: bool = False, reads: bool = True
                 ) -> QuerySet[AuditEvent]:
    """Events matching every filter given: `since` inclusive, `until` exclusive; oldest first unless asked.

    `subject` matches a pseudonym or its start, so the shortened form a table shows ("3fa2b1c9…") finds it.
    `reads=False` leaves out content reads (CONTENT_READS) unless `action` asks for one of them.
    """
    events = AuditEvent.objects.order_by("-seq" if newest_first else "seq")
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
    return events
