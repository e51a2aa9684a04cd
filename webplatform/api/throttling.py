"""DRF's rate limits, failing open: when the shared cache does not answer, a request is let through.

A rate limit protects capacity, not a secret: refusing every request while the cache is down would turn a
cache outage into a whole-platform outage. The failure is logged and counted
(`timeveil_cache_failures_total{use="throttle"}` at /metrics). Sign-in limits are the exception and fail
closed (accounts/lockout.py).
"""

from __future__ import annotations

import logging
from typing import Any

from rest_framework import throttling

from webplatform import metrics
from webplatform.accounts.lockout import CACHE_ERRORS

log = logging.getLogger(__name__)


class FailOpen:
    """Mixin for a SimpleRateThrottle: a cache error allows the request instead of answering 500."""

    def allow_request(self, request: Any, view: Any) -> bool:
        try:
            return super().allow_request(request, view)  # type: ignore[misc]
        except CACHE_ERRORS as exc:
            log.warning("rate limit not applied: the shared cache failed: %s", exc)
            metrics.CACHE_FAILURES.labels(use="throttle").inc()
            return True


class AnonRateThrottle(FailOpen, throttling.AnonRateThrottle):
    pass


class UserRateThrottle(FailOpen, throttling.UserRateThrottle):
    pass


class ScopedRateThrottle(FailOpen, throttling.ScopedRateThrottle):
    pass
