"""Invariant 2: the authorisation matrix, every /api/v1 endpoint x anonymous, owner, other, officer, staff."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from functools import cached_property

import pytest

from governance.erasure_requests import erasure_accept
from webplatform.photos.models import Photo

from .images import face_jpeg, image_bytes
from .support import Actor, assert_error, named, routes_under

ROLES = ("anon", "owner", "other", "officer", "staff")
PASSWORD = "a-Long-passphrase-42"  # the make_actor fixture's
_names = itertools.count()


class World:
    """The roles, one photo of `owner`, a queued job on it and an erasure receipt, each made on first use.

    Lazy, so a matrix cell builds only what its request touches (the suite stays fast).
    """

    def __init__(self, make_actor, anon: Actor) -> None:
        self._make = {"owner": lambda: make_actor("owner"), "other": lambda: make_actor("other"),
                      "officer": lambda: make_actor("officer", consents=(), compliance=True),
                      "staff": lambda: make_actor("staffer", consents=(), staff=True)}
        self.actors: dict[str, Actor] = {"anon": anon}
        self._make_actor = make_actor

    def actor(self, role: str) -> Actor:
        if role not in self.actors:
            self.actors[role] = self._make[role]()
        return self.actors[role]

    @cached_property
    def photo_id(self) -> str:
        # A photo with a face: without one, asking for a transformation is refused (422 no_face) for everyone.
        response = self.actor("owner").client.post("/api/v1/photos", {"file": named(face_jpeg(), "a.jpg")},
                                                   format="multipart")
        assert response.status_code == 201, response.content
        return response.json()["id"]

    @cached_property
    def photo_expires_at(self):
        return Photo.objects.get(pk=self.photo_id).expires_at

    @cached_property
    def job_id(self) -> str:
        response = self.actor("owner").client.post(f"/api/v1/photos/{self.photo_id}/transformations",
                                                   {"target_age": 70}, format="json")
        assert response.status_code == 202, response.content
        return response.json()["id"]

    @cached_property
    def receipt(self) -> str:
        _, receipt = erasure_accept(user_id=self._make_actor("leaver").pk)
        return receipt


@pytest.fixture
def world(make_actor, anon) -> World:
    return World(make_actor, anon)


def _register(w: World, a: Actor):
    return a.client.post(
        "/api/v1/auth/register", {"username": f"newcomer{next(_names)}", "password": PASSWORD}
    )


def _token(w: World, a: Actor):
    username = a.user.username if a.user else w.actor("owner").user.username
    return a.client.post("/api/v1/auth/token", {"username": username, "password": PASSWORD})


def _upload(w: World, a: Actor):
    return a.client.post("/api/v1/photos", {"file": named(image_bytes(), "b.jpg")}, format="multipart")


# (url name, method) -> (request, {role: expected status}); the owner is the owner of w.photo_id.
ANYONE = dict.fromkeys(ROLES, 200)
USERS = {"anon": 401, "owner": 200, "other": 200, "officer": 200, "staff": 200}
OWNER_ONLY = {"anon": 401, "owner": 200, "other": 404, "officer": 404, "staff": 404}
COMPLIANCE = {"anon": 401, "owner": 403, "other": 403, "officer": 200, "staff": 403}
Request = Callable[[World, Actor], object]
MATRIX: dict[tuple[str, str], tuple[Request, dict[str, int]]] = {
    ("register", "POST"): (_register, dict.fromkeys(ROLES, 201)),
    ("token", "POST"): (_token, ANYONE),
    ("revoke-all", "POST"): (lambda w, a: a.client.post("/api/v1/auth/revoke"), USERS),
    ("purposes", "GET"): (lambda w, a: a.client.get("/api/v1/purposes"), ANYONE),
    ("erasure-status", "GET"): (lambda w, a: a.client.get(f"/api/v1/erasures/{w.receipt}"), ANYONE),
    ("me", "DELETE"): (
        lambda w, a: a.client.delete("/api/v1/me"),
        {**USERS, **dict.fromkeys(ROLES[1:], 202)},
    ),
    ("export", "GET"): (lambda w, a: a.client.get("/api/v1/me/export"), USERS),
    ("consents", "GET"): (lambda w, a: a.client.get("/api/v1/me/consents"), USERS),
    ("consent-history", "GET"): (lambda w, a: a.client.get("/api/v1/me/consents/history"), USERS),
    ("consent-set", "PUT"): (
        lambda w, a: a.client.put(
            "/api/v1/me/consents/training", {"granted": True, "policy_version": 1}, format="json"
        ),
        USERS,
    ),
    ("photos", "GET"): (lambda w, a: a.client.get("/api/v1/photos"), USERS),
    # Officer and staff hold no processing consent: refused for consent, not for role.
    ("photos", "POST"): (_upload, {"anon": 401, "owner": 201, "other": 201, "officer": 403, "staff": 403}),
    ("photo", "GET"): (lambda w, a: a.client.get(f"/api/v1/photos/{w.photo_id}"), OWNER_ONLY),
    ("photo", "DELETE"): (
        lambda w, a: a.client.delete(f"/api/v1/photos/{w.photo_id}"),
        {**OWNER_ONLY, "owner": 204},
    ),
    ("photo-content", "GET"): (lambda w, a: a.client.get(f"/api/v1/photos/{w.photo_id}/content"), OWNER_ONLY),
    ("transform", "POST"): (
        lambda w, a: a.client.post(
            f"/api/v1/photos/{w.photo_id}/transformations", {"target_age": 70}, format="json"
        ),
        {**OWNER_ONLY, "owner": 202},
    ),
    ("transform", "GET"): (
        lambda w, a: a.client.get(f"/api/v1/photos/{w.photo_id}/transformations"),
        OWNER_ONLY,
    ),
    ("transformation", "GET"): (lambda w, a: a.client.get(f"/api/v1/transformations/{w.job_id}"), OWNER_ONLY),
    # The job is still queued (tasks run on commit, which a test transaction never reaches): the owner
    # passes the access check and hears "no result yet"; everyone else hears "not found".
    ("transformation-content", "GET"): (
        lambda w, a: a.client.get(f"/api/v1/transformations/{w.job_id}/content"),
        {**OWNER_ONLY, "owner": 409},
    ),
    ("privacy", "GET"): (lambda w, a: a.client.get("/api/v1/me/privacy"), USERS),
    ("training-photo", "GET"): (lambda w, a: a.client.get("/api/v1/me/training-photo"), USERS),
    # Ownership is checked before consent: the owner (no training consent) hears 403, everyone else 404.
    ("training-photo", "PUT"): (
        lambda w, a: a.client.put("/api/v1/me/training-photo", {"photo_id": w.photo_id}, format="json"),
        {"anon": 401, "owner": 403, "other": 404, "officer": 404, "staff": 404},
    ),
    ("training-runs", "GET"): (lambda w, a: a.client.get("/api/v1/training-runs"), COMPLIANCE),
    ("models", "GET"): (lambda w, a: a.client.get("/api/v1/models"), COMPLIANCE),
    ("audit-events", "GET"): (lambda w, a: a.client.get("/api/v1/audit/events"), COMPLIANCE),
    ("audit-verify", "GET"): (lambda w, a: a.client.get("/api/v1/audit/verify"), COMPLIANCE),
    ("compliance-report", "GET"): (lambda w, a: a.client.get("/api/v1/compliance/report"), COMPLIANCE),
}
CASES = [(endpoint, role) for endpoint in MATRIX for role in ROLES]


@pytest.mark.parametrize("endpoint,role", CASES, ids=[f"{m} {n} as {r}" for (n, m), r in CASES])
def test_authorisation_matrix(world, endpoint, role):
    request, expected = MATRIX[endpoint]
    actor = world.actor(role)
    if role != "owner":
        world.photo_expires_at  # noqa: B018  (the owner's photo exists before the request)
    response = request(world, actor)
    assert response.status_code == expected[role], (
        response.status_code,
        getattr(response, "content", b"")[:300],
    )
    if response.status_code >= 400:
        assert_error(response, expected[role])
    if role != "owner":
        # Nobody but the owner changed or saw the owner's photo: still there, untouched, never served
        assert Photo.objects.get(pk=world.photo_id).expires_at == world.photo_expires_at
        assert not response.get("Content-Type", "").startswith("image/")


def test_the_matrix_covers_every_api_route_and_method():
    # A new endpoint (or a new method on one) without a row in MATRIX fails here.
    routes = routes_under("api/v1/")
    assert all(r.name for r in routes), [r.route for r in routes if not r.name]
    assert {(r.name, method) for r in routes for method in r.methods} == set(MATRIX)


def test_someone_elses_photo_is_indistinguishable_from_a_missing_one(world):
    owner_photo, missing = world.photo_id, str(uuid.uuid4())
    for role in ("other", "officer", "staff"):
        client = world.actor(role).client
        for suffix, method in (("", "get"), ("/content", "get"), ("", "delete")):
            theirs = getattr(client, method)(f"/api/v1/photos/{owner_photo}{suffix}")
            nothing = getattr(client, method)(f"/api/v1/photos/{missing}{suffix}")
            assert theirs.status_code == nothing.status_code == 404
            assert theirs.json() == nothing.json()
            assert theirs.headers.keys() == nothing.headers.keys()


def test_lists_show_only_the_callers_own_photos(world):
    photo_id = world.photo_id
    assert [p["id"] for p in world.actor("owner").client.get("/api/v1/photos").json()["results"]] == [
        photo_id
    ]
    for role in ("other", "officer", "staff"):
        assert world.actor(role).client.get("/api/v1/photos").json()["count"] == 0


def test_a_superuser_gets_no_one_elses_image_either(world, make_actor):
    root = make_actor("root", consents=(), staff=True)
    root.user.is_superuser = True
    root.user.save(update_fields=["is_superuser"])
    response = root.client.get(f"/api/v1/photos/{world.photo_id}/content")
    assert_error(response, 404, "not_found")
    assert root.client.get("/api/v1/photos").json()["count"] == 0


def test_a_bad_token_is_401_not_anonymous_access(world):
    client = world.actor("anon").client
    client.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)
    assert_error(client.get("/api/v1/photos"), 401, "not_authenticated")
    # a bad credential is never ignored
    assert_error(client.get("/api/v1/purposes"), 401, "not_authenticated")


def test_a_malformed_photo_id_is_404(world):
    owner = world.actor("owner")
    for path in ("/api/v1/photos/not-a-uuid", "/api/v1/photos/not-a-uuid/content", "/api/v1/photos/1"):
        assert_error(owner.client.get(path), 404, "not_found")
