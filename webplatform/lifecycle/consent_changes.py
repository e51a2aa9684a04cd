"""What a consent change does: a grant, a withdrawal and its effect on data held, the training photo."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import transaction

from governance import clock
from governance.audit import audit_append
from governance.consent import PROCESSING, TRAINING, consent_is_active, consent_require, consent_set
from governance.errors import NotFound
from governance.models import ConsentRecord
from webplatform.jobs.models import JobFailure, JobStatus, TransformationJob, TransformationResult
from webplatform.photos.models import Photo
from webplatform.photos.selectors import photos_live
from webplatform.photos.services import photo_for_owner, training_photo_designate

from . import retention


def consent_change(*, user_id: int, purpose_slug: str, granted: bool, policy_version: int | None,
                   training_photo_id: str | None = None) -> ConsentRecord:
    """Record a grant or withdrawal and apply its effect on held data in the same transaction.

    A training grant keeps the photo the user chose (training_photo_id), else their newest one.
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
        elif purpose_slug == TRAINING and granted:
            # Only a photo still within its deadline: a grant must not revive one that is already due.
            newest = photos_live(owner_id=user_id).first()
            if newest is not None:
                training_photo_designate(photo=newest)
    # Deadlines that just passed are enforced now, not at the next periodic run.
    transaction.on_commit(lambda: retention.retention_enforce(owner_id=user_id))
    return record


def training_photo_choose(*, user_id: int, photo_id: str) -> Photo:
    """Keep this photo (and only this one) for training; needs active training consent; audited."""
    try:
        photo_uuid = uuid.UUID(str(photo_id))
    except ValueError as exc:  # from a form: the same answer as any photo that is not yours
        raise NotFound("Photo not found.") from exc
    with transaction.atomic():
        # 404 first: say nothing of others' photos
        photo = photo_for_owner(user_id=user_id, photo_id=photo_uuid)
        consent_require(user_id=user_id, purpose_slug=TRAINING)
        previous = [str(pk) for pk in Photo.objects.filter(owner_id=user_id, kept_for_training=True)
                    .exclude(pk=photo.pk).values_list("pk", flat=True)]
        training_photo_designate(photo=photo)
        audit_append(action="photo.training_chosen", actor_id=user_id, subject_id=user_id,
                     object_ref=photo.ref, details={"released": previous})
    # A released photo older than the original's retention is due now: delete it now, not at the next sweep.
    transaction.on_commit(lambda: retention.retention_enforce(owner_id=user_id))
    return photo


def training_photo_get(*, user_id: int) -> Photo | None:
    """The photo currently kept for training, if any (still within its deadline)."""
    return (Photo.objects.filter(owner_id=user_id, kept_for_training=True, expires_at__gt=clock.now())
            .order_by("-created_at").first())


def processing_withdrawn(*, user_id: int) -> None:
    """Stop queued work; originals and results lose their basis and are due now (training copy aside)."""
    now = clock.now()
    TransformationJob.objects.filter(owner_id=user_id, status=JobStatus.QUEUED).update(
        status=JobStatus.FAILED, error=JobFailure.CONSENT_WITHDRAWN, finished_at=now)
    TransformationResult.objects.filter(owner_id=user_id, expires_at__gt=now).update(expires_at=now)
    originals = Photo.objects.filter(owner_id=user_id, expires_at__gt=now)
    if consent_is_active(user_id=user_id, purpose_slug=TRAINING):
        originals = originals.exclude(kept_for_training=True)
    originals.update(expires_at=now)


def training_withdrawn(*, user_id: int) -> None:
    """Copies held only for training fall back to the original's deadline (so may be due now)."""
    now = clock.now()
    kept = Photo.objects.filter(owner_id=user_id, kept_for_training=True)
    for photo in kept:
        photo.kept_for_training = False
        photo.expires_at = max(now, min(photo.expires_at, photo.created_at + settings.RETENTION_ORIGINAL))
        if not consent_is_active(user_id=user_id, purpose_slug=PROCESSING):
            photo.expires_at = now
        photo.save(update_fields=["kept_for_training", "expires_at"])
