"""The contract around the endpoints: OpenAPI schema, probes, metrics, and JSON errors for bad requests."""

from __future__ import annotations

import io

import pytest
import yaml
from django.core.management import call_command

from webplatform import health

from .support import assert_error, routes_under


def test_schema_validates_without_warnings_and_covers_every_route(tmp_path):
    # Given the schema generated from the code, validated, failing on any warning (e.g. colliding names)
    path = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(path), stderr=io.StringIO())
    schema = yaml.safe_load(path.read_text())
    assert schema["openapi"].startswith("3.")
    # Then every /api/v1 route and each of its methods is in it
    routes = routes_under("api/v1/")
    assert routes
    for route in routes:
        assert route.openapi_path in schema["paths"], route.openapi_path
        documented = {m.upper() for m in schema["paths"][route.openapi_path]}
        assert route.methods <= documented, (route.openapi_path, route.methods - documented)


def test_schema_request_bodies_are_distinct_per_operation(tmp_path):
    # Nested `Input` serializers of different views must not collapse into one component.
    path = tmp_path / "schema.yaml"
    call_command("spectacular", "--file", str(path), stderr=io.StringIO())
    paths = yaml.safe_load(path.read_text())["paths"]

    def body_ref(path_: str, method: str) -> str:
        content = paths[path_][method]["requestBody"]["content"]
        return next(iter(content.values()))["schema"]["$ref"]

    refs = [body_ref("/api/v1/auth/register", "post"), body_ref("/api/v1/auth/token", "post"),
            body_ref("/api/v1/me/consents/{purpose}", "put"), body_ref("/api/v1/photos", "post")]
    assert len(set(refs)) == len(refs), refs


def test_schema_and_docs_are_served(anon):
    response = anon.client.get("/api/schema/")
    assert response.status_code == 200
    assert b"openapi: 3" in response.content and b"/api/v1/photos" in response.content
    assert anon.client.get("/api/docs/").status_code == 200


def test_healthz(anon):
    response = anon.client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"ok": True}


def test_readyz_all_ok(anon, db):
    response = anon.client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {
        "ok": True,
        "checks": dict.fromkeys(("database", "storage", "broker", "keyring", "audit_checkpoints"), "ok"),
    }


class _BrokenStorage:
    def save(self, name, content):
        raise OSError("disk on fire")

    def delete(self, name):
        raise OSError("disk on fire")


def test_readyz_503_names_broken_storage(anon, db, monkeypatch):
    monkeypatch.setattr(health, "object_storage", lambda: _BrokenStorage())
    response = anon.client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["ok"] is False
    assert body["checks"]["storage"].startswith("failed")
    assert "disk on fire" not in response.content.decode()  # the probe names the check, not internals
    assert {k: v for k, v in body["checks"].items() if k != "storage"} == dict.fromkeys(
        ("database", "broker", "keyring", "audit_checkpoints"), "ok")


@pytest.mark.parametrize("check", ["database", "broker", "keyring"])
def test_readyz_503_names_any_failing_check(anon, db, monkeypatch, check):
    def broken():
        raise ConnectionError("down")

    monkeypatch.setitem(health.CHECKS, check, broken)
    response = anon.client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"][check] == "failed: ConnectionError"


def test_unknown_api_path_is_json_404(owner):
    for path in ("/api/v1/nope", "/api/v1/photos/extra/segments", "/api/v2/photos"):
        assert_error(owner.client.get(path), 404, "not_found")


def test_wrong_method_is_json_405(owner):
    assert_error(owner.client.delete("/api/v1/purposes"), 405, "method_not_allowed")
    assert_error(owner.client.patch("/api/v1/photos", {}, format="json"), 405, "method_not_allowed")
    assert_error(owner.client.get("/api/v1/auth/token"), 405, "method_not_allowed")


def test_malformed_json_is_400(owner):
    response = owner.client.put("/api/v1/me/consents/training", data=b'{"granted": tru',
                                content_type="application/json")
    assert_error(response, 400, "malformed")


@pytest.mark.parametrize(
    "body",
    [
        b"[]",
        b'"granted"',
        b"null",
        b"123",
        b'{"granted": true, "policy_version": 1e400}',
        b'{"granted": true, "policy_version": 99999999999999999999999}',
    ],
)
def test_odd_json_is_a_4xx_not_a_500(owner, body):
    response = owner.client.put("/api/v1/me/consents/training", data=body, content_type="application/json")
    assert 400 <= response.status_code < 500
    assert_error(response, response.status_code)


def test_unsupported_content_type_is_json_415(owner):
    response = owner.client.put("/api/v1/me/consents/training", data=b"granted=1", content_type="text/plain")
    assert_error(response, 415, "unsupported_media_type")


def test_unauthenticated_is_json_401_with_challenge(anon, db):
    response = anon.client.get("/api/v1/me/consents")
    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"] == "Token"


def test_metrics_expose_prometheus_text(anon, db, settings):
    settings.METRICS_TOKEN = "operator-metrics-token"  # /metrics is the operator's (test_security_http.py)
    anon.client.get("/healthz")
    response = anon.client.get("/metrics", HTTP_AUTHORIZATION="Bearer operator-metrics-token")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    assert "# TYPE" in text and "django_http_requests" in text


def test_metrics_count_uploads_and_refusals(owner, upload, client, settings):
    settings.METRICS_TOKEN = "operator-metrics-token"

    def value(name: str) -> float:
        metrics = client.get("/metrics", HTTP_AUTHORIZATION="Bearer operator-metrics-token")
        for line in metrics.content.decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    accepted, refused = (
        value("timeveil_uploads_total"),
        value('timeveil_uploads_refused_total{code="invalid"}'),
    )
    assert upload().status_code == 201
    assert upload(b"").status_code == 400
    assert value("timeveil_uploads_total") == accepted + 1
    assert value('timeveil_uploads_refused_total{code="invalid"}') == refused + 1


def test_schema_documents_the_422s_a_client_must_handle(tmp_path):
    # Issue 19.14: aging a photo with no face answers 422 no_face; an over-complex JPEG upload 422 too
    path = tmp_path / "schema.yaml"
    call_command("spectacular", "--file", str(path), stderr=io.StringIO())
    paths = yaml.safe_load(path.read_text())["paths"]
    aging = paths["/api/v1/photos/{photo_id}/transformations"]["post"]["responses"]["422"]
    upload = paths["/api/v1/photos"]["post"]["responses"]["422"]
    assert "no_face" in aging["description"] and "image_too_complex" in upload["description"]
    assert aging["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")
