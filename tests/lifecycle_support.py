"""Helpers for the lifecycle tests: a movable clock, objects stored with real ciphertext, storage faults."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.storage import Storage
from django.utils import timezone

import governance.clock
import webplatform.encrypted_store
from governance.models import AuditEvent
from webplatform.encrypted_store import object_put
from webplatform.jobs.models import JobStatus, TransformationJob, TransformationResult
from webplatform.photos.models import Photo

from .images import image_bytes
from .support import storage_files


class Clock:
    """governance.clock.now frozen at a moment the test moves forward (never sleeps)."""

    def __init__(self, monkeypatch, start: datetime | None = None) -> None:
        self.now = start or timezone.now()
        self.start = self.now
        monkeypatch.setattr(governance.clock, "now", lambda: self.now)

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now

    def to(self, moment: datetime) -> datetime:
        self.now = moment
        return self.now


def photo_make(*, owner_id: int, created_at: datetime | None = None, plaintext: bytes | None = None,
               kept_for_training: bool = False) -> Photo:
    """A Photo row with real ciphertext, bypassing intake (fast, for bulk set-ups)."""
    created = created_at or governance.clock.now()
    photo_id = uuid.uuid4()
    data = plaintext if plaintext is not None else image_bytes()
    name, size = object_put(owner_id=owner_id, kind="photo", object_id=photo_id, plaintext=data)
    keep = settings.RETENTION_TRAINING if kept_for_training else settings.RETENTION_ORIGINAL
    return Photo.objects.create(
        id=photo_id, owner_id=owner_id, created_at=created, expires_at=created + keep, width=64, height=48,
        content_type="image/jpeg", size_bytes=size, storage_name=name, kept_for_training=kept_for_training,
    )


def job_make(*, owner_id: int, photo_id: object, status: str = JobStatus.QUEUED, target_age: int = 70,
             created_at: datetime | None = None) -> TransformationJob:
    return TransformationJob.objects.create(owner_id=owner_id, photo_id=photo_id, target_age=target_age,
                                            status=status, created_at=created_at or governance.clock.now())


def result_make(*, owner_id: int, photo_id: object, created_at: datetime | None = None,
                plaintext: bytes | None = None) -> TransformationResult:
    """A done job and its result, the result's ciphertext really stored (the worker lands with issue 4)."""
    created = created_at or governance.clock.now()
    job = job_make(owner_id=owner_id, photo_id=photo_id, status=JobStatus.DONE, created_at=created)
    result_id = uuid.uuid4()
    data = plaintext if plaintext is not None else image_bytes(color=(20, 200, 40))
    name, size = object_put(owner_id=owner_id, kind="result", object_id=result_id, plaintext=data)
    return TransformationResult.objects.create(
        id=result_id, owner_id=owner_id, job=job, photo_id=photo_id, created_at=created,
        expires_at=created + settings.RETENTION_RESULT, width=64, height=48, content_type="image/jpeg",
        size_bytes=size, storage_name=name,
    )


def storage_path(name: str) -> Path:
    return Path(settings.STORAGES["objects"]["OPTIONS"]["location"]) / name


def storage_clear() -> None:
    """Empty the object store: ciphertext of earlier tests (whose rows rolled back) would confuse scans."""
    for path in storage_files():
        path.unlink()


def orphan_files() -> set[Path]:
    """Ciphertext files that no Photo or TransformationResult row points at (lost to every later purge)."""
    referenced = {storage_path(n) for n in Photo.objects.values_list("storage_name", flat=True)}
    referenced |= {
        storage_path(n) for n in TransformationResult.objects.values_list("storage_name", flat=True)
    }
    return set(storage_files()) - referenced


def refs(action: str) -> list[str]:
    """object_ref of every audit event with this action, in chain order."""
    return list(AuditEvent.objects.filter(action=action).order_by("seq").values_list("object_ref", flat=True))


class FaultyStorage:
    """Wraps the object store; delete() raises for the names in `broken` and counts every call; with
    `unreadable` set, every open() fails as a store that does not answer would."""

    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.broken: set[str] = set()
        self.unreadable = False
        self.deletes: dict[str, int] = {}
        self._lock = threading.Lock()
        self.before_delete: Callable[[str], None] | None = None  # e.g. a barrier for the concurrency test

    def delete(self, name: str) -> None:
        if self.before_delete is not None:
            self.before_delete(name)
        with self._lock:
            self.deletes[name] = self.deletes.get(name, 0) + 1
        if name in self.broken:
            raise OSError(f"storage unavailable for {name}")
        self.inner.delete(name)

    def open(self, name: str, mode: str = "rb") -> Any:
        if self.unreadable:
            raise OSError(f"storage unavailable for {name}")
        return self.inner.open(name, mode)

    def __getattr__(self, attr: str) -> Any:  # save, exists, ... go to the real store
        return getattr(self.inner, attr)


def faulty_storage(monkeypatch) -> FaultyStorage:
    """Put a FaultyStorage behind webplatform.encrypted_store.object_storage (the storage seam)."""
    storage = FaultyStorage(webplatform.encrypted_store.object_storage())
    monkeypatch.setattr(webplatform.encrypted_store, "object_storage", lambda: storage)
    return storage


def training_photo_choose_api(actor, photo: Photo) -> Photo:
    """The owner chooses this photo for training through the API (PUT /me/training-photo).

    The test images are noise, so intake counts no face and the photo is never offered; the face count is
    set to one on the row here (detection is tested in tests/inference and by the browser tests' portraits).
    """
    Photo.objects.filter(pk=photo.pk).update(face_count=1)
    response = actor.client.put("/api/v1/me/training-photo", {"photo_id": str(photo.pk)}, format="json")
    assert response.status_code == 200, response.content
    photo.refresh_from_db()
    return photo
