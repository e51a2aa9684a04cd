"""Brute-force limits on every password check, per account and per address, on the shared Django cache.

Three fixed-window counters of password checks (LOGIN_FAILURE_WINDOW seconds each):
- account + address (LOGIN_LIMIT_ACCOUNT_ADDRESS): one guesser against one account;
- address (LOGIN_LIMIT_ADDRESS): one address spraying many accounts;
- account (LOGIN_LIMIT_ACCOUNT): many addresses against one account. This one does not apply to an address
  that signed in to the account before (LOGIN_KNOWN_ADDRESS_DAYS), so a botnet cannot lock the owner out.
An attempt takes its place in each counter (one atomic `incr` on the shared cache) BEFORE its password is
checked, so a parallel burst gets no more checks than the limit: the attempt that would pass a limit is
given back and refused. A failed check keeps its place; a success gives back the address and account places
and forgets the pair's failures. A counter at its limit refuses checks until the window after the one it
filled ends (one to two windows). Refused attempts are never counted, so a lock always runs out, and
holding one needs a fresh burst of failures each time. All paths go through `LimitedModelBackend`.

The cache's `incr` must be atomic across every web process: Redis at scale, the file-backed SQLite cache
under var/ in the embedded default (settings.CACHES). When the cache does not answer, sign-in fails closed:
503 `sign_in_unavailable`, no password checked.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import diskcache
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
# What the shared cache raises when it does not answer: Django's Redis cache passes redis-py's errors through;
# the embedded file cache raises SQLite's (an unwritable or full var/) or diskcache's Timeout.
CACHE_ERRORS = (RedisError, OSError, sqlite3.Error, diskcache.Timeout)


@contextmanager
def _cache_answering() -> Iterator[None]:
    """Fail closed: an unreachable counter store refuses the sign-in rather than check passwords uncounted."""
    try:
        yield
    except CACHE_ERRORS as exc:
        log.warning("sign-in limits: the shared cache failed: %s", exc)
        metrics.CACHE_FAILURES.labels(use="sign_in").inc()
        raise SignInUnavailable() from exc


_PAIR = "login:fail:pair:"


def _account(username: str) -> str:
    # Look-alike names share a counter; the cache holds a hash, not the name.
    return hashlib.sha256(skeleton(username).encode()).hexdigest()[:32]


def _counters(username: str, address: str) -> list[tuple[str, int, bool]]:
    """(cache key prefix, limit, waived for a known address) for each dimension."""
    account = _account(username)
    return [
        (f"{_PAIR}{account}:{address}", settings.LOGIN_LIMIT_ACCOUNT_ADDRESS, False),
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


def _timeout() -> int:
    return 2 * settings.LOGIN_FAILURE_WINDOW + 60


def _attempt_reserve(*, username: str, address: str) -> list[str] | None:
    """Take this attempt's place in each counter of this window; None (and nothing taken) if one is full."""
    window = settings.LOGIN_FAILURE_WINDOW
    current = int(timer() // window)
    counters = _counters(username, address)
    known_key = _known_key(username, address)
    with _cache_answering():
        seen = cache.get_many([f"{p}:{current - 1}" for p, _, _ in counters] + [known_key])
    known = known_key in seen
    taken: list[str] = []
    try:
        for prefix, limit, waived_if_known in counters:
            if waived_if_known and known:
                continue
            if seen.get(f"{prefix}:{current - 1}", 0) >= limit:
                _attempt_release(taken)
                return None
            key = f"{prefix}:{current}"
            with _cache_answering():
                cache.add(key, 0, timeout=_timeout())
                try:
                    count = cache.incr(key)
                except ValueError:  # expired between add and incr
                    cache.set(key, 1, timeout=_timeout())
                    count = 1
            taken.append(key)
            if count > limit:
                _attempt_release(taken)
                return None
    except BaseException:
        _attempt_release(taken)
        raise
    return taken


def _attempt_release(keys: list[str]) -> None:
    """Give back places taken (a refused attempt, a success): only failed checks stay counted."""
    with _cache_answering():
        for key in keys:
            try:
                cache.decr(key)
            except ValueError:  # the window's key expired meanwhile: nothing left to give back
                pass


def login_success_record(*, username: str, address: str) -> None:
    """Remember the address as the account's, and forget this pair's failures (typos before a success)."""
    window = settings.LOGIN_FAILURE_WINDOW
    current = int(timer() // window)
    pair = _counters(username, address)[0][0]
    with _cache_answering():
        cache.delete_many([f"{pair}:{current}", f"{pair}:{current - 1}"])
        cache.set(_known_key(username, address), 1, timeout=settings.LOGIN_KNOWN_ADDRESS_DAYS * 86400)


class LimitedModelBackend(ModelBackend):
    """ModelBackend behind the limits: web /login/, the API token endpoint, any caller of authenticate().

    Raises LoginLocked (429, with Retry-After) when the attempt gets no place, and SignInUnavailable when
    the cache does not answer: both leave authenticate() as they are, and no password is checked.
    """

    def authenticate(self, request: Any, username: str | None = None, password: str | None = None,
                     **kwargs: Any) -> Any:
        if username is None or password is None:
            return None
        address = client_address(request)
        taken = _attempt_reserve(username=username, address=address)
        if taken is None:
            wait = login_wait(username=username, address=address) or settings.LOGIN_FAILURE_WINDOW
            raise LoginLocked(int(wait) + 1)
        try:
            user = super().authenticate(request, username=username, password=password, **kwargs)
        except BaseException:
            _attempt_release(taken)
            raise
        if user is None:
            # The places taken stay: they are this failure's count. Stop here: ModelBackend is listed after
            # this one only to load sessions it signed in.
            raise PermissionDenied("bad credentials")
        _attempt_release([key for key in taken if not key.startswith(_PAIR)])
        login_success_record(username=username, address=address)
        return user
