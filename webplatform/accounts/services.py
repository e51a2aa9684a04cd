"""Account writes: register an end user, give every new user an account row and data key, issue tokens."""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache
from importlib import import_module
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.contrib.auth import SESSION_KEY, authenticate, get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import AbstractUser
from django.contrib.sessions.models import Session
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.authtoken.models import Token

from governance.audit import audit_append
from governance.audit_actions import AuditAction
from governance.errors import Conflict, NotAuthenticated
from governance.keys import data_key_create, get_keyring
from governance.models import DataKey

from .confusables import skeleton
from .lockout import login_refusal
from .models import Account
from .validation import registration_validate


@lru_cache(maxsize=4)
def _name_key_root(pseudonym_key: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"timeveil/accounts/name/v1").derive(
        pseudonym_key)


def username_key(username: str) -> str:
    """The keyed hash of a username's skeleton: equal for look-alike names, unreadable without the key."""
    return hmac.new(_name_key_root(get_keyring().pseudonym_key()), skeleton(username).encode(),
                    hashlib.sha256).hexdigest()


def account_create(*, user: Any) -> Account:
    """Give a new user their account row (public id, name key) and a data key, whatever created the user."""
    account = Account.objects.create(user=user, name_key=username_key(user.username))
    if not DataKey.objects.filter(user=user).exists():
        data_key_create(user=user)
    return account


def user_register(*, username: str, password: str, email: str = "") -> tuple[AbstractUser, str]:
    """Create an end user with a fresh data key and an API token; returns (user, token key)."""
    User = get_user_model()
    registration_validate(username=username, email=email, password=password,
                          user=User(username=username, email=email))
    taken = Conflict("That username is taken.", details={"username": ["taken"]})
    # Hashed before the transaction: argon2 takes 100+ ms, and SQLite holds its write lock from BEGIN.
    password_hash = make_password(password)
    try:
        with transaction.atomic():
            # Same answer for a look-alike as for the same name: either way it is someone else's.
            if (User.objects.filter(username__iexact=username).exists()
                    or Account.objects.filter(name_key=username_key(username)).exists()):
                raise taken
            user = User.objects.create(
                username=User.normalize_username(username),  # + account_create (signal)
                email=User.objects.normalize_email(email),
                password=password_hash,
            )
            token = Token.objects.create(user=user)
            audit_append(action=AuditAction.ACCOUNT_CREATED, actor_id=user.pk, subject_id=user.pk,
                         object_ref="account")
    except IntegrityError as exc:  # a concurrent registration of the same (or a look-alike) name won the race
        raise taken from exc
    return user, token.key


def public_id(user: Any) -> str:
    """The opaque id clients see for a user."""
    return str(Account.objects.values_list("public_id", flat=True).get(user_id=user.pk))


def token_obtain(*, username: str, password: str, request: Any = None) -> str:
    """Exchange credentials for the user's API token (401 on bad credentials or an erased account).

    Limited per account and per address (lockout.py): a locked pair gets 429 before any password check.
    An expired token is replaced by a fresh one.
    """
    refusal = login_refusal(username=username, request=request)
    if refusal is not None:
        raise refusal
    user = authenticate(request, username=username, password=password)
    if user is None or not user.is_active:
        raise NotAuthenticated("Invalid username or password.")
    with transaction.atomic():
        token = Token.objects.select_for_update().filter(user=user).first()
        if token is not None and token_expired(token):
            token.delete()
            token = None
        if token is None:
            token = Token.objects.create(user=user)
    return token.key


def token_expired(token: Token) -> bool:
    """A token older than API_TOKEN_LIFETIME no longer authenticates."""
    # The wall clock, as Token.created is stamped with it; governance.clock is moved by time-travel tests.
    return timezone.now() >= token.created + settings.API_TOKEN_LIFETIME


def credentials_revoke_all(*, user_id: int) -> dict[str, int]:
    """Sign the user out everywhere: delete their API token and every session of theirs; audited."""
    with transaction.atomic():
        tokens = Token.objects.filter(user_id=user_id).delete()[0]
        sessions = _sessions_end(user_id)
        audit_append(action=AuditAction.ACCOUNT_CREDENTIALS_REVOKED, actor_id=user_id, subject_id=user_id,
                     object_ref="account", details={"tokens": tokens, "sessions": sessions})
    return {"tokens": tokens, "sessions": sessions}


def _sessions_end(user_id: int) -> int:
    """End the user's stored sessions. Session keys are random, so a listable store (db) is scanned."""
    if settings.SESSION_ENGINE not in ("django.contrib.sessions.backends.db",
                                       "django.contrib.sessions.backends.cached_db"):
        return 0  # other stores cannot be listed; the token is gone and sessions expire on their own
    store = import_module(settings.SESSION_ENGINE).SessionStore
    # The wall clock, as Django stamps expire_date with it (like Token.created above).
    mine = [s.session_key for s in Session.objects.filter(expire_date__gt=timezone.now()).iterator()
            if s.get_decoded().get(SESSION_KEY) == str(user_id)]
    for session_key in mine:
        store(session_key=session_key).delete()
    return len(mine)
