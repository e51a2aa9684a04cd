"""Job reads that are not the one door (services.job_for_owner): where a queued job stands."""

from __future__ import annotations

from .models import JobStatus, TransformationJob


def jobs_ahead(job: TransformationJob) -> int | None:
    """How many requests, anyone's, were queued or running before this queued job (None once it runs): a real
    position to show while it waits, instead of a bar that only measures time. Counted, never named."""
    if job.status != JobStatus.QUEUED:
        return None
    return TransformationJob.objects.filter(status__in=(JobStatus.QUEUED, JobStatus.RUNNING),
                                            created_at__lt=job.created_at).count()
