"""Issue 19.11: every date bound a client can send is a 400 when out of range, never a 500."""

from __future__ import annotations

import pytest
from django.test import Client


@pytest.fixture
def officer_browser(officer) -> Client:
    browser = Client()
    browser.force_login(officer.user)
    return browser


@pytest.mark.parametrize("query", ["until=9999-12-31", "until=10000-01-01", "since=0000-12-31",
                                   "until=garbage", "since=2030-02-30"])
def test_an_out_of_range_day_on_the_audit_page_is_a_400_page(officer_browser, query):
    response = officer_browser.get(f"/officer/audit?{query}")
    assert response.status_code == 400
    assert 'class="errorlist' in response.content.decode()


@pytest.mark.parametrize("query", ["since=0001-01-01", "until=9999-12-30", "since=9999-12-31"])
def test_the_extreme_days_that_exist_are_fine_on_the_audit_page(officer_browser, query):
    assert officer_browser.get(f"/officer/audit?{query}").status_code == 200


@pytest.mark.parametrize("query", ["until=9999-12-31T23:59:59-01:00", "since=0001-01-01T00:00:00+01:00",
                                   "until=10000-01-01T00:00:00Z", "since=2030-02-30T00:00:00Z"])
@pytest.mark.parametrize("fmt", ["", "&format=csv"])
def test_an_out_of_range_date_time_in_the_api_filters_is_a_400(officer, query, fmt):
    response = officer.client.get(f"/api/v1/audit/events?{query}{fmt}")
    assert response.status_code == 400


@pytest.mark.parametrize("query", ["until=9999-12-31T23:59:59Z", "since=0001-01-01T00:00:00Z"])
def test_the_extreme_date_times_that_exist_are_fine_in_the_api(officer, query):
    assert officer.client.get(f"/api/v1/audit/events?{query}").status_code == 200
