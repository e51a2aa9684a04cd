"""Transformation jobs: create (202), run on an `aging` worker (CPU), read results — owner only."""

from __future__ import annotations

import io
import uuid
from contextlib import AbstractContextManager
from datetime import datetime, timedelta

import numpy as np
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from PIL import Image

from governance import clock
from governance.audit import audit_append
from governance.audit_actions import AuditAction
from governance.consent import PROCESSING, consent_is_active, consent_require
from governance.errors import Conflict, IntegrityFailure, NoFace, NotFound
from governance.keyring import KeyringUnavailable
from inference.serving.aging import VERSION
from inference.serving.faces import NoFaceFound
from inference.serving.transform import transform_photo
from webplatform import metrics
from webplatform.encrypted_store import StorageUnavailable, object_delete, object_get, object_put
from webplatform.heartbeat import heartbeat
from webplatform.photos.models import Photo
from webplatform.taskqueue import TRANSFORM, publish

from .dispatch import job_queue_check, jobs_dispatch
from .models import JobFailure, JobStatus, TransformationJob, TransformationResult
from .selectors import job_result_available

SWEEP_BATCH = 500


def job_for_owner(*, user_id: int, job_id: uuid.UUID | str) -> TransformationJob:
    """The one door to a job: 404 alike for missing and for someone else's."""
    try:
        return TransformationJob.objects.select_related("result").get(pk=job_id, owner_id=user_id)
    except (TransformationJob.DoesNotExist, ValueError, TypeError, ValidationError) as exc:  # malformed id
        raise NotFound("Transformation not found.") from exc


def job_create(*, user_id: int, photo: Photo, target_age: int) -> TransformationJob:
    """Queue a transformation; the task message carries the job id only, never image bytes."""
    consent_require(user_id=user_id, purpose_slug=PROCESSING)
    if photo.face_count == 0:  # known since upload: refuse now rather than fail on the worker
        raise NoFace("No face was found in this photo, so there is nothing to age. Try a photo where your "
                     "face is clearly visible, facing the camera.")
    job_queue_check(user_id=user_id)
    with transaction.atomic():
        job = TransformationJob.objects.create(owner_id=user_id, photo=photo, target_age=target_age,
                                               created_at=clock.now())
        audit_append(action=AuditAction.JOB_CREATED, actor_id=user_id, subject_id=user_id,
                     object_ref=f"job:{job.id}", details={"photo": str(photo.id), "target_age": target_age})
        # Published when its owner has a free slot, fairly between people (dispatch.py).
        transaction.on_commit(lambda: jobs_dispatch(owner_id=user_id, publish=job_publish))
    return job


def job_publish(*, job_id: uuid.UUID | str) -> bool:
    """Hand a queued job to the broker. If it is down the job stays queued: the dispatcher sends it later."""
    # Stamped before sending: in embedded mode the send runs the job, and a stamp after it would be stale.
    TransformationJob.objects.filter(pk=job_id, status=JobStatus.QUEUED).update(published_at=clock.now())
    if publish(TRANSFORM, str(job_id)):
        return True
    TransformationJob.objects.filter(pk=job_id, status=JobStatus.QUEUED).update(published_at=None)
    return False


def job_result_content(*, user_id: int, job: TransformationJob) -> tuple[bytes, str]:
    """Decrypt a finished job's result for its owner, audited."""
    if not job_result_available(job):
        raise Conflict("The transformation has no result to download.", details={"status": job.status})
    result = job.result
    data = object_get(
        owner_id=result.owner_id, kind=result.KIND, object_id=result.id, name=result.storage_name
    )
    audit_append(action=AuditAction.RESULT_CONTENT_READ, actor_id=user_id, subject_id=result.owner_id,
                 object_ref=result.ref)
    return bytes(data), result.content_type


def _fail(job: TransformationJob, code: JobFailure) -> None:
    metrics.JOBS.labels("failed", code).inc()
    job.status, job.error, job.finished_at = JobStatus.FAILED, code, clock.now()
    job.save(update_fields=["status", "error", "finished_at"])
    audit_append(action=AuditAction.JOB_FAILED, actor_id=None, subject_id=job.owner_id,
                 object_ref=f"job:{job.id}", details={"error": code})


def _claim(job_id: str) -> TransformationJob | None:
    """Mark the job running unless done, held by a live worker or no longer allowed; None: nothing to do."""
    now = clock.now()
    with transaction.atomic():
        job = TransformationJob.objects.select_for_update().select_related("photo").filter(pk=job_id).first()
        if job is None or job.status in (JobStatus.DONE, JobStatus.FAILED):
            return None  # finished already (a redelivery after acks_late) or deleted with its photo
        if job.status == JobStatus.RUNNING and job.heartbeat_at and job.heartbeat_at > _stale_before(now):
            return None  # a duplicate message (dispatcher, redelivery): the live worker holding it ends it
        if job.attempts >= settings.JOB_MAX_ATTEMPTS:
            _fail(job, JobFailure.ATTEMPTS_EXHAUSTED)
            return None
        # Consent is checked when the work runs, not only when it was asked for.
        if not consent_is_active(user_id=job.owner_id, purpose_slug=PROCESSING):
            _fail(job, JobFailure.CONSENT_WITHDRAWN)
            return None
        if job.photo.expires_at <= now:
            _fail(job, JobFailure.PHOTO_DELETED)
            return None
        job.status, job.started_at, job.heartbeat_at = JobStatus.RUNNING, now, now
        job.attempts += 1
        job.save(update_fields=["status", "started_at", "heartbeat_at", "attempts"])
    return job


def job_run(*, job_id: str) -> None:
    """Worker side: decrypt in memory, find the face, age it, encrypt and store the result.

    A storage fault (StorageUnavailable) propagates: it is transient, and the task retries it with backoff.
    """
    job = _claim(job_id)
    if job is None:
        return
    photo = job.photo
    with _heartbeat(job.pk):
        try:
            plaintext = object_get(owner_id=photo.owner_id, kind=Photo.KIND, object_id=photo.id,
                                   name=photo.storage_name)
            image = np.asarray(Image.open(io.BytesIO(plaintext)).convert("RGB"))  # (H, W, 3) uint8
            del plaintext
            aged, version = _transform(image, target_age=job.target_age)
        except NoFaceFound:
            job_fail(job_id=job_id, code=JobFailure.NO_FACE)
            return
        except (StorageUnavailable, KeyringUnavailable):
            raise  # transient: the task retries with backoff
        except IntegrityFailure as exc:  # key destroyed (erased meanwhile) or damaged ciphertext
            job_fail(job_id=job_id, code=JobFailure(exc.code))
            return
        _store_result(job, aged, version, photo.content_type)


def _transform(image: np.ndarray, *, target_age: int) -> tuple[np.ndarray, str]:
    """The one call into inference: the aged image and the version of the aging that made it."""
    return transform_photo(image, float(target_age)).image, VERSION


def _stale_before(now: datetime) -> datetime:
    return now - timedelta(seconds=settings.JOB_STALE_SECONDS)


def _heartbeat(job_id: uuid.UUID) -> AbstractContextManager[None]:
    """While the block runs, bump the job's heartbeat every JOB_HEARTBEAT_SECONDS from a side thread."""
    return heartbeat(
        lambda: TransformationJob.objects.filter(pk=job_id, status=JobStatus.RUNNING).update(
            heartbeat_at=clock.now()),
        every=settings.JOB_HEARTBEAT_SECONDS, name=f"job {job_id}")


def job_release(*, job_id: str) -> None:
    """Put a running job back in the queue after a transient fault; the task's retry is its live message."""
    TransformationJob.objects.filter(pk=job_id, status=JobStatus.RUNNING).update(
        status=JobStatus.QUEUED, published_at=clock.now(), heartbeat_at=None)


def jobs_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Requeue (or fail, after JOB_MAX_ATTEMPTS) running jobs whose worker stopped heartbeating, then publish
    queued jobs that have no live message: never published, refused by a broker outage, or lost.
    """
    now = now or clock.now()
    counts = {"requeued": 0, "failed": 0, "published": 0, "unpublished": 0}
    stale = TransformationJob.objects.filter(status=JobStatus.RUNNING).filter(
        Q(heartbeat_at__lt=_stale_before(now)) | Q(heartbeat_at__isnull=True))
    for job_id in list(stale.values_list("pk", flat=True)[:SWEEP_BATCH]):
        with transaction.atomic():
            job = (
                TransformationJob.objects.select_for_update()
                .filter(pk=job_id, status=JobStatus.RUNNING)
                .first()
            )
            if job is None or (job.heartbeat_at and job.heartbeat_at >= _stale_before(now)):
                continue  # finished or beat again meanwhile
            if job.attempts >= settings.JOB_MAX_ATTEMPTS:
                _fail(job, JobFailure.WORKER_LOST)
                counts["failed"] += 1
                continue
            job.status, job.published_at, job.heartbeat_at = JobStatus.QUEUED, None, None
            job.save(update_fields=["status", "published_at", "heartbeat_at"])
            audit_append(
                action=AuditAction.JOB_REQUEUED,
                actor_id=None,
                subject_id=job.owner_id,
                object_ref=f"job:{job.id}",
                details={"attempts": job.attempts, "reason": JobFailure.WORKER_LOST},
            )
            counts["requeued"] += 1
    republish_before = now - timedelta(seconds=settings.JOB_REPUBLISH_SECONDS)
    pending = TransformationJob.objects.filter(status=JobStatus.QUEUED, published_at__lt=republish_before
                                               ).order_by("created_at")
    job_ids = list(pending.values_list("pk", flat=True)[:SWEEP_BATCH])
    for job_id in job_ids:
        if not job_publish(job_id=job_id):
            break  # the broker is down: the next sweep tries again
        counts["published"] += 1
    counts["unpublished"] = len(job_ids) - counts["published"]
    if counts["unpublished"] == 0:  # held jobs (never published, or refused): fairly, within each cap
        dispatched = jobs_dispatch(publish=job_publish)
        counts["published"] += dispatched["published"]
        counts["unpublished"] += dispatched["unpublished"]
    return counts


def job_fail(*, job_id: str, code: JobFailure) -> None:
    """Fail a job that has not finished, with a machine-readable reason."""
    with transaction.atomic():
        job = TransformationJob.objects.select_for_update().filter(pk=job_id).first()
        if job is not None and job.status not in (JobStatus.DONE, JobStatus.FAILED):
            _fail(job, code)


def _store_result(job: TransformationJob, aged: np.ndarray, version: str, content_type: str) -> None:
    buffer = io.BytesIO()
    if content_type == "image/png":
        Image.fromarray(aged).save(buffer, format="PNG", compress_level=3)
    else:
        Image.fromarray(aged).save(buffer, format="JPEG", quality=92)
    result_id = uuid.uuid4()
    name, size = object_put(owner_id=job.owner_id, kind=TransformationResult.KIND, object_id=result_id,
                            plaintext=buffer.getvalue())
    try:
        with transaction.atomic():
            locked = TransformationJob.objects.select_for_update().get(pk=job.pk)
            if locked.status != JobStatus.RUNNING or not consent_is_active(user_id=job.owner_id,
                                                                           purpose_slug=PROCESSING):
                # Withdrawn or erased while we computed: the result is discarded, never stored.
                object_delete(name)
                if locked.status == JobStatus.RUNNING:
                    _fail(locked, JobFailure.CONSENT_WITHDRAWN)
                return
            now = clock.now()
            TransformationResult.objects.create(
                id=result_id, owner_id=job.owner_id, job=locked, photo_id=job.photo_id, created_at=now,
                expires_at=now + settings.RETENTION_RESULT, width=aged.shape[1], height=aged.shape[0],
                content_type=content_type, size_bytes=size, storage_name=name,
            )
            locked.status, locked.finished_at, locked.aging_version = JobStatus.DONE, now, version
            metrics.JOBS.labels("done", "").inc()
            if locked.started_at:
                metrics.JOB_SECONDS.observe((now - locked.started_at).total_seconds())
            locked.save(update_fields=["status", "finished_at", "aging_version"])
            audit_append(
                action=AuditAction.JOB_COMPLETED,
                actor_id=None,
                subject_id=job.owner_id,
                object_ref=f"job:{job.id}",
                details={"aging_version": version, "result": str(result_id)},
            )
    except BaseException:
        object_delete(name)
        raise
