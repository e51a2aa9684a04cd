"""Pages for account recovery: Django's password-reset views in the site's style, the account page, and
the e-mail confirmation link. The rules live in accounts/recovery.py."""

from __future__ import annotations

import hashlib
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from governance.errors import InvalidInput, MailThrottled
from webplatform.accounts.lockout import client_address
from webplatform.accounts.models import Account
from webplatform.accounts.recovery import (
    VERIFY,
    VerifiedAddressResetForm,
    account_mail_queue,
    email_change,
    email_verified,
    email_verify,
    password_reset_finish,
    user_by_uid,
)
from webplatform.api.throttling import FailOpen


class _MailThrottle(FailOpen, SimpleRateThrottle):
    """DRF's rate limit (scope `account_mail`, THROTTLE_ACCOUNT_MAIL) on one named counter."""

    scope = "account_mail"

    def __init__(self, ident: str) -> None:
        self.ident = ident
        super().__init__()

    def get_rate(self) -> str:
        # Read now: DRF keeps a class-level copy made at import, which test settings cannot change.
        return str(api_settings.DEFAULT_THROTTLE_RATES[self.scope])

    def get_cache_key(self, request: Any, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.ident}


def _mail_throttle(request: HttpRequest, email: str) -> None:
    """Count a mail request per caller address and per e-mail address asked for (accounts or not)."""
    to = hashlib.sha256(email.strip().casefold().encode()).hexdigest()[:32]  # the cache holds no address
    for ident in (f"from:{client_address(request)}", f"to:{to}"):
        throttle = _MailThrottle(ident)
        if not throttle.allow_request(request, None):
            raise MailThrottled(int(throttle.wait() or 60) + 1)


class PasswordResetView(auth_views.PasswordResetView):
    """Ask for a reset link: the same answer whether or not the address has an account."""

    form_class = VerifiedAddressResetForm
    template_name = "account/reset.html"
    success_url = reverse_lazy("password_reset_done")

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return {**super().get_context_data(**kwargs), "minutes": settings.PASSWORD_RESET_TIMEOUT // 60}

    def form_valid(self, form: Any) -> HttpResponse:
        _mail_throttle(self.request, form.cleaned_data["email"])
        return super().form_valid(form)


class PasswordResetSentView(auth_views.PasswordResetDoneView):
    template_name = "account/reset_sent.html"


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    """Set a new password from the link; the link names the account by its public id, not its key."""

    template_name = "account/reset_confirm.html"
    success_url = reverse_lazy("password_reset_complete")

    def get_user(self, uidb64: str) -> Any:
        return user_by_uid(uidb64)

    def form_valid(self, form: Any) -> HttpResponse:
        response = super().form_valid(form)
        password_reset_finish(user=form.user)
        return response


class PasswordResetCompleteView(auth_views.PasswordResetCompleteView):
    template_name = "account/reset_complete.html"


@login_required
def account(request: HttpRequest) -> HttpResponse:
    """The e-mail address and whether it is confirmed (GET); change it, or send its link again (POST)."""
    user: Any = request.user
    context: dict[str, Any] = {"errors": {}}
    if request.method == "POST" and request.POST.get("action") == "email":
        try:
            email_change(user=user, email=request.POST.get("email", ""),
                         password=request.POST.get("password", ""), request=request)
        except InvalidInput as exc:
            context["errors"] = exc.details
            context["message"] = exc.message
        else:
            messages.success(request, f"Saved. We sent a confirmation link to {user.email}." if user.email
                             else "Saved: your account has no e-mail address now.")
            return redirect("page-account")
    elif request.method == "POST" and user.email and not email_verified(user):
        _mail_throttle(request, user.email)
        account_mail_queue(kind=VERIFY, user_ids=[user.pk], request=request)
        messages.success(request, f"We sent a new confirmation link to {user.email}.")
        return redirect("page-account")
    context["verified_at"] = Account.objects.values_list("email_verified_at", flat=True).get(user_id=user.pk)
    return render(request, "account/account.html", context, status=400 if context["errors"] else 200)


def email_verify_page(request: HttpRequest, token: str) -> HttpResponse:
    """A confirmation link: a button (a mail scanner's GET confirms nothing), then the POST confirms."""
    if request.method != "POST":
        return render(request, "account/verify.html", {"token": token})
    try:
        email_verify(token=token)
    except InvalidInput as exc:
        return render(request, "account/verify.html", {"token": token, "error": exc.message}, status=400)
    messages.success(request, "Thank you: your e-mail address is confirmed. A forgotten password can now be "
                              "reset by e-mail.")
    return redirect("page-account" if request.user.is_authenticated else "login")
