"""Photo writes and the one door to a photo: upload, read content (deletion is lifecycle's: retention now)."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F

from governance import clock
from governance.audit import audit_append
from governance.audit_actions import AuditAction
from governance.consent import PROCESSING, consent_require
from governance.errors import NotFound, TimeveilError
from inference.serving.faces import summarize_faces
from webplatform import metrics
from webplatform.encrypted_store import object_delete, object_get, object_put

from .intake import JpegLimits, sanitize
from .models import Photo


def photo_for_owner(*, user_id: int, photo_id: uuid.UUID | str) -> Photo:
    """The one door to a photo: 404 alike for missing and for someone else's."""
    try:
        # Past its deadline a photo is never served, even before retention has deleted it.
        return Photo.objects.get(pk=photo_id, owner_id=user_id, expires_at__gt=clock.now())
    except (Photo.DoesNotExist, ValueError, TypeError, ValidationError) as exc:  # malformed ids too
        raise NotFound("Photo not found.") from exc


def photo_create(*, owner_id: int, data: bytes) -> Photo:
    """Consent check, sanitise, encrypt, store, record with its retention deadline, audit."""
    try:
        consent_require(user_id=owner_id, purpose_slug=PROCESSING)
        image = sanitize(data, max_bytes=settings.UPLOAD_MAX_BYTES, max_pixels=settings.UPLOAD_MAX_PIXELS,
                         max_side=settings.UPLOAD_MAX_SIDE, jpeg=JpegLimits(
                             max_pixels=settings.UPLOAD_MAX_JPEG_PIXELS,
                             max_scans=settings.UPLOAD_MAX_JPEG_SCANS,
                             max_block_visits=settings.UPLOAD_MAX_JPEG_BLOCK_VISITS))
    except TimeveilError as exc:
        metrics.UPLOADS_REFUSED.labels(exc.code).inc()
        raise
    faces = summarize_faces(image.pixels)
    photo_id = uuid.uuid4()
    name, size = object_put(owner_id=owner_id, kind=Photo.KIND, object_id=photo_id, plaintext=image.data)
    try:
        with transaction.atomic():
            now = clock.now()
            photo = Photo.objects.create(
                id=photo_id, owner_id=owner_id, created_at=now, expires_at=now + settings.RETENTION_ORIGINAL,
                width=image.width, height=image.height, content_type=image.content_type, size_bytes=size,
                storage_name=name, face_count=faces.count,
                face_box=faces.box.to_list() if faces.box else None,
            )
            audit_append(action=AuditAction.PHOTO_UPLOADED, actor_id=owner_id, subject_id=owner_id,
                         object_ref=f"photo:{photo_id}", details={"expires_at": photo.expires_at.isoformat()})
    except BaseException:
        object_delete(name)  # the row never landed: leave no ciphertext behind either
        raise
    metrics.UPLOADS.inc()
    return photo


def photo_content(*, user_id: int, photo: Photo) -> bytes:
    """Decrypt a photo for its owner and audit the read."""
    try:
        data = object_get(
            owner_id=photo.owner_id, kind=Photo.KIND, object_id=photo.id, name=photo.storage_name
        )
    except TimeveilError as exc:  # destroyed key or tampered ciphertext: the attempt itself is worth a record
        audit_append(
            action=AuditAction.PHOTO_CONTENT_READ_FAILED,
            actor_id=user_id,
            subject_id=photo.owner_id,
            object_ref=f"photo:{photo.id}",
            details={"error": exc.code},
        )
        raise
    audit_append(action=AuditAction.PHOTO_CONTENT_READ, actor_id=user_id, subject_id=photo.owner_id,
                 object_ref=f"photo:{photo.id}")
    return bytes(data)


def photo_library_shown(*, user_id: int, photos: list[Photo]) -> int:
    """One audit event for a library page's thumbnails (issue 23: not one per thumbnail); returns its seq,
    which the page's thumbnail grants name (webplatform.pages.thumb_grants)."""
    event = audit_append(action=AuditAction.PHOTO_LIBRARY_SHOWN, actor_id=user_id, subject_id=user_id,
                         object_ref="library", details={"photos": [str(p.id) for p in photos]},
                         chained=True)  # the grants name its seq: chained now, not queued
    return event.seq


def photo_content_unaudited(*, photo: Photo) -> bytes:
    """Decrypt a photo whose read an earlier event already records (a library thumbnail under a grant).
    A failure is still audited: the attempt on a destroyed key or tampered ciphertext is worth a record."""
    try:
        return bytes(object_get(owner_id=photo.owner_id, kind=Photo.KIND, object_id=photo.id,
                                name=photo.storage_name))
    except TimeveilError as exc:
        audit_append(action=AuditAction.PHOTO_CONTENT_READ_FAILED, actor_id=photo.owner_id,
                     subject_id=photo.owner_id, object_ref=f"photo:{photo.id}", details={"error": exc.code})
        raise


def training_photo_designate(*, photo: Photo) -> None:
    """Keep one photo per user for training (RETENTION_TRAINING); an earlier one gets the normal deadline."""
    Photo.objects.filter(owner_id=photo.owner_id, kept_for_training=True).exclude(pk=photo.pk).update(
        kept_for_training=False, expires_at=F("created_at") + settings.RETENTION_ORIGINAL,
    )
    photo.kept_for_training = True
    photo.expires_at = max(photo.expires_at, photo.created_at + settings.RETENTION_TRAINING)
    photo.save(update_fields=["kept_for_training", "expires_at"])
