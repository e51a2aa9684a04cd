"""Job reads that are not the one door (services.job_for_owner): where a queued job stands."""

from __future__ import annotations

from django.db.models import Q

from .models import JobStatus, TransformationJob


def jobs_ahead(job: TransformationJob) -> int | None:
    """How many requests, anyone's, were queued or running before this queued job (None once it runs): a real
    position to show while it waits, instead of a bar that only measures time. Counted, never named."""
    if job.status != JobStatus.QUEUED:
        return None
    if job.published_at is not None:  # in the broker's queue (dispatch.py): behind what was published before
        earlier = Q(status=JobStatus.QUEUED, published_at__lt=job.published_at)
        return TransformationJob.objects.filter(Q(status=JobStatus.RUNNING) | earlier).count()
    return TransformationJob.objects.filter(status__in=(JobStatus.QUEUED, JobStatus.RUNNING),
                                            created_at__lt=job.created_at).count()
