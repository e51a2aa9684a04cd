"""Photo rows: metadata and where the ciphertext lies; never image bytes."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png"}  # what intake stores (WebP is re-encoded as JPEG)


def file_extension(content_type: str) -> str:
    """The file extension for a stored image's content type, for download and export names."""
    return EXTENSIONS.get(content_type, "bin")


class DueReason(models.TextChoices):
    """Why an object became due for deletion: retention writes a different audit action for each."""

    DEADLINE = "deadline", "its retention deadline passed"
    OWNER_DELETED = "owner_deleted", "its owner deleted it"
    CONSENT_WITHDRAWN = "consent_withdrawn", "its owner withdrew the consent it was held under"


class StoredObject(models.Model):
    """Common shape of every encrypted object a user owns: ciphertext name, deadline, deletion state."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField(db_index=True)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    content_type = models.CharField(max_length=32)
    size_bytes = models.PositiveIntegerField()  # of the ciphertext
    storage_name = models.CharField(max_length=255, unique=True)
    # Retention deletes ciphertext first, then the row; a storage failure leaves the row to retry.
    deletion_attempts = models.PositiveIntegerField(default=0)
    last_deletion_error = models.CharField(max_length=200, blank=True)
    # Set with expires_at=now by whoever makes it due early; the default is the deadline itself.
    due_reason = models.CharField(max_length=20, choices=DueReason.choices, default=DueReason.DEADLINE)

    KIND = "object"
    objects = models.Manager()  # declared here so code generic over kinds (retention, erasure) type-checks

    class Meta:
        abstract = True
        ordering = ["-created_at"]

    @property
    def ref(self) -> str:
        return f"{self.KIND}:{self.id}"


class Photo(StoredObject):
    """An uploaded original, deleted at `expires_at` (longer while it is kept for training)."""

    KIND = "photo"
    # Kept for training: the owner's training consent stands, so RETENTION_TRAINING applies, not the normal.
    kept_for_training = models.BooleanField(default=False)
    # Found at upload, so clients can show which face will change and refuse a faceless photo early.
    # None: uploaded before faces were counted (the worker still looks; never refused as faceless).
    face_count = models.PositiveSmallIntegerField(null=True, blank=True)
    # [x, y, w, h] of the face that will change, photo pixels
    face_box = models.JSONField(null=True, blank=True)

    class Meta(StoredObject.Meta):
        pass
