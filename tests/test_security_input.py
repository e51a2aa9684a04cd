"""Issue 12, findings 3 and 4 and the schema drift: client input gets a 4xx in API.md's shape, never a 500."""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from governance.consent import PROCESSING
from governance.models import AuditEvent, ConsentRecord
from webplatform.api.parsers import json_depth_exceeds
from webplatform.photos.models import Photo

from .images import image_bytes
from .support import assert_error, named

HUGE = str(2**63)


def nested(depth: int) -> str:
    """A JSON array nested `depth` levels deep."""
    return "[" * depth + "]" * depth


# --- pagination ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("params", [
    {"limit": HUGE}, {"limit": str(2**64 + 1)}, {"offset": HUGE}, {"limit": "-1"}, {"limit": "0"},
    {"limit": "1001"}, {"limit": "ten"}, {"offset": "-5"}, {"offset": "1e3"}, {"limit": " 5"},
])
@pytest.mark.parametrize("path,who", [("/api/v1/photos", "owner"), ("/api/v1/audit/events", "officer")])
def test_bad_or_huge_limit_and_offset_are_400_not_500(owner, officer, path, who, params):
    actor = {"owner": owner, "officer": officer}[who]
    error = assert_error(actor.client.get(path, params), 400, "invalid")
    assert set(error["details"]) == set(params)


def test_limit_and_offset_within_bounds_page_as_before(owner, officer):
    for _ in range(3):
        assert owner.client.post("/api/v1/photos", {"file": named(image_bytes(), "a.jpg")},
                                 format="multipart").status_code == 201
    page = owner.client.get("/api/v1/photos", {"limit": 2, "offset": 1}).json()
    assert page["count"] == 3 and len(page["results"]) == 2
    assert owner.client.get("/api/v1/photos", {"limit": 1000, "offset": 10**9}).json()["results"] == []


def test_the_schema_states_the_bounds(anon, db):
    schema = anon.client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    params = {p["name"]: p["schema"] for p in schema["paths"]["/api/v1/photos"]["get"]["parameters"]}
    assert (params["limit"]["minimum"], params["limit"]["maximum"]) == (1, 1000)
    assert params["offset"]["minimum"] == 0
    assert "429" in schema["paths"]["/api/v1/erasures/{receipt}"]["get"]["responses"]


# --- JSON depth and size ---------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [65, 950, 100_000])
def test_deep_json_is_400_on_anonymous_register(anon, db, depth):
    body = '{"username": "deep", "password": "a-Long-passphrase-42", "x": ' + nested(depth - 1) + "}"
    response = anon.client.post("/api/v1/auth/register", body, content_type="application/json")
    error = assert_error(response, 400, "too_deep")
    assert error["details"] == {"max_depth": 64}


def test_deep_json_is_400_on_an_authenticated_endpoint(owner):
    body = '{"granted": true, "policy_version": 1, "x": ' + nested(950) + "}"
    assert_error(owner.client.put("/api/v1/me/consents/training", body, content_type="application/json"),
                 400, "too_deep")


def test_json_at_the_depth_limit_is_parsed(owner):
    body = '{"granted": true, "policy_version": 1, "x": ' + nested(63) + "}"
    assert (
        owner.client.put("/api/v1/me/consents/training", body, content_type="application/json").status_code
        == 200
    )


def test_depth_is_counted_over_objects_and_arrays():
    assert not json_depth_exceeds({"a": [{"b": [1]}]}, 4)
    assert json_depth_exceeds({"a": [{"b": [1]}]}, 3)
    assert not json_depth_exceeds("scalar", 0)


@pytest.mark.parametrize("who", ["anon", "owner"])
def test_json_over_one_mib_is_413_in_the_error_shape(anon, owner, who):
    actor = {"anon": anon, "owner": owner}[who]
    body = json.dumps({"username": "big", "password": "a-Long-passphrase-42", "pad": "x" * (1024 * 1024)})
    path = "/api/v1/auth/register" if who == "anon" else "/api/v1/me/consents/training"
    method = actor.client.post if who == "anon" else actor.client.put
    error = assert_error(method(path, body, content_type="application/json"), 413, "too_large")
    assert error["details"] == {"max_bytes": 1024 * 1024}


def test_a_form_field_over_the_memory_cap_is_413(owner):
    response = owner.client.put("/api/v1/me/consents/training", {"granted": "t" * (1024 * 1024 + 10)},
                                format="multipart")
    assert_error(response, 413, "too_large")


# --- consent needs an explicit `granted` on every parser -------------------------------------------------


@pytest.fixture
def consenting_owner(owner):
    photo = owner.client.post("/api/v1/photos", {"file": named(image_bytes(), "a.jpg")}, format="multipart")
    assert photo.status_code == 201
    return owner


def _state(owner) -> tuple[int, int, int]:
    return (
        ConsentRecord.objects.filter(user_id=owner.pk).count(),
        Photo.objects.filter(owner_id=owner.pk).count(),
        AuditEvent.objects.count(),
    )


@pytest.mark.parametrize("body,fmt", [
    ({}, "multipart"), ({"policy_version": "1"}, "multipart"), ({"granted": ""}, "multipart"),
    ({"granted": "0"}, "multipart"), ({"granted": "no"}, "multipart"), ({"granted": "False"}, "multipart"),
    ({}, "json"), ({"granted": 0}, "json"), ({"granted": "false"}, "json"), ({"granted": None}, "json"),
])
def test_withdrawing_processing_needs_an_explicit_granted_false(consenting_owner, body, fmt):
    # Given an owner with processing consent and a photo (withdrawal would delete it)
    before = _state(consenting_owner)
    # When the body lacks an explicit boolean
    response = consenting_owner.client.put(f"/api/v1/me/consents/{PROCESSING}", body, format=fmt)
    # Then it is refused, and consent, photos and the audit trail are as they were
    if fmt == "json" and body.get("granted") == "false":
        assert response.status_code == 200  # JSON may spell it as the form does; explicit either way
        return
    error = assert_error(response, 400, "invalid")
    assert "granted" in error["details"]
    assert _state(consenting_owner) == before


def test_an_explicit_false_in_a_form_withdraws(consenting_owner):
    response = consenting_owner.client.put(f"/api/v1/me/consents/{PROCESSING}", {"granted": "false"},
                                           format="multipart")
    assert response.status_code == 200 and response.json()["state"] == "withdrawn"


def test_an_explicit_true_in_a_form_grants(owner):
    response = owner.client.put("/api/v1/me/consents/training", {"granted": "true", "policy_version": "1"},
                                format="multipart")
    assert response.status_code == 200 and response.json()["state"] == "granted"


# --- audit filters take RFC 3339 date-times, as documented -----------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "2030-06-01T12:00:00Z",
        "2030-06-01t12:00:00z",
        "2030-06-01T12:00:00.123456789Z",
        "2030-06-01T14:00:00+02:00",
        "2016-12-31T23:59:60Z",
    ],
)
def test_rfc3339_date_times_are_accepted(officer, value):
    assert officer.client.get("/api/v1/audit/events", {"since": value}).status_code == 200


@pytest.mark.parametrize(
    "value",
    [
        "2030-06-01",
        "2030-06-01T12:00",
        "2030-06-01T12:00:00",
        "2030-06-31T00:00:00Z",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
        "yesterday",
    ],
)
def test_other_date_times_are_400(officer, value):
    error = assert_error(officer.client.get("/api/v1/audit/events", {"until": value}), 400, "invalid")
    assert set(error["details"]) == {"until"}


def test_a_leap_second_reads_as_the_instant_before_the_next_second(officer):
    a = officer.client.get("/api/v1/audit/events", {"since": "2016-12-31T23:59:60Z"})
    assert a.status_code == 200


def test_unsupported_form_encoding_is_415_not_a_silent_withdrawal(consenting_owner):
    before = _state(consenting_owner)
    client = APIClient(HTTP_AUTHORIZATION=f"Token {consenting_owner.token}")
    path = f"/api/v1/me/consents/{PROCESSING}"
    assert_error(
        client.generic("PUT", path, "granted=", content_type="application/x-www-form-urlencoded"), 415
    )
    # An empty form body parses as an empty form: still no `granted`, still refused
    assert_error(
        client.generic("PUT", path, "", content_type="application/x-www-form-urlencoded"), 400, "invalid"
    )
    assert _state(consenting_owner) == before
