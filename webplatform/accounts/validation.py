"""What a new account's username and e-mail must be: one validator for the sign-up page and the API.

Names are 3-150 word characters or `.@+-` (Django's own username alphabet, any script), in one script
(confusables.py), so spaces, zero-width and bidirectional controls (RLO), NUL and HTML never pass. Lengths
are checked here, not by the database, where PostgreSQL answered a 151-character name with a 500.
"""

from __future__ import annotations

import re
from typing import Any

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from governance.errors import InvalidInput

from .confusables import mixed_scripts

USERNAME_MIN, USERNAME_MAX = 3, 150  # auth.User.username holds 150
USERNAME_PATTERN = r"^[\w.@+-]+\Z"  # str patterns: \w is any script's letters and digits, and _
EMAIL_MAX = 254  # auth.User.email holds 254, as RFC 5321 allows
PASSWORD_MAX = 128  # auth.User.password holds the hash; this bounds the hashing work instead


def username_problems(username: str) -> list[str]:
    """Why this username cannot be registered (empty: it can)."""
    if not username:
        return ["Choose a username."]
    if not USERNAME_MIN <= len(username) <= USERNAME_MAX:
        return [f"Use {USERNAME_MIN} to {USERNAME_MAX} characters."]
    if not re.match(USERNAME_PATTERN, username):
        return ["Use letters, digits and . @ + - _ only: no spaces or invisible characters."]
    if scripts := mixed_scripts(username):
        return [f"Use letters of one script, not a mix ({', '.join(scripts)})."]
    return []


def email_problems(email: str) -> list[str]:
    """Why this e-mail address cannot be given (empty: it can; none at all is fine)."""
    if not email:
        return []
    if len(email) > EMAIL_MAX:
        return [f"Use at most {EMAIL_MAX} characters."]
    try:
        validate_email(email)
    except ValidationError:
        return ["Enter a valid e-mail address."]
    return []


def password_problems(password: str, *, user: Any) -> list[str]:
    """Why this password is refused: missing, too long to hash, or one of AUTH_PASSWORD_VALIDATORS'."""
    if not password:
        return ["Choose a password."]
    if len(password) > PASSWORD_MAX:
        return [f"Use at most {PASSWORD_MAX} characters."]
    try:
        validate_password(password, user=user)
    except ValidationError as exc:
        return list(exc.messages)
    return []


def registration_validate(*, username: str, email: str, password: str, user: Any) -> None:
    """Raise InvalidInput naming every field that is wrong or missing, each with what to do."""
    problems = {"username": username_problems(username), "email": email_problems(email),
                "password": password_problems(password, user=user)}
    problems = {field: said for field, said in problems.items() if said}
    if problems:
        message = "The password is too weak." if list(problems) == ["password"] else \
            f"Check {', '.join(problems)}."
        raise InvalidInput(message, details=problems)
