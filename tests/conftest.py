"""Shared fixtures: seeded purposes, users by role with API clients, image factories."""

from __future__ import annotations

import os
from collections.abc import Callable

import hypothesis
import pytest
from django.conf import settings
from django.contrib.auth.models import Group
from rest_framework.test import APIClient

from governance.consent import PROCESSING, TRAINING, consent_set, policy_publish
from webplatform.accounts.services import user_register

from .images import image_bytes
from .lifecycle_support import Clock, storage_clear
from .support import Actor, named

# Under CI the property tests draw the same examples every run (derandomize), so a green run stays green;
# locally they explore afresh each time and a failure prints the example to pin down.
hypothesis.settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    hypothesis.settings.load_profile("ci")


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Throttle counters live in the cache: without this, the suite's own logins would throttle each other."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def _own_audit_checkpoints(settings, tmp_path):
    """Audit checkpoints live outside the database: one folder per test, as its rows roll back."""
    settings.AUDIT_CHECKPOINT_DIR = tmp_path / "audit-checkpoints"


@pytest.fixture
def clock(monkeypatch):
    """governance.clock frozen at now; tests move it forward instead of sleeping."""
    return Clock(monkeypatch)


@pytest.fixture
def empty_storage() -> None:
    """Start with no ciphertext in the object store (tests that count or scan files)."""
    storage_clear()


@pytest.fixture
def trainer(make_actor) -> Actor:
    """An owner who also consents to training: their newest photo is kept for RETENTION_TRAINING."""
    return make_actor("trainer", consents=(PROCESSING, TRAINING))


@pytest.fixture
def purposes(db):
    """Purposes `processing` and `training` at policy version 1, and the compliance group."""
    policy_publish(purpose_slug=PROCESSING, text="Processing policy v1")
    policy_publish(purpose_slug=TRAINING, text="Training policy v1")
    Group.objects.get_or_create(name=settings.COMPLIANCE_GROUP)


@pytest.fixture
def make_actor(purposes) -> Callable[..., Actor]:
    """Factory: make_actor('alice', consents=('processing',), compliance=False, staff=False)."""
    counter = iter(range(10_000))

    def make(name: str | None = None, *, consents: tuple[str, ...] = (PROCESSING,), compliance: bool = False,
             staff: bool = False) -> Actor:
        username = name or f"user{next(counter)}"
        user, token = user_register(
            username=username, password="a-Long-passphrase-42", email=f"{username}@example.com"
        )
        for purpose in consents:
            consent_set(user_id=user.pk, purpose_slug=purpose, granted=True, policy_version=1)
        if compliance:
            user.groups.add(Group.objects.get(name=settings.COMPLIANCE_GROUP))
        if staff:
            user.is_staff = True
            user.save(update_fields=["is_staff"])
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        return Actor(user=user, client=client, token=token)

    return make


@pytest.fixture
def owner(make_actor) -> Actor:
    return make_actor("owner")


@pytest.fixture
def other(make_actor) -> Actor:
    return make_actor("other")


@pytest.fixture
def officer(make_actor) -> Actor:
    return make_actor("officer", consents=(), compliance=True)


@pytest.fixture
def staff(make_actor) -> Actor:
    return make_actor("staffer", consents=(), staff=True)


@pytest.fixture
def anon() -> Actor:
    return Actor(user=None, client=APIClient())


@pytest.fixture
def upload(owner) -> Callable[..., dict]:
    """Upload bytes as `owner` (or another actor) and return the response."""

    def do(data: bytes | None = None, *, actor: Actor | None = None, name: str = "selfie.jpg"):
        payload = data if data is not None else image_bytes()
        return (actor or owner).client.post(
            "/api/v1/photos", {"file": named(payload, name)}, format="multipart"
        )

    return do
