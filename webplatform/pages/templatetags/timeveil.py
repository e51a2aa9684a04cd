"""Template filters for the pages: readable dates, plain-word durations, epsilons, failure codes in words."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django import template
from django.utils import timezone

register = template.Library()


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


@register.filter
def when(value: Any) -> str:
    """'26 Nov 2026, 14:05 UTC' for a datetime or an ISO string; '—' for nothing."""
    moment = _as_datetime(value)
    if moment is None:
        return "—" if not value else str(value)
    if timezone.is_aware(moment):
        moment = moment.astimezone(timezone.get_current_timezone())
    return f"{moment.day} {moment:%b %Y, %H:%M} {moment.tzname() or ''}".strip()


@register.filter
def until(value: Any) -> str:
    """How long from now until a moment, in the largest sensible unit ('in 2 days', 'in 5 hours', 'now')."""
    moment = _as_datetime(value)
    if moment is None:
        return ""
    from governance import clock

    seconds = (moment - clock.now()).total_seconds()
    if seconds <= 60:
        return "now"
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = int(seconds // size)
            return f"in {n} {unit}{'s' if n != 1 else ''}"
    return "now"


@register.filter
def is_officer(user: Any) -> bool:
    """Whether the navigation shows the officer console."""
    from webplatform.accounts.access import is_compliance_officer

    return is_compliance_officer(user)


@register.filter
def epsilon(value: Any) -> str:
    """An epsilon with two decimals (or '—')."""
    try:
        return f"{float(value):.2f}"
    except (TypeError, ValueError):
        return "—"


@register.filter
def index(values: Any, i: int) -> Any:
    """values[i] in a template (chart tables); '' when out of range."""
    try:
        return values[i]
    except (IndexError, TypeError, KeyError):
        return ""


@register.filter
def failure_text(code: Any) -> str:
    """A job's failure code in words ('no face found', 'key destroyed'); the codes are JobFailure's."""
    from webplatform.jobs.models import JobFailure

    return "no face found" if code == JobFailure.NO_FACE else str(code).replace("_", " ")
