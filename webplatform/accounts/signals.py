"""Every new user gets an account row and a data key, whichever path made them (createsuperuser too)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db.models.signals import post_save

from .services import account_create


def _account_for_new_user(
    sender: Any, instance: Any, created: bool, raw: bool = False, **kwargs: Any
) -> None:
    if created and not raw:  # raw: loaddata restores rows, accounts included
        account_create(user=instance)


def connect() -> None:
    post_save.connect(
        _account_for_new_user, sender=get_user_model(), dispatch_uid="accounts.account_for_new_user"
    )
