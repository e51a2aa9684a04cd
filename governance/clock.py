"""The platform's one clock. Tests move time with monkeypatch.setattr(clock, "now", ...) instead of sleeping."""

from datetime import datetime

from django.utils import timezone


def now() -> datetime:
    """The current time (UTC, aware)."""
    return timezone.now()
