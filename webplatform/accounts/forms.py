"""The sign-in form for pages: says when sign-in is locked (accounts/lockout.py), not "wrong password"."""

from __future__ import annotations

import math
from typing import Any

from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError

from governance.errors import LoginLocked

from .addresses import client_address
from .lockout import login_wait


class SignInForm(AuthenticationForm):
    """AuthenticationForm checking login limits first; use as LoginView(authentication_form=SignInForm)."""

    error_messages = {
        **AuthenticationForm.error_messages,
        "locked": "Too many failed sign-ins for this account from here. Try again in %(minutes)d minutes.",
    }

    def clean(self) -> dict[str, Any]:
        username = self.cleaned_data.get("username")
        if username:
            wait = login_wait(username=username, address=client_address(self.request))
            if wait is not None:
                raise self._locked(wait)
        try:
            return super().clean()
        except LoginLocked as exc:  # the attempt found no place (a parallel burst): no password was checked
            raise self._locked(exc.retry_after) from exc

    def _locked(self, wait: float) -> ValidationError:
        # The same time the API's Retry-After gives, rounded up to whole minutes.
        return ValidationError(self.error_messages["locked"], code="locked",
                               params={"minutes": math.ceil(wait / 60)})
