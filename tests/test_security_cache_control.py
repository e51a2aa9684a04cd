"""Issues 19.12 and 18.3: no page or API answer with personal data may be kept by a browser or a proxy.

The Back button had shown a deleted photo and its results from the browser's cache: nothing sent
Cache-Control. Every dynamic response now carries `no-store` (webplatform/nostore.py).
"""

from __future__ import annotations

import pytest
from django.test import Client

from .images import image_bytes
from .support import named

OWNER_PAGES = ["/", "/consents", "/privacy", "/training-photo", "/account/erase", "/photos/{photo}",
               "/photos/{photo}/thumb", "/photos/{photo}/delete"]
OWNER_API = ["/api/v1/me/consents", "/api/v1/me/consents/history", "/api/v1/me/privacy",
             "/api/v1/me/training-photo", "/api/v1/me/export", "/api/v1/photos", "/api/v1/photos/{photo}",
             "/api/v1/photos/{photo}/content"]
OFFICER_PAGES = ["/officer/", "/officer/audit", "/officer/runs"]
OFFICER_API = ["/api/v1/audit/events", "/api/v1/compliance/report", "/api/v1/training-runs"]


def no_store(response) -> bool:
    return "no-store" in response.get("Cache-Control", "")


@pytest.fixture
def photo(owner) -> str:
    response = owner.client.post("/api/v1/photos", {"file": named(image_bytes(), "selfie.jpg")},
                                 format="multipart")
    assert response.status_code == 201
    return response.json()["id"]


def test_every_private_page_and_me_answer_is_no_store(owner, photo):
    browser = Client()
    browser.force_login(owner.user)
    for url in [u.format(photo=photo) for u in OWNER_PAGES]:
        response = browser.get(url)
        assert response.status_code in (200, 405), (url, response.status_code)
        assert no_store(response), url
    for url in [u.format(photo=photo) for u in OWNER_API]:
        response = owner.client.get(url)
        assert response.status_code == 200, (url, response.status_code)
        assert no_store(response), url


def test_every_officer_page_and_answer_is_no_store(officer):
    browser = Client()
    browser.force_login(officer.user)
    for url in OFFICER_PAGES:
        assert no_store(browser.get(url)), url
    for url in OFFICER_API:
        assert no_store(officer.client.get(url)), url


def test_error_answers_are_no_store_too(owner):
    assert no_store(owner.client.get("/api/v1/photos/00000000-0000-4000-8000-000000000000"))
    assert no_store(Client().get("/photos/00000000-0000-4000-8000-000000000000"))  # the sign-in redirect


def test_static_files_keep_their_own_caching(client):
    response = client.get("/static/timeveil/app.css")
    assert response.status_code == 200 and not no_store(response)
