"""Photo rows: metadata and where the ciphertext lies; never image bytes."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class Photo(models.Model):
    """An uploaded original, stored encrypted under the owner's data key, deleted at `expires_at`."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="photos")
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField(db_index=True)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    content_type = models.CharField(max_length=32)
    size_bytes = models.PositiveIntegerField()  # of the ciphertext
    storage_name = models.CharField(max_length=255, unique=True)

    class Meta:
        ordering = ["-created_at"]
