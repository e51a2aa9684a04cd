"""Test helpers shared by several modules: actors, upload files, the error shape, snapshots, byte windows."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from governance.models import AuditEvent
from webplatform.photos.models import Photo


@dataclass
class Actor:
    """A user with an authenticated API client (None user = anonymous)."""

    user: object
    client: APIClient
    token: str | None = None

    @property
    def pk(self) -> int:
        return self.user.pk  # type: ignore[attr-defined]


def named(data: bytes, name: str) -> io.BytesIO:
    """Bytes as an upload file object with a filename (what a multipart form sends)."""
    buffer = io.BytesIO(data)
    buffer.name = name
    return buffer


def storage_files() -> list[Path]:
    """Every file under the filesystem object store."""
    root = Path(settings.STORAGES["objects"]["OPTIONS"]["location"])
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def assert_error(response, status: int, code: str | None = None) -> dict:
    """The response is API.md's JSON error with this status (and code); returns the error object."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "details"}, error
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], dict)
    if code is not None:
        assert error["code"] == code, error
    return error


def var_files() -> set[Path]:
    """Every file under TIMEVEIL_VAR_DIR (database, keyring, objects, anything else written there) but the
    embedded cache's own files under var/cache/, which every request's rate-limit count rewrites."""
    cache = Path(settings.VAR_DIR) / "cache"
    return {p for p in Path(settings.VAR_DIR).rglob("*") if p.is_file() and cache not in p.parents}


@dataclass(frozen=True)
class State:
    """What a request could leave behind: photo rows, ciphertext objects, audit events, files under var/."""

    photos: int
    objects: frozenset[Path]
    audit_seqs: tuple[int, ...]
    var: frozenset[Path]

    @classmethod
    def take(cls) -> State:
        return cls(
            photos=Photo.objects.count(),
            objects=frozenset(storage_files()),
            audit_seqs=tuple(AuditEvent.objects.order_by("seq").values_list("seq", flat=True)),
            var=frozenset(var_files()),
        )


def assert_nothing_left_behind(before: State) -> None:
    """Invariant 8: a refused request added no row, no stored object, no audit event, no file."""
    after = State.take()
    assert after.photos == before.photos, "a refused upload left a Photo row"
    assert after.objects == before.objects, f"a refused upload left objects: {after.objects - before.objects}"
    assert after.audit_seqs == before.audit_seqs, "a refused upload appended an audit event"
    assert after.var == before.var, f"a refused upload left files: {after.var - before.var}"


def windows(data: bytes, count: int = 6, size: int = 32) -> list[bytes]:
    """`count` distinctive `size`-byte slices spread over `data` (skipping the format header)."""
    assert len(data) >= 4 * size, "too small to take windows from"
    start, stop = min(len(data) // 8, 256), len(data) - size
    step = max(1, (stop - start) // count)
    picked = [data[i : i + size] for i in range(start, stop, step)][:count]
    # A window of one repeated byte would match padding anywhere: only keep varied ones.
    varied = [w for w in picked if len(set(w)) > 8]
    assert len(varied) >= 3, "the test image is not distinctive enough"
    return varied


def walk_files(root: str | os.PathLike) -> set[Path]:
    """Every readable file under root (for before/after comparisons of temp dirs)."""
    found: set[Path] = set()
    for dirpath, _dirnames, filenames in os.walk(root, onerror=lambda _e: None):
        for name in filenames:
            path = Path(dirpath) / name
            if path.is_file() and not path.is_symlink():
                found.add(path)
    return found


@dataclass(frozen=True)
class Route:
    """One URL pattern the project serves: its full Django route, name and HTTP methods."""

    route: str
    name: str
    methods: frozenset[str]

    @property
    def openapi_path(self) -> str:
        """`api/v1/photos/<uuid:photo_id>` -> `/api/v1/photos/{photo_id}`."""
        import re

        return "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", self.route)


def routes_under(prefix: str) -> list[Route]:
    """Every URL pattern whose full route starts with `prefix`, walking includes."""
    found: list[Route] = []

    def walk(patterns, base: str) -> None:
        for pattern in patterns:
            route = base + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, route)
            elif isinstance(pattern, URLPattern) and route.startswith(prefix):
                view = pattern.callback.view_class
                methods = {m.upper() for m in view.http_method_names if hasattr(view, m)} - {
                    "OPTIONS",
                    "HEAD",
                }
                found.append(Route(route=route, name=pattern.name or "", methods=frozenset(methods)))

    walk(get_resolver().url_patterns, "")
    return found
