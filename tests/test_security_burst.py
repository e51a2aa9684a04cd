"""Issues 19.8, 18.4: sign-in limits hold under a parallel burst and across the web processes of `make run`.

Each attempt takes its place in the counters (an atomic `incr` on the shared cache) before its password is
checked. Before, counters were read before the hash and written after it: 32 parallel sign-ins all had their
password checked, and the right one, launched 16th, got a token after 16 failures (the limit is 5).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client
from rest_framework.test import APIClient

from webplatform.accounts import lockout
from webplatform.accounts.services import user_register

pytestmark = pytest.mark.django_db(transaction=True)  # the burst's threads each have their own connection
PASSWORD = "a-Long-passphrase-42"
BURST = 32
RIGHT = 15  # the right password is the 16th attempt launched


@pytest.fixture
def burst(monkeypatch) -> Callable[[list[Callable[[], int]]], tuple[list[int], int]]:
    """Run attempts in parallel threads, all in flight at once: every password check is held until each
    attempt has reached its check or been refused. A real Argon2 check takes ~100 ms and a real burst
    overlaps it; here the overlap is certain rather than left to timing (the real check then runs).
    Attempts start in launch order, each once the one before has reached its check or its answer, so which
    ones find a place is deterministic: the first five."""
    real = lockout.ModelBackend.authenticate
    turns = [threading.Event() for _ in range(BURST + 1)]  # turns[BURST]: every attempt is in flight
    mine, lock, checks = threading.local(), threading.Lock(), [0]

    def held(*args, **kwargs):
        with lock:
            checks[0] += 1
        mine.checked = True
        turns[mine.n + 1].set()
        assert turns[BURST].wait(timeout=60), "the burst did not reach its checks"
        return real(*args, **kwargs)

    def one(numbered: tuple[int, Callable[[], int]]) -> int:
        mine.n, mine.checked = numbered[0], False
        assert turns[mine.n].wait(timeout=60)
        try:
            return numbered[1]()
        finally:
            connection.close()  # each thread's own database connection
            if not mine.checked:
                turns[mine.n + 1].set()

    def run(attempts: list[Callable[[], int]]) -> tuple[list[int], int]:
        monkeypatch.setattr(lockout.ModelBackend, "authenticate", held)
        turns[0].set()
        with ThreadPoolExecutor(max_workers=BURST) as pool:
            statuses = list(pool.map(one, enumerate(attempts)))
        return statuses, checks[0]

    return run


def test_a_parallel_burst_on_the_api_gets_no_more_password_checks_than_the_limit(burst):
    user_register(username="burst", password=PASSWORD)

    def attempt(n: int) -> Callable[[], int]:
        password = PASSWORD if n == RIGHT else f"wrong-password-{n}"
        return lambda: APIClient(REMOTE_ADDR="203.0.113.40").post(
            "/api/v1/auth/token", {"username": "burst", "password": password}).status_code

    statuses, checks = burst([attempt(n) for n in range(BURST)])

    # Five passwords are checked; every other attempt, the right one among them, is refused unchecked
    limit = settings.LOGIN_LIMIT_ACCOUNT_ADDRESS
    assert checks == limit
    assert statuses == [401] * limit + [429] * (BURST - limit)


def test_a_parallel_burst_on_the_sign_in_page_gets_no_more_password_checks_than_the_limit(burst):
    user_register(username="burst", password=PASSWORD)

    def attempt(n: int) -> Callable[[], int]:
        def go() -> int:
            password = PASSWORD if n == RIGHT else f"wrong-password-{n}"
            browser = Client(REMOTE_ADDR="203.0.113.41")
            page = browser.post("/login/", {"username": "burst", "password": password})
            return 429 if "Try again in" in page.content.decode() else page.status_code  # 302: signed in
        return go

    statuses, checks = burst([attempt(n) for n in range(BURST)])

    # Five passwords are checked (the form answers "wrong password"); the rest, the right one among them,
    # are told to wait
    limit = settings.LOGIN_LIMIT_ACCOUNT_ADDRESS
    assert checks == limit
    assert statuses == [200] * limit + [429] * (BURST - limit)


def test_the_embedded_cache_counts_failures_from_every_web_process(db):
    # Given the embedded default cache (no CACHE_URL: a file cache under var/, as `make run` uses)
    assert settings.CACHES["default"]["BACKEND"] == "diskcache.DjangoCache"
    root = Path(__file__).resolve().parent.parent
    # When another process (another gunicorn worker) takes the five places of failed checks
    script = (
        "import django; django.setup()\n"
        "from webplatform.accounts import lockout\n"
        "for _ in range(5): assert lockout._attempt_reserve(username='owner', address='192.0.2.33')\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "webplatform.settings", "PYTHONPATH": str(root),
           "TIMEVEIL_VAR_DIR": str(settings.VAR_DIR), "DATABASE_URL": "sqlite:///:memory:"}
    env.pop("CACHE_URL", None)
    result = subprocess.run([sys.executable, "-c", script], env=env, cwd=root, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    # Then this process sees the account locked from that address, and refuses the next attempt unchecked
    assert lockout.login_wait(username="owner", address="192.0.2.33") is not None
    assert lockout._attempt_reserve(username="owner", address="192.0.2.33") is None
