"""Job tasks: they take a job id and call the service. Published by name through webplatform.taskqueue."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task, shared_task
from celery.signals import task_postrun
from django.conf import settings
from django.db import DatabaseError

from governance.keyring import KeyringUnavailable
from webplatform.encrypted_store import StorageUnavailable
from webplatform.taskqueue import BROKER_ERRORS, TRANSFORM

from .dispatch import jobs_dispatch, per_person_cap
from .models import JobFailure, TransformationJob
from .services import job_fail, job_publish, job_release, job_run, jobs_sweep

log = logging.getLogger(__name__)

# Transient: the database, the object store or the broker hiccupped. Anything else is a bug and fails loudly.
TRANSIENT: tuple[type[BaseException], ...] = (DatabaseError, OSError, StorageUnavailable, KeyringUnavailable,
                                             *BROKER_ERRORS)


def _code(exc: BaseException) -> JobFailure:
    """The failure reason a job records when its last attempt hit a transient fault."""
    if isinstance(exc, StorageUnavailable | OSError):
        return JobFailure.STORAGE_UNAVAILABLE
    if isinstance(exc, KeyringUnavailable):
        return JobFailure.KEYRING_UNAVAILABLE
    if isinstance(exc, DatabaseError):
        return JobFailure.DATABASE_UNAVAILABLE
    return JobFailure.QUEUE_UNAVAILABLE


def _release(job_id: str) -> bool:
    """Put the job back in the queue; False when the database is what failed and cannot take it back."""
    try:
        job_release(job_id=job_id)
    except DatabaseError:
        log.warning("job %s could not be released: the database did not answer", job_id, exc_info=True)
        return False
    return True


# acks_late + reject_on_worker_lost (settings): a worker killed mid-job leaves the message to redeliver; the
# sweeper requeues the job once its heartbeat is stale, whichever comes first; job_run finishes it once.
@shared_task(bind=True, acks_late=True, max_retries=settings.JOB_MAX_ATTEMPTS - 1)
def transform_task(self: Task, job_id: str) -> None:
    """Run one transformation; transient faults retry with exponential backoff, the last one fails the job."""
    try:
        job_run(job_id=job_id)
    except TRANSIENT as exc:
        if self.request.retries >= (self.max_retries or 0):
            # If the database is what failed, this raises: the job stays running or queued in its row, and
            # the sweeper ends or republishes it (JOB_STALE_SECONDS, JOB_REPUBLISH_SECONDS).
            job_fail(job_id=job_id, code=_code(exc))
            return
        released = _release(job_id)
        if self.request.is_eager:  # embedded mode has no broker to hold a delayed retry: try again now
            if released:
                self.apply(args=(job_id,), retries=self.request.retries + 1, throw=True)
            return  # not released: the row still says queued or running, and the sweeper takes it back
        countdown = min(300, settings.JOB_RETRY_BASE_SECONDS * 2**self.request.retries)
        if not released:
            # The job may still read `running` with the heartbeat of this attempt: the retry's claim takes
            # it back only once that heartbeat is stale, so it waits that long. Never acknowledged without
            # a live message: the retry is one.
            countdown = max(countdown, settings.JOB_STALE_SECONDS)
        raise self.retry(exc=exc, countdown=countdown) from exc


@shared_task
def jobs_sweep_task() -> dict[str, int]:
    """The periodic dispatcher: requeue jobs of dead workers, publish queued jobs with no live message."""
    return jobs_sweep()


@task_postrun.connect
def _dispatch_after_job(*, sender: Any = None, args: tuple = (), **_: Any) -> None:
    """A transformation ended (done, failed or released for a retry): publish its owner's next held job
    (fair dispatch, dispatch.py). Kept out of transform_task so that its error paths stay its own."""
    if getattr(sender, "name", None) != TRANSFORM or per_person_cap() is None or not args:
        return
    try:
        owner_id = TransformationJob.objects.filter(pk=args[0]).values_list("owner_id", flat=True).first()
        if owner_id is not None:
            jobs_dispatch(owner_id=owner_id, publish=job_publish)
    except DatabaseError:  # the sweeper dispatches what this missed
        log.warning("dispatch after job %s failed", args[0], exc_info=True)
