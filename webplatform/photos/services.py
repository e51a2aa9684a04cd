"""Photo writes and the one door to a photo: upload, read content, delete."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from governance.audit import audit_append
from governance.consent import PROCESSING, consent_require
from governance.errors import NotFound
from webplatform.objects import object_delete, object_get, object_put

from .intake import sanitize
from .models import Photo

KIND = "photo"
clock = timezone.now  # test seam


def photo_for_owner(*, user_id: int, photo_id: uuid.UUID | str) -> Photo:
    """The one door to a photo: 404 alike for missing and for someone else's."""
    try:
        return Photo.objects.get(pk=photo_id, owner_id=user_id)
    except (Photo.DoesNotExist, ValueError, TypeError) as exc:
        raise NotFound("Photo not found.") from exc


def photo_create(*, owner_id: int, data: bytes) -> Photo:
    """Consent check, sanitise, encrypt, store, record with its retention deadline, audit."""
    consent_require(user_id=owner_id, purpose_slug=PROCESSING)
    image = sanitize(data, max_bytes=settings.UPLOAD_MAX_BYTES, max_pixels=settings.UPLOAD_MAX_PIXELS)
    photo_id = uuid.uuid4()
    name, size = object_put(owner_id=owner_id, kind=KIND, object_id=photo_id, plaintext=image.data)
    try:
        with transaction.atomic():
            now = clock()
            photo = Photo.objects.create(
                id=photo_id, owner_id=owner_id, created_at=now, expires_at=now + settings.RETENTION_ORIGINAL,
                width=image.width, height=image.height, content_type=image.content_type, size_bytes=size,
                storage_name=name,
            )
            audit_append(action="photo.uploaded", actor_id=owner_id, subject_id=owner_id,
                         object_ref=f"photo:{photo_id}", details={"expires_at": photo.expires_at.isoformat()})
    except BaseException:
        object_delete(name)  # the row never landed: leave no ciphertext behind either
        raise
    return photo


def photo_content(*, user_id: int, photo: Photo) -> bytes:
    """Decrypt a photo for its owner and audit the read."""
    data = object_get(owner_id=photo.owner_id, kind=KIND, object_id=photo.id, name=photo.storage_name)
    audit_append(action="photo.content_read", actor_id=user_id, subject_id=photo.owner_id,
                 object_ref=f"photo:{photo.id}")
    return bytes(data)


def photo_delete(*, user_id: int, photo: Photo) -> None:
    """Delete the row (and its results) now and the ciphertext once the transaction commits."""
    name = photo.storage_name
    with transaction.atomic():
        audit_append(action="photo.deleted", actor_id=user_id, subject_id=photo.owner_id,
                     object_ref=f"photo:{photo.id}", details={"reason": "owner_request"})
        photo.delete()
        transaction.on_commit(lambda: object_delete(name))
