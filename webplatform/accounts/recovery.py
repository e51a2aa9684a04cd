"""Account recovery: confirmation links for e-mail addresses, and password-reset mail to confirmed ones only.

A reset link hands the account, and the photos in it, to whoever reads that mailbox, so it goes only to an
address whose owner clicked a confirmation link (an address typed by mistake, or someone else's, gets
nothing but that confirmation link). A reset request never tells whether an account exists: the page
answers the same, and the request does the same work whatever the address (one lookup, one task published
with the matching user ids, maybe none). The task builds and sends the mail: a `default` worker at scale;
in embedded mode it runs in the request, where a slow SMTP server could be timed (the console backend
answers at once). The broker carries user ids only, never an address or a link.
"""

from __future__ import annotations

import base64
import logging
import uuid
from typing import Any

from django.conf import settings
from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth.forms import PasswordResetForm
from django.contrib.auth.tokens import default_token_generator
from django.contrib.sites.shortcuts import get_current_site
from django.core import signing
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage
from django.core.validators import validate_email
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac

from governance.audit import audit_append
from governance.audit_actions import AuditAction
from governance.errors import InvalidInput
from webplatform.taskqueue import ACCOUNT_MAIL, publish

from .lockout import client_address, login_wait
from .models import Account
from .services import credentials_revoke_all

log = logging.getLogger(__name__)
RESET, VERIFY = "password_reset", "verify_email"
_VERIFY_SALT = "timeveil.accounts.email-verify"


def email_verified(user: Any) -> bool:
    """Whether the user's current e-mail address was confirmed by whoever reads it."""
    return bool(user.email) and Account.objects.filter(user=user, email_verified_at__isnull=False).exists()


def uid_encode(user: Any) -> str:
    """The account's opaque public id for a link (Django's default, the primary key, counts the accounts)."""
    public = Account.objects.values_list("public_id", flat=True).get(user_id=user.pk)
    return base64.urlsafe_b64encode(public.bytes).decode().rstrip("=")


def user_by_uid(uidb64: str) -> Any | None:
    """The active user a link's uid names, or None for anything else."""
    try:
        public = uuid.UUID(bytes=base64.urlsafe_b64decode(uidb64 + "=" * (-len(uidb64) % 4)))
    except (ValueError, TypeError):
        return None
    return get_user_model()._default_manager.filter(account__public_id=public, is_active=True).first()


def _email_digest(email: str) -> str:
    # Binds a confirmation link to the address it was sent to, without putting the address in the link.
    return salted_hmac(_VERIFY_SALT, email.casefold()).hexdigest()[:32]


def email_verify_token(user: Any) -> str:
    """A signed, timestamped token naming the account and the address it confirms."""
    return signing.dumps({"a": uid_encode(user), "e": _email_digest(user.email)}, salt=_VERIFY_SALT)


def email_verify(*, token: str) -> Any:
    """Confirm the address a link was sent to; InvalidInput for a bad, expired or outdated link."""
    invalid = InvalidInput("This confirmation link is not valid: it has expired, or your e-mail address "
                           "changed since it was sent. Sign in and ask for a new one on your account page.")
    try:
        claim = signing.loads(token, salt=_VERIFY_SALT, max_age=settings.EMAIL_VERIFY_MAX_AGE)
    except signing.BadSignature as exc:  # SignatureExpired included
        raise invalid from exc
    user = user_by_uid(str(claim.get("a", "")))
    if user is None or not user.email:
        raise invalid
    if not constant_time_compare(claim.get("e", ""), _email_digest(user.email)):
        raise invalid
    with transaction.atomic():
        updated = Account.objects.filter(user=user, email_verified_at__isnull=True).update(
            email_verified_at=timezone.now())
        if updated:
            audit_append(action=AuditAction.ACCOUNT_EMAIL_VERIFIED, actor_id=user.pk, subject_id=user.pk,
                         object_ref="account")
    return user


def email_change(*, user: Any, email: str, password: str, request: Any) -> None:
    """Set a new address (or none) after checking the password; it is unconfirmed until its link is used."""
    email = get_user_model().objects.normalize_email(email.strip())
    if email:
        try:
            validate_email(email)
        except ValidationError as exc:
            raise InvalidInput("Enter a valid e-mail address.",
                               details={"email": list(exc.messages)}) from exc
    if login_wait(username=user.get_username(), address=client_address(request)) is not None:
        raise InvalidInput("Too many wrong passwords from here: try again later.",
                           details={"password": ["locked"]})
    # Through the sign-in limits: a borrowed session guesses the password here no faster than at sign-in.
    if authenticate(request, username=user.get_username(), password=password) is None:
        raise InvalidInput("That is not your password.", details={"password": ["wrong"]})
    with transaction.atomic():
        user.email = email
        user.save(update_fields=["email"])
        Account.objects.filter(user=user).update(email_verified_at=None)
        audit_append(action=AuditAction.ACCOUNT_EMAIL_CHANGED, actor_id=user.pk, subject_id=user.pk,
                     object_ref="account")
    if email:
        account_mail_queue(kind=VERIFY, user_ids=[user.pk], request=request)


def account_mail_queue(*, kind: str, user_ids: list[int], request: Any) -> None:
    """Publish the mail task after the commit (the worker must see the rows); same call for no users."""
    domain, secure = get_current_site(request).domain, request.is_secure()
    transaction.on_commit(lambda: publish(ACCOUNT_MAIL, kind, user_ids, domain, secure))


def _send(*, user: Any, template: str, context: dict[str, Any]) -> None:
    context = {**context, "user": user, "site_name": "Timeveil"}
    subject = "".join(render_to_string(f"account/mail/{template}_subject.txt", context).splitlines())
    body = render_to_string(f"account/mail/{template}.txt", context)
    EmailMessage(subject, body, settings.DEFAULT_FROM_EMAIL, [user.email]).send()


def account_mail_send(*, kind: str, user_ids: list[int], domain: str, secure: bool) -> int:
    """Build and send the mails (the task's body); returns how many went. Rules are checked again here."""
    base = f"{'https' if secure else 'http'}://{domain}"
    sent = 0
    for user in get_user_model()._default_manager.filter(pk__in=user_ids, is_active=True).exclude(email=""):
        verified = email_verified(user)
        if kind == RESET and verified and user.has_usable_password():
            token = default_token_generator.make_token(user)
            path = reverse("password_reset_confirm", kwargs={"uidb64": uid_encode(user), "token": token})
            _send(user=user, template="reset", context={
                "link": base + path, "minutes": settings.PASSWORD_RESET_TIMEOUT // 60})
        elif kind == VERIFY and not verified:
            path = reverse("email-verify", kwargs={"token": email_verify_token(user)})
            _send(user=user, template="verify", context={
                "link": base + path, "days": settings.EMAIL_VERIFY_MAX_AGE // 86400})
        else:
            continue
        sent += 1
    return sent


class VerifiedAddressResetForm(PasswordResetForm):
    """Django's reset form, but the mail is sent by a task, only to confirmed addresses, with opaque ids."""

    def save(self, *args: Any, request: Any = None, **kwargs: Any) -> None:
        """Queue the mail for the matching accounts, if any: the same work either way."""
        ids = [u.pk for u in self.get_users(self.cleaned_data["email"])]
        account_mail_queue(kind=RESET, user_ids=ids, request=request)


def password_reset_finish(*, user: Any) -> None:
    """After a reset: sign out every session and API token of the account (someone may have held them)."""
    with transaction.atomic():
        audit_append(action=AuditAction.ACCOUNT_PASSWORD_RESET, actor_id=user.pk, subject_id=user.pk,
                     object_ref="account")
        credentials_revoke_all(user_id=user.pk)
