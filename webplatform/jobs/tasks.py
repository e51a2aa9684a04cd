"""GPU-queue tasks: they take a job id and call the service."""

from __future__ import annotations

from celery import shared_task
from django.db import DatabaseError

from .services import job_fail, job_run


# acks_late + reject_on_worker_lost (settings): a worker killed mid-job leaves the message to redeliver,
# and job_run is idempotent, so the redelivered job finishes exactly once.
@shared_task(bind=True, acks_late=True, max_retries=5)
def transform_task(self, job_id: str) -> None:  # type: ignore[no-untyped-def]
    try:
        job_run(job_id=job_id)
    except (DatabaseError, OSError) as exc:  # transient: database or storage hiccup
        if self.request.retries >= self.max_retries:
            job_fail(job_id=job_id, code="internal_error")
            return
        raise self.retry(exc=exc, countdown=5 * 2**self.request.retries) from exc
