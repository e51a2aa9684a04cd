"""Issue 19.7: per-address limits key on the socket address, and on X-Forwarded-For only from named proxies.

DRF's throttles had keyed anonymous callers on whatever X-Forwarded-For they sent (NUM_PROXIES unset), so a
fresh header per request was a fresh bucket; and the /signup page had no limit at all.
"""

from __future__ import annotations

import ipaddress

import pytest
from django.test import Client, RequestFactory
from rest_framework.test import APIClient

from webplatform.accounts.addresses import client_address

from .test_production_settings import SAFE, start

PASSWORD = "a-Long-passphrase-42"
LIMIT = 20  # THROTTLE_AUTH's default, 20/min


def register(client: APIClient, n: int, forwarded: str | None = None) -> int:
    extra = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded else {}
    return client.post("/api/v1/auth/register", {"username": f"flood{n}", "password": PASSWORD},
                       **extra).status_code


def networks(*names: str) -> tuple:
    return tuple(ipaddress.ip_network(n) for n in names)


def test_a_direct_client_cannot_buy_fresh_buckets_with_forwarded_headers(purposes):
    # Given a client connecting straight to the server (no trusted proxy), sending a new header each time
    client = APIClient(REMOTE_ADDR="192.0.2.50")
    codes = [register(client, n, forwarded=f"10.9.{n}.1") for n in range(LIMIT + 4)]
    # Then it is one address: the header is ignored and the 21st registration is throttled
    assert codes[:LIMIT] == [201] * LIMIT and set(codes[LIMIT:]) == {429}


def test_behind_a_named_proxy_each_client_has_its_own_bucket(purposes, settings):
    settings.TRUSTED_PROXIES = networks("10.0.0.0/24")
    proxy = APIClient(REMOTE_ADDR="10.0.0.5")
    # Distinct clients behind the proxy are counted apart
    assert {register(proxy, n, forwarded=f"198.51.100.{n}") for n in range(LIMIT + 4)} == {201}
    # One client behind it cannot escape by writing entries of its own left of the proxy's
    codes = [register(proxy, 100 + n, forwarded=f"203.0.113.{n}, 192.0.2.77") for n in range(LIMIT + 2)]
    assert codes[:LIMIT] == [201] * LIMIT and set(codes[LIMIT:]) == {429}


@pytest.mark.parametrize(("remote", "forwarded", "client"), [
    ("192.0.2.1", "198.51.100.1", "192.0.2.1"),  # not a proxy of ours: its header means nothing
    ("10.0.0.5", "198.51.100.1", "198.51.100.1"),
    ("10.0.0.5", "1.1.1.1, 198.51.100.1, 10.0.0.9", "198.51.100.1"),  # two proxies, then the client
    ("10.0.0.5", "10.0.0.7", "10.0.0.7"),  # only proxies: the farthest one
    ("10.0.0.5", "not-an-address, 198.51.100.1", "198.51.100.1"),
    ("10.0.0.5", "198.51.100.1, not-an-address", "10.0.0.5"),  # garbage no proxy writes: the last known hop
    ("10.0.0.5", "", "10.0.0.5"),
])
def test_client_address_reads_the_header_right_to_left_through_trusted_proxies(settings, remote, forwarded,
                                                                               client):
    settings.TRUSTED_PROXIES = networks("10.0.0.0/24")
    request = RequestFactory().get("/", REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=forwarded)
    assert client_address(request) == client


def test_a_hop_count_in_trusted_proxies_fails_loudly_and_says_what_to_set(tmp_path):
    result = start({**SAFE, "PRODUCTION": "0", "TRUSTED_PROXIES": "1"}, tmp_path)
    assert result.returncode != 0
    assert "TRUSTED_PROXIES names the proxies" in result.stderr and "not a hop count" in result.stderr


def test_the_signup_page_has_the_apis_registration_limit_in_the_same_bucket(purposes):
    # Given 19 registrations through the API from one address
    api = APIClient(REMOTE_ADDR="192.0.2.60")
    assert {register(api, n) for n in range(LIMIT - 1)} == {201}
    browser = Client(REMOTE_ADDR="192.0.2.60")
    form = {"username": "pagefirst", "password": PASSWORD}
    # Then the page allows the 20th and refuses the 21st, with Retry-After and a sentence saying when
    assert browser.post("/signup", form).status_code == 302
    refused = Client(REMOTE_ADDR="192.0.2.60").post("/signup", {**form, "username": "pagesecond"})
    assert refused.status_code == 429
    wait = int(refused["Retry-After"])
    assert 0 < wait <= 60
    assert f"Try again in {wait} seconds" in refused.content.decode()
    # And it is per address: another one still signs up
    elsewhere = Client(REMOTE_ADDR="192.0.2.61").post("/signup", {**form, "username": "elsewhere"})
    assert elsewhere.status_code == 302


def test_the_signup_page_alone_is_limited_and_failed_tries_count(purposes):
    # "taken" answers count too: the page no longer enumerates names without limit
    codes = [Client(REMOTE_ADDR="192.0.2.62").post("/signup", {"username": "admin", "password": PASSWORD})
             .status_code for _ in range(LIMIT + 2)]
    assert codes[0] == 302 and set(codes[1:LIMIT]) == {400}
    assert set(codes[LIMIT:]) == {429}
