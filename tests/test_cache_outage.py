"""A shared-cache outage: rate limits fail open (logged, counted), sign-in fails closed with a 503.

The cache is Django's real Redis cache pointed at a port where nothing listens (the discard port), so each
call fails the way it would in production: redis-py cannot connect. Nothing is mocked.
"""

from __future__ import annotations

import pytest
from django.test import Client, override_settings
from prometheus_client import REGISTRY
from rest_framework.test import APIClient

from .support import assert_error

PASSWORD = "a-Long-passphrase-42"  # conftest's make_actor password
DEAD_CACHE = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                          "LOCATION": "redis://127.0.0.1:9/1",  # nothing listens: connections are refused
                          "OPTIONS": {"socket_connect_timeout": 1}}}


def failures(use: str) -> float:
    """timeveil_cache_failures_total{use}, as /metrics would read it."""
    return REGISTRY.get_sample_value("timeveil_cache_failures_total", {"use": use}) or 0.0


@pytest.fixture
def cache_down():
    with override_settings(CACHES=DEAD_CACHE):
        yield


def test_api_requests_pass_their_rate_limits_unapplied_and_counted_while_the_cache_is_down(owner, cache_down):
    before = failures("throttle")
    response = APIClient().get("/api/v1/purposes")  # anonymous: the anon limit
    assert response.status_code == 200, response.content
    client = APIClient()
    client.force_authenticate(owner.user)
    assert client.get("/api/v1/photos").status_code == 200  # signed in: the user limit
    assert failures("throttle") >= before + 2


def test_the_api_token_answers_503_with_retry_after_and_checks_no_password(owner, cache_down, monkeypatch):
    from webplatform.accounts import lockout

    checks = []
    monkeypatch.setattr(lockout.ModelBackend, "authenticate", lambda *a, **k: checks.append(1))
    before = failures("sign_in")
    response = APIClient().post("/api/v1/auth/token", {"username": "owner", "password": PASSWORD})
    assert_error(response, 503, "sign_in_unavailable")
    assert response["Retry-After"] == "30"
    assert checks == [] and failures("sign_in") > before


def test_the_sign_in_page_answers_a_503_page_and_signs_no_one_in(owner, cache_down):
    browser = Client()
    response = browser.post("/login/", {"username": "owner", "password": PASSWORD})
    assert response.status_code == 503 and response["Retry-After"] == "30"
    assert response["Content-Type"].startswith("text/html")
    assert "Sign-in is briefly unavailable" in response.content.decode()
    assert "_auth_user_id" not in browser.session


def test_sign_in_works_again_once_the_cache_answers(owner):
    response = APIClient().post("/api/v1/auth/token", {"username": "owner", "password": PASSWORD})
    assert response.status_code == 200 and response.json()["token"]
