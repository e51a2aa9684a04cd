"""What every page's template may say about retention: the periods the settings enforce, never a literal."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.http import HttpRequest


def retention(request: HttpRequest) -> dict[str, Any]:
    return {"retention": {"original_hours": hours(settings.RETENTION_ORIGINAL),
                          "result_hours": hours(settings.RETENTION_RESULT),
                          "training_days": settings.RETENTION_TRAINING.days}}


def hours(period: timedelta) -> int:
    """A retention period in whole hours, as every page words it."""
    return round(period.total_seconds() / 3600)
