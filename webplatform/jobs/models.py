"""Transformation jobs and their encrypted results."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from webplatform.photos.models import Photo, StoredObject


class JobStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class TransformationJob(models.Model):
    """A request to age or rejuvenate a photo to `target_age`; the broker carries only its id."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    photo = models.ForeignKey(Photo, on_delete=models.CASCADE, related_name="jobs")
    target_age = models.PositiveSmallIntegerField()
    status = models.CharField(
        max_length=10, choices=JobStatus.choices, default=JobStatus.QUEUED, db_index=True
    )
    error = models.CharField(max_length=40, blank=True)  # a machine code: no_face, consent_withdrawn, ...
    model_version = models.CharField(max_length=80, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True)
    finished_at = models.DateTimeField(null=True)
    # The row is the outbox: when its message was last handed to the broker (None: not yet, or refused).
    published_at = models.DateTimeField(null=True)
    # Bumped by the worker while it runs the job; a stale one means the worker died (see jobs_sweep).
    heartbeat_at = models.DateTimeField(null=True)

    class Meta:
        ordering = ["-created_at"]


class TransformationResult(StoredObject):
    """The aged image, encrypted under the owner's data key, with its own retention deadline."""

    KIND = "result"
    job = models.OneToOneField(TransformationJob, on_delete=models.CASCADE, related_name="result")
    photo = models.ForeignKey(Photo, on_delete=models.CASCADE, related_name="results")

    class Meta(StoredObject.Meta):
        pass
