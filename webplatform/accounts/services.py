"""Account writes: register an end user (with their data key), issue tokens."""

from __future__ import annotations

from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth.models import AbstractUser
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from rest_framework.authtoken.models import Token

from governance.audit import audit_append
from governance.errors import Conflict, InvalidInput, NotAuthenticated
from governance.keys import data_key_create


def user_register(*, username: str, password: str, email: str = "") -> tuple[AbstractUser, str]:
    """Create an end user with a fresh data key and an API token; returns (user, token key)."""
    User = get_user_model()
    candidate = User(username=username, email=email)
    try:
        validate_password(password, user=candidate)
    except ValidationError as exc:
        raise InvalidInput("The password is too weak.", details={"password": list(exc.messages)}) from exc
    taken = Conflict("That username is taken.", details={"username": ["taken"]})
    try:
        with transaction.atomic():
            if User.objects.filter(username__iexact=username).exists():
                raise taken
            user = User.objects.create_user(username=username, email=email, password=password)
            data_key_create(user=user)
            token = Token.objects.create(user=user)
            audit_append(action="account.created", actor_id=user.pk, subject_id=user.pk, object_ref="account")
    except IntegrityError as exc:  # a concurrent registration of the same name won the race
        raise taken from exc
    return user, token.key


def token_obtain(*, username: str, password: str) -> str:
    """Exchange credentials for the user's API token (401 on bad credentials or an erased account)."""
    user = authenticate(username=username, password=password)
    if user is None or not user.is_active:
        raise NotAuthenticated("Invalid username or password.")
    token, _ = Token.objects.get_or_create(user=user)
    return token.key
