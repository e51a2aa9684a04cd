"""Transformation jobs and their encrypted results."""

from __future__ import annotations

import uuid
from enum import StrEnum

from django.conf import settings
from django.db import models

from webplatform.photos.models import Photo, StoredObject


class JobStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


# A job its owner still waits on: in the queue or on a worker (the photo page follows these).
UNFINISHED: tuple[JobStatus, ...] = (JobStatus.QUEUED, JobStatus.RUNNING)


class JobFailure(StrEnum):
    """Why a job failed: the machine code kept in TransformationJob.error and shown by the API."""

    NO_FACE = "no_face"  # the detector found no face in the photo
    CONSENT_WITHDRAWN = "consent_withdrawn"  # processing consent ended before the result was stored
    PHOTO_DELETED = "photo_deleted"  # the photo was deleted or expired before the job ran
    ERASED = "erased"  # the owner's erasure was accepted while the job was queued
    ATTEMPTS_EXHAUSTED = "attempts_exhausted"  # JOB_MAX_ATTEMPTS claims without finishing
    WORKER_LOST = "worker_lost"  # its worker stopped heartbeating on the last attempt
    # The codes of errors that end a job (governance.errors, encrypted_store.py, keyring.py), as the API
    # says them.
    KEY_DESTROYED = "key_destroyed"
    INTEGRITY_FAILURE = "integrity_failure"
    STORAGE_UNAVAILABLE = "storage_unavailable"
    KEYRING_UNAVAILABLE = "keyring_unavailable"
    DATABASE_UNAVAILABLE = "database_unavailable"
    QUEUE_UNAVAILABLE = "queue_unavailable"


class TransformationJob(models.Model):
    """A request to age or rejuvenate a photo to `target_age`; the broker carries only its id."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    photo = models.ForeignKey(Photo, on_delete=models.CASCADE, related_name="jobs")
    target_age = models.PositiveSmallIntegerField()
    status = models.CharField(
        max_length=10, choices=JobStatus.choices, default=JobStatus.QUEUED, db_index=True
    )
    error = models.CharField(max_length=40, blank=True)  # a JobFailure code, blank unless failed
    # The version of the aging layers that made the result (e.g. `aging-layers-v3`), blank until done. The API
    # calls it `model_version` (the contract's name); the learned generator never serves, so it is never one.
    aging_version = models.CharField(max_length=80, blank=True)
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
