"""Transformation jobs: create (202), run on the GPU worker, read results — owner only."""

from __future__ import annotations

import io
import logging
import uuid

import numpy as np
from django.conf import settings
from django.db import transaction
from kombu.exceptions import OperationalError
from PIL import Image

from governance import clock
from governance.audit import audit_append
from governance.consent import PROCESSING, consent_is_active, consent_require
from governance.errors import Conflict, NotFound, TimeveilError
from webplatform import metrics
from webplatform.objects import object_delete, object_get, object_put
from webplatform.photos.models import Photo

from .models import JobStatus, TransformationJob, TransformationResult

log = logging.getLogger(__name__)


def job_for_owner(*, user_id: int, job_id: uuid.UUID | str) -> TransformationJob:
    """The one door to a job: 404 alike for missing and for someone else's."""
    try:
        return TransformationJob.objects.select_related("result").get(pk=job_id, owner_id=user_id)
    except (TransformationJob.DoesNotExist, ValueError, TypeError) as exc:
        raise NotFound("Transformation not found.") from exc


def job_create(*, user_id: int, photo: Photo, target_age: int) -> TransformationJob:
    """Queue a transformation; the task message carries the job id only, never image bytes."""
    from .tasks import transform_task

    consent_require(user_id=user_id, purpose_slug=PROCESSING)
    with transaction.atomic():
        job = TransformationJob.objects.create(owner_id=user_id, photo=photo, target_age=target_age,
                                               created_at=clock.now())
        audit_append(action="job.created", actor_id=user_id, subject_id=user_id, object_ref=f"job:{job.id}",
                     details={"photo": str(photo.id), "target_age": target_age})
        transaction.on_commit(lambda: _enqueue(transform_task, str(job.id)))
    return job


def _enqueue(task, job_id: str) -> None:  # type: ignore[no-untyped-def]
    """Send the job id to the gpu queue; if the broker is down the job fails visibly instead of hanging."""
    try:
        task.delay(job_id)
    except OperationalError:
        log.exception("could not queue job %s", job_id)
        job_fail(job_id=job_id, code="queue_unavailable")


def job_result_content(*, user_id: int, job: TransformationJob) -> tuple[bytes, str]:
    """Decrypt a finished job's result for its owner, audited."""
    result = getattr(job, "result", None)
    if job.status != JobStatus.DONE or result is None or result.expires_at <= clock.now():
        raise Conflict("The transformation has no result to download.", details={"status": job.status})
    data = object_get(owner_id=result.owner_id, kind=result.KIND, object_id=result.id, name=result.storage_name)
    audit_append(action="result.content_read", actor_id=user_id, subject_id=result.owner_id,
                 object_ref=result.ref)
    return bytes(data), result.content_type


def _fail(job: TransformationJob, code: str) -> None:
    metrics.JOBS.labels("failed", code).inc()
    job.status, job.error, job.finished_at = JobStatus.FAILED, code, clock.now()
    job.save(update_fields=["status", "error", "finished_at"])
    audit_append(action="job.failed", actor_id=None, subject_id=job.owner_id, object_ref=f"job:{job.id}",
                 details={"error": code})


def _claim(job_id: str) -> TransformationJob | None:
    """Mark the job running unless it is finished or no longer allowed; None means nothing to do."""
    with transaction.atomic():
        job = TransformationJob.objects.select_for_update().select_related("photo").filter(pk=job_id).first()
        if job is None or job.status in (JobStatus.DONE, JobStatus.FAILED):
            return None  # finished already (a redelivery after acks_late) or deleted with its photo
        # Consent is checked when the work runs, not only when it was asked for.
        if not consent_is_active(user_id=job.owner_id, purpose_slug=PROCESSING):
            _fail(job, "consent_withdrawn")
            return None
        if job.photo.expires_at <= clock.now():
            _fail(job, "photo_deleted")
            return None
        job.status, job.started_at, job.attempts = JobStatus.RUNNING, clock.now(), job.attempts + 1
        job.save(update_fields=["status", "started_at", "attempts"])
    return job


def job_run(*, job_id: str) -> None:
    """Worker side: decrypt in memory, find the face, age it, encrypt and store the result."""
    from inference.faces import NoFaceFound, transform_photo

    from .engine import get_engine

    job = _claim(job_id)
    if job is None:
        return
    photo = job.photo
    try:
        plaintext = object_get(owner_id=photo.owner_id, kind=Photo.KIND, object_id=photo.id,
                               name=photo.storage_name)
        image = np.asarray(Image.open(io.BytesIO(plaintext)).convert("RGB"))  # (H, W, 3) uint8
        del plaintext
        engine, version = get_engine()
        aged = transform_photo(image, float(job.target_age), engine.run_one, size=engine.size)
    except NoFaceFound:
        job_fail(job_id=job_id, code="no_face")
        return
    except TimeveilError as exc:  # key destroyed (erased meanwhile), no model, damaged ciphertext
        job_fail(job_id=job_id, code=exc.code)
        return
    _store_result(job, aged, version, photo.content_type)


def job_fail(*, job_id: str, code: str) -> None:
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
                    _fail(locked, "consent_withdrawn")
                return
            now = clock.now()
            TransformationResult.objects.create(
                id=result_id, owner_id=job.owner_id, job=locked, photo_id=job.photo_id, created_at=now,
                expires_at=now + settings.RETENTION_RESULT, width=aged.shape[1], height=aged.shape[0],
                content_type=content_type, size_bytes=size, storage_name=name,
            )
            locked.status, locked.finished_at, locked.model_version = JobStatus.DONE, now, version
            metrics.JOBS.labels("done", "").inc()
            if locked.started_at:
                metrics.JOB_SECONDS.observe((now - locked.started_at).total_seconds())
            locked.save(update_fields=["status", "finished_at", "model_version"])
            audit_append(action="job.completed", actor_id=None, subject_id=job.owner_id, object_ref=f"job:{job.id}",
                         details={"model_version": version, "result": str(result_id)})
    except BaseException:
        object_delete(name)
        raise
