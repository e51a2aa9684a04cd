"""What a consent change does: a grant, a withdrawal and its effect on data held, the training photo.

Each withdrawal rule is a query here (`*_due_on_*`), used both by the withdrawal itself and by
lifecycle.consequences, which counts what a withdrawal would delete before the user confirms it.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet

from governance import clock
from governance.audit import audit_append
from governance.audit_actions import AuditAction
from governance.consent import PROCESSING, TRAINING, consent_is_active, consent_require, consent_set
from governance.errors import NotFound, Unprocessable
from governance.models import ConsentRecord
from governance.training import training_digests_erase
from webplatform.jobs.models import JobFailure, JobStatus, TransformationJob, TransformationResult
from webplatform.photos.models import DueReason, Photo
from webplatform.photos.selectors import photo_is_trainable
from webplatform.photos.services import photo_for_owner, training_photo_designate

from . import retention


class NotTrainable(Unprocessable):
    code, message = "not_trainable", "Only a photo with exactly one face can be kept for training."


def consent_change(*, user_id: int, purpose_slug: str, granted: bool, policy_version: int | None,
                   training_photo_id: str | None = None) -> ConsentRecord:
    """Record a grant or withdrawal and apply its effect on held data in the same transaction.

    A training grant keeps only the photo the user chose (training_photo_id); without one, no photo is
    kept until they choose one.
    """
    with transaction.atomic():
        record = consent_set(user_id=user_id, purpose_slug=purpose_slug, granted=granted,
                             policy_version=policy_version)
        if purpose_slug == PROCESSING and not granted:
            processing_withdrawn(user_id=user_id)
        elif purpose_slug == TRAINING and not granted:
            training_withdrawn(user_id=user_id)
        elif purpose_slug == TRAINING and granted and training_photo_id:
            training_photo_choose(user_id=user_id, photo_id=training_photo_id)
    # Deadlines that just passed are enforced now, not at the next periodic run.
    transaction.on_commit(lambda: retention.retention_enforce(owner_id=user_id))
    return record


def training_photo_choose(*, user_id: int, photo_id: str) -> Photo:
    """Keep this photo (and only this one) for training; needs active training consent and one face."""
    try:
        photo_uuid = uuid.UUID(str(photo_id))
    except ValueError as exc:  # from a form: the same answer as any photo that is not yours
        raise NotFound("Photo not found.") from exc
    with transaction.atomic():
        # 404 first: say nothing of others' photos
        photo = photo_for_owner(user_id=user_id, photo_id=photo_uuid)
        consent_require(user_id=user_id, purpose_slug=TRAINING)
        if not photo_is_trainable(photo):
            raise NotTrainable(details={"face_count": photo.face_count})
        previous = [str(pk) for pk in Photo.objects.filter(owner_id=user_id, kept_for_training=True)
                    .exclude(pk=photo.pk).values_list("pk", flat=True)]
        training_photo_designate(photo=photo)
        audit_append(action=AuditAction.PHOTO_TRAINING_CHOSEN, actor_id=user_id, subject_id=user_id,
                     object_ref=photo.ref, details={"released": previous})
    # A released photo older than the original's retention is due now: delete it now, not at the next sweep.
    transaction.on_commit(lambda: retention.retention_enforce(owner_id=user_id))
    return photo


def training_photo_get(*, user_id: int) -> Photo | None:
    """The photo currently kept for training, if any (still within its deadline)."""
    return (Photo.objects.filter(owner_id=user_id, kept_for_training=True, expires_at__gt=clock.now())
            .order_by("-created_at").first())


# --- the withdrawal rules -----------------------------------------------------------------------------

def jobs_stopped_on_processing_withdrawal(*, user_id: int) -> QuerySet[TransformationJob]:
    """Queued aging requests, which a processing withdrawal stops."""
    return TransformationJob.objects.filter(owner_id=user_id, status=JobStatus.QUEUED)


def results_due_on_processing_withdrawal(*, user_id: int, now: datetime) -> QuerySet[TransformationResult]:
    """Every live result: none is kept for training, so none outlives processing consent."""
    return TransformationResult.objects.filter(owner_id=user_id, expires_at__gt=now)


def photos_due_on_processing_withdrawal(*, user_id: int, now: datetime) -> QuerySet[Photo]:
    """Every live original but the one kept for training while training consent stands."""
    originals = Photo.objects.filter(owner_id=user_id, expires_at__gt=now)
    if consent_is_active(user_id=user_id, purpose_slug=TRAINING):
        originals = originals.exclude(kept_for_training=True)
    return originals


def photos_due_on_training_withdrawal(*, user_id: int, now: datetime) -> list[Photo]:
    """Training copies due now once their training basis goes: past the original's retention, or every one
    of them when processing consent is gone too."""
    processing = consent_is_active(user_id=user_id, purpose_slug=PROCESSING)
    return [p for p in Photo.objects.filter(owner_id=user_id, kept_for_training=True, expires_at__gt=now)
            if not processing or p.created_at + settings.RETENTION_ORIGINAL <= now]


def processing_withdrawn(*, user_id: int) -> None:
    """Stop queued work; originals and results lose their basis and are due now (training copy aside)."""
    now = clock.now()
    jobs_stopped_on_processing_withdrawal(user_id=user_id).update(
        status=JobStatus.FAILED, error=JobFailure.CONSENT_WITHDRAWN, finished_at=now)
    withdrawn = {"expires_at": now, "due_reason": DueReason.CONSENT_WITHDRAWN}
    results_due_on_processing_withdrawal(user_id=user_id, now=now).update(**withdrawn)
    photos_due_on_processing_withdrawal(user_id=user_id, now=now).update(**withdrawn)


def training_withdrawn(*, user_id: int) -> None:
    """Copies held only for training fall back to the original's deadline (so may be due now)."""
    now = clock.now()
    training_digests_erase(user_id=user_id)  # the link to their spend goes with the training basis
    due = {p.pk for p in photos_due_on_training_withdrawal(user_id=user_id, now=now)}
    for photo in Photo.objects.filter(owner_id=user_id, kept_for_training=True):
        photo.kept_for_training = False
        photo.expires_at = min(photo.expires_at, photo.created_at + settings.RETENTION_ORIGINAL)
        if photo.pk in due:
            photo.expires_at, photo.due_reason = now, DueReason.CONSENT_WITHDRAWN
        photo.save(update_fields=["kept_for_training", "expires_at", "due_reason"])
