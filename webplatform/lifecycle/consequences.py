"""What an action will delete or stop, counted before the user confirms it, from the rules that act."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from governance import clock
from governance.consent import PROCESSING, TRAINING
from webplatform.jobs.models import JobStatus, TransformationJob, TransformationResult
from webplatform.photos.models import Photo
from webplatform.photos.selectors import photos_live

from .consent_changes import (
    jobs_stopped_on_processing_withdrawal,
    photos_due_on_processing_withdrawal,
    photos_due_on_training_withdrawal,
    results_due_on_processing_withdrawal,
)


@dataclass(frozen=True)
class Consequences:
    """What an action will delete or stop."""

    photos: int = 0
    results: int = 0
    queued_jobs: int = 0
    training_photo_kept_until: datetime | None = None  # the training copy survives until then

    @property
    def anything(self) -> bool:
        return bool(self.photos or self.results or self.queued_jobs)


def consequences_of_withdrawal(*, user_id: int, purpose_slug: str) -> Consequences:
    """What withdrawing this purpose deletes now (the queries processing_withdrawn/training_withdrawn use)."""
    now = clock.now()
    if purpose_slug == PROCESSING:
        due = photos_due_on_processing_withdrawal(user_id=user_id, now=now)
        kept = photos_live(owner_id=user_id).exclude(pk__in=due).filter(kept_for_training=True).first()
        return Consequences(
            photos=due.count(),
            results=results_due_on_processing_withdrawal(user_id=user_id, now=now).count(),
            queued_jobs=jobs_stopped_on_processing_withdrawal(user_id=user_id).count(),
            training_photo_kept_until=kept.expires_at if kept else None)
    if purpose_slug == TRAINING:
        return Consequences(photos=len(photos_due_on_training_withdrawal(user_id=user_id, now=now)))
    return Consequences()


def consequences_of_photo_delete(photo: Photo) -> Consequences:
    """The photo itself and every result made from it (photo_delete makes all of them due)."""
    return Consequences(photos=1, results=TransformationResult.objects.filter(
        photo_id=photo.pk, expires_at__gt=clock.now()).count())


def consequences_of_erasure(*, user_id: int) -> Consequences:
    """Everything the user holds, and their queued requests (user_erase stops them)."""
    now = clock.now()
    return Consequences(
        photos=photos_live(owner_id=user_id).count(),
        results=TransformationResult.objects.filter(owner_id=user_id, expires_at__gt=now).count(),
        queued_jobs=TransformationJob.objects.filter(owner_id=user_id, status=JobStatus.QUEUED).count())

