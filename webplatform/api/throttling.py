"""DRF's rate limits, keyed on the client address and failing open when the shared cache does not answer.

DRF's own `get_ident` believes any `X-Forwarded-For` (NUM_PROXIES unset) or counts hops; here every
throttle keys an anonymous caller on `accounts.addresses.client_address`, which believes the header only
from the proxies named in TRUSTED_PROXIES.

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
from webplatform.accounts.addresses import client_address
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


class ClientAddressIdent:
    """Mixin for a DRF throttle: an anonymous caller is its client address, never a header it chose."""

    def get_ident(self, request: Any) -> str:
        return client_address(request)


class AnonRateThrottle(FailOpen, ClientAddressIdent, throttling.AnonRateThrottle):
    pass


class UserRateThrottle(FailOpen, ClientAddressIdent, throttling.UserRateThrottle):
    pass


class ScopedRateThrottle(FailOpen, ClientAddressIdent, throttling.ScopedRateThrottle):
    pass


class SignUpPageThrottle(FailOpen, ClientAddressIdent, throttling.SimpleRateThrottle):
    """The API's `auth` rate for the /signup page: the same bucket as POST /auth/register from an address."""

    scope = "auth"

    def get_cache_key(self, request: Any, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


def signup_page_wait(request: Any) -> float | None:
    """Seconds until this address may sign up again (the API's limit), or None when it may now."""
    throttle = SignUpPageThrottle()
    return None if throttle.allow_request(request, None) else (throttle.wait() or 1.0)
