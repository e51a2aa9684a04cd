"""Job reads that are not the one door (services.job_for_owner): where a queued job stands, what is left."""

from __future__ import annotations

import uuid

from django.db.models import Q

from governance import clock

from .models import UNFINISHED, JobStatus, TransformationJob


def jobs_ahead(job: TransformationJob) -> int | None:
    """How many requests, anyone's, were queued or running before this queued job (None once it runs): a real
    position to show while it waits, instead of a bar that only measures time. Counted, never named."""
    if job.status != JobStatus.QUEUED:
        return None
    if job.published_at is not None:  # in the broker's queue (dispatch.py): behind what was published before
        earlier = Q(status=JobStatus.QUEUED, published_at__lt=job.published_at)
        return TransformationJob.objects.filter(Q(status=JobStatus.RUNNING) | earlier).count()
    return TransformationJob.objects.filter(status__in=UNFINISHED,
                                            created_at__lt=job.created_at).count()


def job_result_available(job: TransformationJob) -> bool:
    """Whether a job's result can still be read: done, and its result not deleted nor past its deadline (a
    withdrawal or deletion removes results while their jobs stay on record as done)."""
    result = getattr(job, "result", None)  # the reverse one-to-one raises when the row is gone: None then
    return job.status == JobStatus.DONE and result is not None and result.expires_at > clock.now()


def jobs_of_photo(*, owner_id: int, photo_id: uuid.UUID) -> list[TransformationJob]:
    """A photo's jobs, newest first, each with `result_available` set (job_result_available)."""
    jobs = list(TransformationJob.objects.filter(photo_id=photo_id, owner_id=owner_id)
                .select_related("result").order_by("-created_at"))
    for job in jobs:
        job.result_available = job_result_available(job)  # type: ignore[attr-defined]
    return jobs
