"""Issue 12, finding 2: every login path is limited per account and per address, and no lock lasts forever."""

from __future__ import annotations

import math

import pytest
from django.conf import settings
from django.test import Client
from rest_framework.test import APIClient

from webplatform.accounts import lockout

from .support import assert_error

PASSWORD = "a-Long-passphrase-42"  # conftest's make_actor password


@pytest.fixture
def clock(monkeypatch):
    """The lockout's clock, frozen at the start of a counting window; tests move it instead of sleeping."""
    now = [1_000 * settings.LOGIN_FAILURE_WINDOW + 1.0]
    monkeypatch.setattr(lockout, "timer", lambda: now[0])
    return now


def web_login(username: str, password: str, address: str = "203.0.113.7") -> tuple[int, bool]:
    """POST /login/ from `address`; returns (status, whether the browser is now signed in)."""
    browser = Client(REMOTE_ADDR=address)
    response = browser.post("/login/", {"username": username, "password": password})
    return response.status_code, "_auth_user_id" in browser.session


def api_token(username: str, password: str, address: str = "203.0.113.7"):
    return APIClient(REMOTE_ADDR=address).post(
        "/api/v1/auth/token", {"username": username, "password": password}
    )


def test_web_login_refuses_even_the_right_password_after_five_wrong_ones(owner, clock):
    # Given five wrong passwords for one account from one address (each an ordinary failed sign-in)
    for _ in range(settings.LOGIN_LIMIT_ACCOUNT_ADDRESS):
        assert web_login("owner", "wrong-password-1") == (200, False)
    # Then the right password from there is refused too: guessing cannot continue
    assert web_login("owner", PASSWORD) == (200, False)
    # And the lock runs out: after two windows the owner signs in
    clock[0] += 2 * settings.LOGIN_FAILURE_WINDOW
    assert web_login("owner", PASSWORD)[1] is True


def test_thirty_wrong_web_passwords_do_not_all_get_a_password_check(owner, clock, monkeypatch):
    checks = []
    real = lockout.ModelBackend.authenticate
    monkeypatch.setattr(
        lockout.ModelBackend, "authenticate", lambda *a, **k: checks.append(1) or real(*a, **k)
    )
    for _ in range(30):
        web_login("owner", "wrong-password-1")
    assert len(checks) == settings.LOGIN_LIMIT_ACCOUNT_ADDRESS


def test_api_token_answers_429_with_retry_after_once_locked(owner, clock):
    for _ in range(settings.LOGIN_LIMIT_ACCOUNT_ADDRESS):
        assert_error(api_token("owner", "wrong-password-1"), 401, "not_authenticated")
    response = api_token("owner", PASSWORD)
    error = assert_error(response, 429, "login_locked")
    retry_after = int(response["Retry-After"])
    assert error["details"] == {"retry_after": retry_after}
    assert settings.LOGIN_FAILURE_WINDOW < retry_after <= 2 * settings.LOGIN_FAILURE_WINDOW + 1
    clock[0] += retry_after
    assert api_token("owner", PASSWORD).status_code == 200


def test_web_and_api_failures_count_together(owner, clock):
    for _ in range(settings.LOGIN_LIMIT_ACCOUNT_ADDRESS - 1):
        web_login("owner", "wrong-password-1")
    assert api_token("owner", "wrong-password-1").status_code == 401
    assert_error(api_token("owner", PASSWORD), 429, "login_locked")


def test_a_lock_on_one_address_does_not_lock_the_owner_out_elsewhere(owner, clock):
    for _ in range(settings.LOGIN_LIMIT_ACCOUNT_ADDRESS):
        api_token("owner", "wrong-password-1", address="198.51.100.66")
    assert api_token("owner", PASSWORD, address="198.51.100.66").status_code == 429
    assert api_token("owner", PASSWORD, address="203.0.113.7").status_code == 200


def test_one_address_spraying_many_accounts_is_locked_out_of_all(make_actor, clock, settings):
    settings.LOGIN_LIMIT_ADDRESS = 12  # under the API's per-minute throttle, which would answer first
    make_actor("target")
    for n in range(settings.LOGIN_LIMIT_ADDRESS):
        assert api_token(f"victim{n}", "wrong-password-1", address="192.0.2.50").status_code == 401
    assert_error(api_token("target", PASSWORD, address="192.0.2.50"), 429, "login_locked")
    assert api_token("target", PASSWORD, address="192.0.2.51").status_code == 200


def test_many_addresses_lock_an_account_for_new_addresses_but_not_its_known_one(owner, clock):
    # Given the owner signed in before from home
    assert api_token("owner", PASSWORD, address="203.0.113.7").status_code == 200
    # When a botnet fails LOGIN_LIMIT_ACCOUNT times, each address below its own limit
    for n in range(settings.LOGIN_LIMIT_ACCOUNT):
        api_token("owner", "wrong-password-1", address=f"10.{n // 250}.{n % 250}.9")
    # Then a new address is refused, but the owner at home still signs in: they cannot be locked out
    assert_error(api_token("owner", PASSWORD, address="10.200.0.1"), 429, "login_locked")
    assert api_token("owner", PASSWORD, address="203.0.113.7").status_code == 200


def test_attempts_during_a_lock_do_not_extend_it(owner, clock):
    # Given a locked pair, hammered all through the lock
    for _ in range(settings.LOGIN_LIMIT_ACCOUNT_ADDRESS):
        web_login("owner", "wrong-password-1")
    for _ in range(19):
        clock[0] += settings.LOGIN_FAILURE_WINDOW / 10
        assert web_login("owner", PASSWORD) == (200, False)
    # Then it still ends two windows after it began
    clock[0] += settings.LOGIN_FAILURE_WINDOW / 10
    assert web_login("owner", PASSWORD)[1] is True


def test_a_success_forgets_the_typos_before_it(owner, clock):
    for _ in range(settings.LOGIN_LIMIT_ACCOUNT_ADDRESS - 1):
        api_token("owner", "wrong-password-1")
    assert api_token("owner", PASSWORD).status_code == 200
    for _ in range(settings.LOGIN_LIMIT_ACCOUNT_ADDRESS - 1):
        api_token("owner", "wrong-password-1")
    assert api_token("owner", PASSWORD).status_code == 200


def test_look_alike_names_share_one_counter(owner, clock):
    for _ in range(settings.LOGIN_LIMIT_ACCOUNT_ADDRESS):
        api_token("оwner", "wrong-password-1")  # Cyrillic о
    assert_error(api_token("owner", PASSWORD), 429, "login_locked")


def test_registration_is_limited_per_address(purposes):
    client = APIClient(REMOTE_ADDR="192.0.2.99")
    codes = [client.post("/api/v1/auth/register", {"username": f"flood{n}", "password": PASSWORD}).status_code
             for n in range(25)]
    assert codes[:20] == [201] * 20 and set(codes[20:]) == {429}


def test_the_sign_in_form_says_when_it_is_locked(owner, clock, rf):
    from webplatform.accounts.forms import SignInForm

    for _ in range(settings.LOGIN_LIMIT_ACCOUNT_ADDRESS):
        web_login("owner", "wrong-password-1", address="198.51.100.5")
    request = rf.post("/login/", REMOTE_ADDR="198.51.100.5")
    form = SignInForm(request, data={"username": "owner", "password": PASSWORD})
    assert not form.is_valid()
    [error] = form.non_field_errors().as_data()
    assert error.code == "locked" and "Try again in" in error.messages[0]
    assert SignInForm(rf.post("/login/", REMOTE_ADDR="198.51.100.6"),
                      data={"username": "owner", "password": PASSWORD}).is_valid()


def test_the_page_and_the_api_give_the_same_wait(owner, clock):
    # Issue 18.4: the page said "22 minutes" where the docs said 900 s. A lock lasts until the end of the
    # window after the one that filled (15 to 30 minutes, docs/security.md); both doors say what remains.
    for _ in range(settings.LOGIN_LIMIT_ACCOUNT_ADDRESS):
        api_token("owner", "wrong-password-1")
    clock[0] += 0.4 * settings.LOGIN_FAILURE_WINDOW
    retry_after = int(api_token("owner", PASSWORD)["Retry-After"])
    page = Client(REMOTE_ADDR="203.0.113.7").post("/login/", {"username": "owner", "password": PASSWORD})
    assert f"Try again in {math.ceil(retry_after / 60)} minutes" in page.content.decode()
    assert settings.LOGIN_FAILURE_WINDOW < retry_after <= 2 * settings.LOGIN_FAILURE_WINDOW
