"""Per-account facts beside Django's user row: the opaque public id and the look-alike name key."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class Account(models.Model):
    """One per user, made when the user is (any path: register, createsuperuser, bootstrap)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="account")
    # What clients see instead of the sequential primary key, which would reveal how many accounts exist.
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # Keyed hash of the username's skeleton (confusables.py): unique, so `аdmin` cannot sit beside `admin`;
    # keyed so the table does not hold a readable form of the name. Null for rows that predate it and clash.
    name_key = models.CharField(max_length=64, unique=True, null=True)
    # When the owner of the user's e-mail address confirmed it (recovery.py); null: not confirmed, and no
    # password-reset mail goes there. Cleared whenever the address changes.
    email_verified_at = models.DateTimeField(null=True, blank=True)
