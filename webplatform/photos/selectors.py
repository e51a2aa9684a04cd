"""Reads of photos shared by the API, the pages, consent changes and export."""

from __future__ import annotations

from django.db.models import QuerySet

from governance import clock

from .models import Photo

# A photo is offered for training only with exactly one face: none has nothing to learn from, and with two
# the photo would carry a second person who never consented.
TRAINABLE_FACE_COUNT = 1


def photos_live(*, owner_id: int, newest_first: bool = True) -> QuerySet[Photo]:
    """The owner's photos not yet past their retention deadline, newest first unless asked otherwise."""
    return (Photo.objects.filter(owner_id=owner_id, expires_at__gt=clock.now())
            .order_by("-created_at" if newest_first else "created_at"))


def photos_trainable(*, owner_id: int) -> QuerySet[Photo]:
    """The owner's live photos that may be chosen for training: exactly one face found at upload."""
    return photos_live(owner_id=owner_id).filter(face_count=TRAINABLE_FACE_COUNT)


def photo_is_trainable(photo: Photo) -> bool:
    """Whether this photo may be chosen for training (the rule of photos_trainable, for one photo)."""
    return photo.face_count == TRAINABLE_FACE_COUNT and photo.expires_at > clock.now()
