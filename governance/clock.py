"""The platform's one clock. Tests move time with monkeypatch.setattr(clock, "now", ...), never sleep."""

from datetime import datetime

from django.utils import timezone


def now() -> datetime:
    """The current time (UTC, aware)."""
    return timezone.now()
