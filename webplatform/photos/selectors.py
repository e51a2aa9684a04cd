"""Reads of photos shared by the API, the pages, consent changes and export."""

from __future__ import annotations

from django.db.models import QuerySet

from governance import clock

from .models import Photo


def photos_live(*, owner_id: int, newest_first: bool = True) -> QuerySet[Photo]:
    """The owner's photos not yet past their retention deadline, newest first unless asked otherwise."""
    return (Photo.objects.filter(owner_id=owner_id, expires_at__gt=clock.now())
            .order_by("-created_at" if newest_first else "created_at"))
