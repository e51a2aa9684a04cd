"""A database that cannot be reached: 503 with Retry-After on the API and the pages, never a 500.

Every query of the request's connection fails the way a cut link fails (psycopg's OperationalError, as
Django wraps it), through Django's own `execute_wrapper` hook; the real cut, PostgreSQL behind a TCP
proxy, is tests/integration/test_outages.py.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.db import IntegrityError, OperationalError, connection
from django.test import Client, RequestFactory

from webplatform.api import errors as api_errors
from webplatform.pages import errors as page_errors

from .support import assert_error


@contextmanager
def database_cut() -> Iterator[None]:
    def refuse(execute, sql, params, many, context):
        raise OperationalError("server closed the connection unexpectedly")

    with connection.execute_wrapper(refuse):
        yield


def assert_retry_after(response) -> None:
    assert int(response["Retry-After"]) == 5


def test_the_api_answers_503_database_unavailable_with_retry_after(owner):
    with database_cut():
        response = owner.client.get("/api/v1/photos")
    assert_error(response, 503, "database_unavailable")
    assert_retry_after(response)


def test_an_upload_while_the_database_is_down_is_a_503_not_a_500(owner, upload):
    with database_cut():
        response = upload()
    assert_error(response, 503, "database_unavailable")


def test_a_page_answers_a_503_page_with_retry_after(owner):
    browser = Client()
    browser.force_login(owner.user)
    with database_cut():
        response = browser.get("/photos/00000000-0000-0000-0000-000000000000")
    assert response.status_code == 503
    assert response["Content-Type"].startswith("text/html")
    assert "briefly unavailable" in response.content.decode()
    assert_retry_after(response)


def test_an_error_outside_any_view_is_a_503_too():
    # Given the database failing in middleware (the session saved after the view), which Django hands to
    # handler500 from inside its `except` block
    request = RequestFactory().get("/consents")
    try:
        raise OperationalError("connection refused")
    except OperationalError:
        page = page_errors.server_error(request)
        api = api_errors.server_error(request)
    assert page.status_code == 503 and api.status_code == 503
    assert_retry_after(page)
    assert_retry_after(api)


def test_a_bug_in_a_query_stays_a_500():
    request = RequestFactory().get("/api/v1/photos")
    try:
        raise IntegrityError("duplicate key")
    except IntegrityError:
        assert sys.exc_info()[0] is IntegrityError
        assert api_errors.server_error(request).status_code == 500


@pytest.mark.parametrize("error", [OperationalError, IntegrityError])
def test_only_connection_faults_map_to_database_unavailable(error):
    known = api_errors.as_timeveil_error(error("x"))
    assert (known is not None) == (error is OperationalError)
