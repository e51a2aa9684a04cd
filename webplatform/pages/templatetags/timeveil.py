"""Template filters for the pages: readable dates, plain-word durations, epsilons, failure codes in words."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django import template
from django.utils import timezone

from governance import clock
from webplatform.accounts.access import is_compliance_officer
from webplatform.jobs.models import JobFailure
from webplatform.photos.models import DueReason

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


# Under this a countdown is in hours (48 hours reads "48 hours", not a rounded-down "1 day"); from it, days.
HOURS_BELOW = 2 * 86400
MINUTES_BELOW = 2 * 3600


def countdown(seconds: float) -> str:
    """A duration as people read it, rounded to the nearest unit: 'in 90 days', 'in 48 hours', 'now'."""
    if seconds <= 60:
        return "now"
    unit, size = (("minute", 60) if seconds < MINUTES_BELOW else ("hour", 3600) if seconds < HOURS_BELOW
                  else ("day", 86400))
    n = max(1, int(seconds / size + 0.5))  # half up: 89 days 23 hours is "90 days"
    return f"in {n} {unit}{'s' if n != 1 else ''}"


@register.filter
def until(value: Any) -> str:
    """How long from now until a moment, rounded the way people read it ('in 90 days', 'in 48 hours')."""
    moment = _as_datetime(value)
    if moment is None:
        return ""
    return countdown((moment - clock.now()).total_seconds())


@register.filter
def pairs(details: Any) -> list[tuple[str, str]]:
    """An event's details as (key, readable value) pairs: nested maps as 'k: v, ...', lists joined."""
    def text(value: Any) -> str:
        if isinstance(value, dict):
            return ", ".join(f"{k}: {text(v)}" for k, v in sorted(value.items())) or "—"
        if isinstance(value, list | tuple):
            return ", ".join(text(v) for v in value) or "none"
        return "—" if value is None or value == "" else str(value)

    return [(str(k), text(v)) for k, v in sorted(details.items())] if isinstance(details, dict) else []


@register.filter
def due_reason(code: Any) -> str:
    """Why an object is due for deletion, in words ('its owner deleted it')."""
    return str(DueReason(code).label) if code in DueReason.values else str(code or "")


@register.filter
def is_officer(user: Any) -> bool:
    """Whether the navigation shows the officer console."""
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
    return "no face found" if code == JobFailure.NO_FACE else str(code).replace("_", " ")
