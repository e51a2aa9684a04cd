"""Brute-force limits on every password check, per account and per address, on the shared Django cache.

Three fixed-window counters of failed checks (LOGIN_FAILURE_WINDOW seconds each):
- account + address (LOGIN_LIMIT_ACCOUNT_ADDRESS): one guesser against one account;
- address (LOGIN_LIMIT_ADDRESS): one address spraying many accounts;
- account (LOGIN_LIMIT_ACCOUNT): many addresses against one account. This one does not apply to an address
  that signed in to the account before (LOGIN_KNOWN_ADDRESS_DAYS), so a botnet cannot lock the owner out.
A counter at its limit refuses checks until the window after the one it filled ends (one to two windows).
Refused checks are not counted and never reach the password hasher, so a lock always runs out, and holding
one needs a fresh burst of failures each time. All paths go through `LimitedModelBackend`.

When the cache does not answer, sign-in fails closed: 503 `sign_in_unavailable`, no password checked.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from redis.exceptions import RedisError

from governance.errors import LoginLocked, SignInUnavailable
from webplatform import metrics

from .addresses import client_address
from .confusables import skeleton

timer = time.time  # tests move the clock through this
log = logging.getLogger(__name__)
# What the shared cache raises when it does not answer: Django's Redis cache passes redis-py's errors through.
CACHE_ERRORS = (RedisError, OSError)


@contextmanager
def _cache_answering() -> Iterator[None]:
    """Fail closed: an unreachable counter store refuses the sign-in rather than check passwords uncounted."""
    try:
        yield
    except CACHE_ERRORS as exc:
        log.warning("sign-in limits: the shared cache failed: %s", exc)
        metrics.CACHE_FAILURES.labels(use="sign_in").inc()
        raise SignInUnavailable() from exc


def _account(username: str) -> str:
    # Look-alike names share a counter; the cache holds a hash, not the name.
    return hashlib.sha256(skeleton(username).encode()).hexdigest()[:32]


def _counters(username: str, address: str) -> list[tuple[str, int, bool]]:
    """(cache key prefix, limit, waived for a known address) for each dimension."""
    account = _account(username)
    return [
        (f"login:fail:pair:{account}:{address}", settings.LOGIN_LIMIT_ACCOUNT_ADDRESS, False),
        (f"login:fail:addr:{address}", settings.LOGIN_LIMIT_ADDRESS, False),
        (f"login:fail:acct:{account}", settings.LOGIN_LIMIT_ACCOUNT, True),
    ]


def _known_key(username: str, address: str) -> str:
    return f"login:known:{_account(username)}:{address}"


def login_wait(*, username: str, address: str) -> float | None:
    """Seconds until this account may be tried from this address again, or None when it may be now."""
    window = settings.LOGIN_FAILURE_WINDOW
    now = timer()
    current = int(now // window)
    counters = _counters(username, address)
    keys = [f"{prefix}:{w}" for prefix, _, _ in counters for w in (current, current - 1)]
    with _cache_answering():
        counts = cache.get_many(keys)
    known: bool | None = None
    wait = 0.0
    for prefix, limit, waived_if_known in counters:
        for w in (current, current - 1):
            if counts.get(f"{prefix}:{w}", 0) < limit:
                continue
            if waived_if_known and known is None:
                with _cache_answering():
                    known = cache.get(_known_key(username, address)) is not None
            if waived_if_known and known:
                continue
            wait = max(wait, (w + 2) * window - now)
    return wait or None


def login_refusal(*, username: str, request: Any) -> LoginLocked | None:
    """The 429 to raise before checking a password (the error handler sends Retry-After), or None."""
    wait = login_wait(username=username, address=client_address(request))
    return None if wait is None else LoginLocked(int(wait) + 1)


def login_failure_record(*, username: str, address: str) -> None:
    """Count one failed password check in each dimension."""
    window = settings.LOGIN_FAILURE_WINDOW
    current = int(timer() // window)
    for prefix, _, _ in _counters(username, address):
        key = f"{prefix}:{current}"
        with _cache_answering():
            cache.add(key, 0, timeout=2 * window + 60)
            try:
                cache.incr(key)
            except ValueError:  # expired between add and incr
                cache.set(key, 1, timeout=2 * window + 60)


def login_success_record(*, username: str, address: str) -> None:
    """Remember the address as the account's, and forget this pair's failures (typos before a success)."""
    window = settings.LOGIN_FAILURE_WINDOW
    current = int(timer() // window)
    pair = _counters(username, address)[0][0]
    with _cache_answering():
        cache.delete_many([f"{pair}:{current}", f"{pair}:{current - 1}"])
        cache.set(_known_key(username, address), 1, timeout=settings.LOGIN_KNOWN_ADDRESS_DAYS * 86400)


class LimitedModelBackend(ModelBackend):
    """ModelBackend behind the limits: web /login/, the API token endpoint, any caller of authenticate()."""

    def authenticate(self, request: Any, username: str | None = None, password: str | None = None,
                     **kwargs: Any) -> Any:
        if username is None or password is None:
            return None
        address = client_address(request)
        if login_wait(username=username, address=address) is not None:
            raise PermissionDenied("locked")  # authenticate() answers None and asks no other backend
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is None:
            login_failure_record(username=username, address=address)
            # Stop here: ModelBackend is listed after this one only to load sessions it signed in.
            raise PermissionDenied("bad credentials")
        login_success_record(username=username, address=address)
        return user
