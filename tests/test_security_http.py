"""Issue 12, low findings on HTTP: a CSP the pages pass with no inline script, HTTPS settings, /metrics."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

ROOT = Path(__file__).resolve().parent.parent
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I)
HANDLER_ATTRIBUTE = re.compile(r"<[^>]+\son[a-z]+\s*=", re.I)


def _directives(policy: str) -> dict[str, list[str]]:
    return {d.split()[0]: d.split()[1:] for d in (part.strip() for part in policy.split(";")) if d}


@pytest.mark.parametrize("path", ["/login/", "/api/v1/purposes", "/healthz", "/api/docs/"])
def test_every_response_carries_a_csp_without_inline_script(db, path):
    response = Client().get(path)
    policy = _directives(response["Content-Security-Policy"])
    assert policy["script-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"] and policy["frame-ancestors"] == ["'none'"]
    assert "'unsafe-eval'" not in response["Content-Security-Policy"]


def test_pages_keep_styles_in_files_too(db):
    assert _directives(Client().get("/login/")["Content-Security-Policy"])["style-src"] == ["'self'"]


def test_no_template_has_inline_script_or_event_handlers():
    # Another engineer owns the pages: this guards that they stay loadable under script-src 'self'.
    offenders = []
    for template in (ROOT / "templates").rglob("*.html"):
        text = template.read_text()
        offenders += [f"{template.name}: {m.group(0)}" for m in INLINE_SCRIPT.finditer(text)]
        offenders += [f"{template.name}: {m.group(0)[:60]}" for m in HANDLER_ATTRIBUTE.finditer(text)]
        offenders += [f"{template.name}: javascript: URL" for _ in re.finditer(r"javascript:", text, re.I)]
    assert not offenders, offenders


def test_the_api_docs_page_has_no_inline_script(db):
    response = Client().get("/api/docs/")
    assert response.status_code == 200
    assert not INLINE_SCRIPT.search(response.content.decode())


# --- /metrics is the operator's --------------------------------------------------------------------------


def test_metrics_are_off_without_a_token(anon, db, settings):
    settings.METRICS_TOKEN = ""
    assert anon.client.get("/metrics").status_code == 404
    assert anon.client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 404


def test_metrics_need_the_operator_token(owner, officer, db, settings):
    settings.METRICS_TOKEN = "s3cret-metrics-token"
    assert Client().get("/metrics").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Token s3cret-metrics-token").status_code == 401
    for actor in (owner, officer):  # being signed in is not enough, not even as an officer
        assert actor.client.get("/metrics").status_code == 401
    response = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-metrics-token")
    assert response.status_code == 200 and b"# TYPE" in response.content


# --- HTTPS settings ---------------------------------------------------------------------------------------


def test_check_deploy_has_no_https_warnings_with_https_on(tmp_path):
    env = {**os.environ, "HTTPS": "1", "DEBUG": "0", "SECRET_KEY": secrets.token_urlsafe(50),
           "TIMEVEIL_VAR_DIR": str(tmp_path), "DATABASE_URL": "sqlite:///:memory:",
           "DJANGO_SETTINGS_MODULE": "webplatform.settings"}
    env.pop("PRODUCTION", None)
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    for warning in ("W004", "W008", "W012", "W016", "W009"):  # HSTS, SSL redirect, cookies, SECRET_KEY
        assert f"security.{warning}" not in output, output


def test_https_is_off_by_default_for_the_embedded_mode():
    assert not settings.SECURE_SSL_REDIRECT and settings.SECURE_HSTS_SECONDS == 0


def test_ssl_redirect_spares_the_probes(db, settings):
    settings.SECURE_SSL_REDIRECT = True
    client = Client()  # a new client builds its middleware with the setting on
    assert client.get("/login/").status_code == 301
    assert client.get("/login/")["Location"].startswith("https://")
    assert client.get("/healthz").status_code == 200


def test_no_template_has_inline_styles():
    # style-src 'self' blocks <style> blocks and style= attributes (inline SVG included): styles live in CSS.
    offenders = [f"{t.name}: {m.group(0)[:60]}" for t in (ROOT / "templates").rglob("*.html")
                 for m in re.finditer(r"<style\b|\sstyle\s*=", t.read_text(), re.I)]
    assert not offenders, offenders
