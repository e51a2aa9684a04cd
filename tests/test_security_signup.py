"""Issues 19.9 and 18.13: the sign-up page and the API share one validator (accounts/validation.py).

The page had called the service with no validation: NUL bytes, a 151-character name and a 300-character
e-mail were PostgreSQL 500s, and empty, one-character, HTML, space, zero-width and RLO names were accepted.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.test import APIClient

from .support import assert_error

PASSWORD = "correct-Horse-battery-staple-9"
BAD_NAMES = {
    "empty": "", "one_char": "a", "nul": "ad\x00min", "too_long": "x" * 151, "html": "<b>bob</b>",
    "space": "bob smith", "zero_width": "bob\u200bsmith", "rlo": "bob\u202egnp", "tab": "bob\tsmith",
}
BAD_EMAILS = {"too_long": "a" * 290 + "@example.com", "nul": "bob\x00@example.com", "not_an_address": "bob@"}


def page_signup(**fields: str):
    return Client().post("/signup", {"password": PASSWORD, **fields})


def api_register(**fields: str):
    return APIClient().post("/api/v1/auth/register", {"password": PASSWORD, **fields}, format="json")


@pytest.mark.parametrize("case", list(BAD_NAMES))
def test_a_bad_username_is_400_on_the_page_and_the_api(purposes, case):
    name = BAD_NAMES[case]
    page = page_signup(username=name)
    assert page.status_code == 400
    assert 'id="err-username"' in page.content.decode()
    error = assert_error(api_register(username=name), 400, "invalid")
    assert error["details"]["username"]
    assert not get_user_model().objects.exists()


@pytest.mark.parametrize("case", list(BAD_EMAILS))
def test_a_bad_email_is_400_on_the_page_and_the_api(purposes, case):
    page = page_signup(username="bobsmith", email=BAD_EMAILS[case])
    assert page.status_code == 400
    assert 'id="err-email"' in page.content.decode()
    error = assert_error(api_register(username="bobsmith", email=BAD_EMAILS[case]), 400, "invalid")
    assert error["details"]["email"]
    assert not get_user_model().objects.exists()


def test_an_empty_form_says_everything_that_is_missing(purposes):
    page = Client().post("/signup", {}).content.decode()
    assert "Choose a username." in page and "Choose a password." in page
    error = assert_error(api_register(username="", password=""), 400, "invalid")
    assert error["details"] == {"username": ["Choose a username."], "password": ["Choose a password."]}


def test_a_good_form_still_signs_up_on_both(purposes):
    assert page_signup(username="José.García", email="jose@example.com").status_code == 302
    assert api_register(username="bob-smith_2", email="").status_code == 201
