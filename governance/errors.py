"""The one error hierarchy: each class carries its HTTP status and machine code; one handler renders them."""

from __future__ import annotations

from typing import Any


class TimeveilError(Exception):
    """Base of every error a client may see; rendered as {"error": {code, message, details}}."""

    status: int = 400
    code: str = "bad_request"
    message: str = "The request could not be processed."

    def __init__(self, message: str | None = None, *, details: dict[str, Any] | None = None) -> None:
        self.message = message or self.message
        self.details = details or {}
        super().__init__(self.message)


class InvalidInput(TimeveilError):
    status, code, message = 400, "invalid", "The request is not valid."


class NotAuthenticated(TimeveilError):
    status, code, message = (
        401,
        "not_authenticated",
        "Authentication credentials were not provided or are invalid.",
    )


class Forbidden(TimeveilError):
    status, code, message = 403, "forbidden", "You are not allowed to do this."


class ConsentRequired(Forbidden):
    code, message = "consent_required", "Active consent for this purpose is required."


class NotFound(TimeveilError):
    # Same answer for "missing" and "not yours": never reveal that another user's object exists.
    status, code, message = 404, "not_found", "Not found."


class Conflict(TimeveilError):
    status, code, message = 409, "conflict", "The request conflicts with the current state."


class StalePolicyVersion(Conflict):
    code, message = "stale_policy_version", "Consent must be given to the current policy version."


class BudgetExceeded(Conflict):
    code, message = "privacy_budget_exceeded", "This run would pass the lineage's privacy budget."


class CohortTooSmall(Conflict):
    code, message = (
        "cohort_too_small",
        "Too few people are eligible for a differentially private training run.",
    )


class PayloadTooLarge(TimeveilError):
    status, code, message = 413, "too_large", "The upload is too large."


class UnsupportedMediaType(TimeveilError):
    status, code, message = 415, "unsupported_media_type", "Only JPEG, PNG and WebP images are accepted."


class Unprocessable(TimeveilError):
    status, code, message = 422, "unprocessable", "The input was understood but cannot be processed."


class NoFace(Unprocessable):
    code, message = "no_face", "No face was found in the photo."


class ImageTooComplex(Unprocessable):
    """A JPEG whose scans would cost the decoder far more than any camera's file (photos/jpeg_scans.py)."""

    code, message = "image_too_complex", "The image would take too long to decode."


class Throttled(TimeveilError):
    status, code, message = 429, "throttled", "Too many requests; slow down."


class QueueFull(Throttled):
    """One person already has the most transformations a person may have waiting (JOB_QUEUED_PER_PERSON)."""

    code, message = "queue_full", ("You already have as many transformations waiting as one person may; "
                                   "try again when some have finished.")

    def __init__(self, *, retry_after: int, details: dict[str, Any]) -> None:
        self.retry_after = retry_after
        super().__init__(details=details)


class LoginLocked(Throttled):
    """Too many failed sign-ins for this account or address; `retry_after` seconds until the next try."""

    code, message = "login_locked", "Too many failed sign-ins; try again later."

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(details={"retry_after": retry_after})


class MailThrottled(Throttled):
    """Too many reset or confirmation mails asked for from one address, or for one e-mail address."""

    code, message = "mail_throttled", "Too many e-mail requests; try again later."

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(f"Too many e-mail requests from here or for this address. Try again in "
                         f"{max(1, round(retry_after / 60))} minutes.", details={"retry_after": retry_after})


class SignInUnavailable(TimeveilError):
    """The shared cache that counts failed sign-ins does not answer: no password is checked uncounted."""

    status, code, message = 503, "sign_in_unavailable", "Sign-in is briefly unavailable; try again shortly."
    retry_after = 30


class BodyTooDeep(InvalidInput):
    code, message = "too_deep", "The JSON body is nested too deeply."


class IntegrityFailure(TimeveilError):
    """Ciphertext tampered, truncated, mis-bound, or its key destroyed: never returns plaintext."""

    status, code, message = 500, "integrity_failure", "Stored data failed its integrity check."


class KeyDestroyed(IntegrityFailure):
    status, code, message = 410, "key_destroyed", "The data key was destroyed; this data is gone."


class ConfigurationError(Exception):
    """Settings are wrong: raised at start-up with a message that says what to set."""


class CorruptImage(InvalidInput):
    code, message = "corrupt_image", "The image is truncated or corrupt."
