"""`manage.py bootstrap`: idempotent seeding, demo accounts with generated credentials kept 0600."""

from __future__ import annotations

import io
import json
import os
import re
import stat
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from rest_framework.test import APIClient

from governance.consent import PROCESSING, TRAINING, consent_is_active
from governance.models import DataKey, PolicyVersion, Purpose

REPO = Path(__file__).resolve().parent.parent


def bootstrap(*args: str) -> str:
    out = io.StringIO()
    call_command("bootstrap", *(args or ("--demo",)), stdout=out, stderr=io.StringIO())
    return out.getvalue()


def printed_credentials(output: str) -> dict[str, str]:
    return dict(re.findall(r"username=(\S+)\s+password=(\S+)", output))


@pytest.fixture
def var_dir(db, settings, tmp_path) -> Path:
    settings.VAR_DIR = tmp_path
    return tmp_path


def test_bootstrap_twice_seeds_once_and_reuses_credentials(var_dir):
    # Given an empty database; when bootstrap runs twice
    first, second = bootstrap(), bootstrap()

    # Then each purpose exists once, with exactly one policy version (1) whose hash matches its text
    assert set(Purpose.objects.values_list("slug", flat=True)) == {PROCESSING, TRAINING}
    for purpose in Purpose.objects.all():
        [policy] = PolicyVersion.objects.filter(purpose=purpose)
        assert policy.version == 1 and policy.text.strip()
    # And the same two demo accounts are printed both times, from a 0600 file
    credentials = printed_credentials(first)
    assert len(credentials) == 2 and printed_credentials(second) == credentials
    path = var_dir / "demo_credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stored = json.loads(path.read_text())
    assert {c["username"]: c["password"] for c in stored.values()} == credentials
    assert get_user_model().objects.filter(username__in=credentials).count() == 2


def test_demo_accounts_have_their_roles_and_can_sign_in(var_dir):
    bootstrap()
    stored = json.loads((var_dir / "demo_credentials.json").read_text())
    users = {role: get_user_model().objects.get(username=c["username"]) for role, c in stored.items()}
    officer = next(
        u for u in users.values() if u.groups.filter(name=django_settings.COMPLIANCE_GROUP).exists()
    )
    end_user = next(u for u in users.values() if u != officer)
    assert not end_user.groups.exists()
    assert consent_is_active(user_id=end_user.pk, purpose_slug=PROCESSING)
    assert DataKey.objects.filter(user__in=users.values()).count() == 2
    for cred in stored.values():
        token = APIClient().post("/api/v1/auth/token", cred).json()["token"]
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        expected = 200 if cred["username"] == officer.username else 403
        assert client.get("/api/v1/audit/verify").status_code == expected


def test_credentials_are_random_and_not_in_source(var_dir, tmp_path_factory, settings):
    first = printed_credentials(bootstrap())
    # A fresh installation (another var dir, the users gone) gets different credentials
    get_user_model().objects.filter(username__in=first).delete()
    settings.VAR_DIR = tmp_path_factory.mktemp("second-install")
    second = printed_credentials(bootstrap())
    assert set(first).isdisjoint(second) and set(first.values()).isdisjoint(second.values())
    # And no password or username appears anywhere in the repository's Python source
    secrets = list(first) + list(first.values()) + list(second) + list(second.values())
    sources = list(python_sources())
    assert REPO / "webplatform" / "accounts" / "management" / "commands" / "bootstrap.py" in sources
    for source in sources:
        text = source.read_text(errors="replace")
        for secret in secrets:
            assert secret not in text, f"{secret!r} found in {source}"


def python_sources():
    """The repository's own .py files (not the virtualenv, var/ or caches)."""
    for dirpath, dirnames, filenames in os.walk(REPO):
        dirnames[:] = [d for d in dirnames if d not in {".venv", "var", ".git", "node_modules"}
                       and not d.startswith(".")]
        for name in filenames:
            if name.endswith(".py"):
                yield Path(dirpath) / name


def test_missing_credentials_file_regenerates_accounts(var_dir):
    first = printed_credentials(bootstrap())
    (var_dir / "demo_credentials.json").unlink()
    second = printed_credentials(bootstrap())
    assert set(second).isdisjoint(first)
    assert stat.S_IMODE((var_dir / "demo_credentials.json").stat().st_mode) == 0o600


def test_without_demo_bootstrap_seeds_purposes_and_creates_no_account(var_dir):
    output = bootstrap("--no-color")
    assert set(Purpose.objects.values_list("slug", flat=True)) == {PROCESSING, TRAINING}
    assert get_user_model().objects.count() == 0
    assert printed_credentials(output) == {} and not (var_dir / "demo_credentials.json").exists()


def test_demo_accounts_are_refused_in_production_mode(var_dir, settings):
    from django.core.management.base import CommandError

    settings.PRODUCTION = True
    with pytest.raises(CommandError, match="refused in production"):
        bootstrap("--demo")
    assert get_user_model().objects.count() == 0
