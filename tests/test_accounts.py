"""Accounts: registration, tokens, password hashing in production, throttling of login and register."""

from __future__ import annotations

import importlib

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import check_password, make_password
from rest_framework.test import APIClient
from rest_framework.throttling import ScopedRateThrottle

from governance.models import DataKey

from .support import assert_error

PASSWORD = "correct-Horse-battery-staple-9"


def register(client: APIClient, username: str, password: str = PASSWORD, **extra):
    return client.post("/api/v1/auth/register", {"username": username, "password": password, **extra})


def test_register_returns_a_working_token(purposes):
    client = APIClient()
    response = register(client, "newbie", email="newbie@example.com")
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "username", "token"} and body["username"] == "newbie"
    user = get_user_model().objects.get(username="newbie")
    # opaque, not the sequential key (test_security_accounts)
    assert body["id"] == str(user.account.public_id)
    assert user.email == "newbie@example.com"
    assert not user.is_staff and not user.groups.exists()
    assert user.password != PASSWORD and check_password(PASSWORD, user.password)
    assert DataKey.objects.filter(user=user).exists()  # every account gets its own data key
    client.credentials(HTTP_AUTHORIZATION=f"Token {body['token']}")
    assert client.get("/api/v1/me/consents").status_code == 200


@pytest.mark.parametrize("taken", ["newbie", "NEWBIE", "NewBie"])
def test_duplicate_username_is_409(purposes, taken):
    assert register(APIClient(), "newbie").status_code == 201
    error = assert_error(register(APIClient(), taken), 409, "conflict")
    assert error["details"] == {"username": ["taken"]}
    assert get_user_model().objects.filter(username__iexact="newbie").count() == 1


@pytest.mark.parametrize("password", ["short1", "password123", "12345678901234", "newbie-user"])
def test_weak_password_is_400_with_reasons(purposes, password):
    error = assert_error(register(APIClient(), "newbie-user", password=password), 400, "invalid")
    assert error["details"]["password"] and all(isinstance(m, str) for m in error["details"]["password"])
    assert not get_user_model().objects.filter(username="newbie-user").exists()


@pytest.mark.parametrize("username", ["ab", "with space", "semi;colon", "<script>", "x" * 151, ""])
def test_bad_username_is_400(purposes, username):
    error = assert_error(register(APIClient(), username), 400, "invalid")
    assert "username" in error["details"]
    assert not get_user_model().objects.filter(username=username).exists()


def test_bad_email_is_400(purposes):
    error = assert_error(register(APIClient(), "mailer", email="not-an-email"), 400, "invalid")
    assert "email" in error["details"]


def test_token_for_good_credentials_and_401_otherwise(purposes):
    token = register(APIClient(), "tokenista").json()["token"]
    client = APIClient()
    response = client.post("/api/v1/auth/token", {"username": "tokenista", "password": PASSWORD})
    assert response.status_code == 200 and response.json() == {"token": token}
    wrong = assert_error(
        client.post("/api/v1/auth/token", {"username": "tokenista", "password": "nope-nope-1"}),
        401,
        "not_authenticated",
    )
    unknown = assert_error(client.post("/api/v1/auth/token", {"username": "ghost", "password": PASSWORD}),
                           401, "not_authenticated")
    assert wrong["message"] == unknown["message"]  # no hint which of the two was wrong
    assert_error(client.post("/api/v1/auth/token", {"username": "tokenista"}), 400, "invalid")


def test_inactive_user_gets_no_token(purposes):
    register(APIClient(), "sleeper")
    get_user_model().objects.filter(username="sleeper").update(is_active=False)
    assert_error(APIClient().post("/api/v1/auth/token", {"username": "sleeper", "password": PASSWORD}), 401)


def test_production_settings_hash_passwords_with_argon2(settings):
    production = importlib.import_module("webplatform.settings")
    assert production.PASSWORD_HASHERS[0] == "django.contrib.auth.hashers.Argon2PasswordHasher"
    # And Argon2 really works here (argon2-cffi installed), producing an argon2id hash
    settings.PASSWORD_HASHERS = production.PASSWORD_HASHERS
    encoded = make_password("a-Long-passphrase-42")
    assert encoded.startswith("argon2$argon2id$")
    assert check_password("a-Long-passphrase-42", encoded)


def test_production_settings_validate_passwords():
    production = importlib.import_module("webplatform.settings")
    names = {v["NAME"].rsplit(".", 1)[-1] for v in production.AUTH_PASSWORD_VALIDATORS}
    assert {"MinimumLengthValidator", "CommonPasswordValidator", "UserAttributeSimilarityValidator"} <= names


# --- throttling -----------------------------------------------------------------------------------------


@pytest.fixture
def auth_rate_3_per_minute(monkeypatch):
    """DRF read the rates at import; patch the class attribute and give the throttle a movable clock."""
    now = [1_000_000.0]
    monkeypatch.setattr(
        ScopedRateThrottle, "THROTTLE_RATES", {**ScopedRateThrottle.THROTTLE_RATES, "auth": "3/min"}
    )
    monkeypatch.setattr(ScopedRateThrottle, "timer", lambda self: now[0])
    return now


def test_login_is_throttled_with_json_and_retry_after(purposes, auth_rate_3_per_minute):
    register(APIClient(), "hammer")  # 1 of 3 in the window (same client address)
    client = APIClient()
    for _ in range(2):
        assert (
            client.post("/api/v1/auth/token", {"username": "hammer", "password": "wrong-guess-1"}).status_code
            == 401
        )
    # The fourth attempt in a minute is refused, even with the right password
    response = client.post("/api/v1/auth/token", {"username": "hammer", "password": PASSWORD})
    error = assert_error(response, 429, "throttled")
    assert error["message"]
    assert 1 <= int(response["Retry-After"]) <= 61
    # A minute later the window has passed
    auth_rate_3_per_minute[0] += 61
    assert client.post("/api/v1/auth/token", {"username": "hammer", "password": PASSWORD}).status_code == 200


def test_register_is_throttled(purposes, auth_rate_3_per_minute):
    client = APIClient()
    assert [register(client, f"bulk{i}").status_code for i in range(3)] == [201, 201, 201]
    assert_error(register(client, "bulk3"), 429, "throttled")
    assert not get_user_model().objects.filter(username="bulk3").exists()


def test_other_endpoints_are_not_in_the_auth_bucket(owner, auth_rate_3_per_minute):
    for _ in range(5):
        assert owner.client.get("/api/v1/me/consents").status_code == 200
