"""Reads shared by more than one door: the audit trail filtered (API JSON and CSV, the officer's table)."""

from __future__ import annotations

from datetime import datetime

from django.db.models import QuerySet

from .models import AuditEvent


def audit_events(*, action: str | None = None, subject: str | None = None, since: datetime | None = None,
                 until: datetime | None = None, newest_first: bool = False) -> QuerySet[AuditEvent]:
    """Events matching every filter given: `since` inclusive, `until` exclusive; oldest first unless asked."""
    events = AuditEvent.objects.order_by("-seq" if newest_first else "seq")
    if action:
        events = events.filter(action=action)
    if subject:
        events = events.filter(subject=subject)
    if since:
        events = events.filter(at__gte=since)
    if until:
        events = events.filter(at__lt=until)
    return events
