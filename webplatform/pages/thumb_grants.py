"""Thumbnail grants: the library page records one audit event for the thumbnails it lists, and signs for
each a short-lived grant (user, photo, that event's seq) carried in the image URL, so the thumbnail request
decrypts under that record instead of appending one event per thumbnail (issue 23).

A grant is only good for its user and photo, for PHOTO_THUMB_GRANT_SECONDS: a URL copied elsewhere opens
nothing for anyone else, and a thumbnail asked for without one is audited on its own as before."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core import signing

_SALT = "timeveil.pages.thumb-grant"


def grant_sign(*, user_id: int, photo_id: uuid.UUID, event_seq: int) -> str:
    return signing.TimestampSigner(salt=_SALT).sign(f"{user_id}:{photo_id}:{event_seq}")


def grant_valid(token: str | None, *, user_id: int, photo_id: uuid.UUID) -> bool:
    """Signed by us, recent, and for this user and photo."""
    if not token:
        return False
    try:
        value = signing.TimestampSigner(salt=_SALT).unsign(token, max_age=settings.PHOTO_THUMB_GRANT_SECONDS)
    except signing.BadSignature:  # covers SignatureExpired
        return False
    uid, pid, _ = value.split(":")
    return uid == str(user_id) and pid == str(photo_id)
