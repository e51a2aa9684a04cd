"""The audit vocabulary: every action the chain may record, each with what it means to a reader of the trail.

`audit_append` takes an `AuditAction`, so mypy checks every call site; a stored event holds the member's
value (the string, unchanged since actions were strings). docs/audit.md lists the same actions, and
tests/test_audit.py holds the list to this enum. Removing a member leaves its stored events filterable on
the officer's page as "no longer written".
"""

from __future__ import annotations

from enum import StrEnum
from typing import Self


class AuditAction(StrEnum):
    """One action of the trail: the member's value is what is stored, `meaning` what it says to a reader."""

    meaning: str

    def __new__(cls, value: str, meaning: str) -> Self:
        member = str.__new__(cls, value)
        member._value_ = value
        member.meaning = meaning
        return member

    ACCOUNT_CREATED = "account.created", "An account was registered"
    ACCOUNT_CREDENTIALS_REVOKED = (
        "account.credentials_revoked", "The user signed out everywhere: token and sessions revoked")
    ACCOUNT_EMAIL_CHANGED = "account.email_changed", "The user changed their e-mail address (now unconfirmed)"
    ACCOUNT_EMAIL_VERIFIED = (
        "account.email_verified", "The owner of the account's e-mail address confirmed it")
    ACCOUNT_PASSWORD_RESET = (
        "account.password_reset", "The password was reset through a link sent to the confirmed address")
    POLICY_PUBLISHED = "policy.published", "A new policy version was published for a purpose"
    CONSENT_GRANTED = "consent.granted", "Consent to a purpose was granted"
    CONSENT_WITHDRAWN = "consent.withdrawn", "Consent to a purpose was withdrawn"
    PHOTO_UPLOADED = "photo.uploaded", "A photo was uploaded and stored encrypted"
    PHOTO_CONTENT_READ = "photo.content_read", "A photo's content was decrypted for its owner"
    PHOTO_LIBRARY_SHOWN = (
        "photo.library_shown", "The owner's photo library was shown: one event for the thumbnails of the "
        "photos it lists (details.photos), each decrypted for the owner when the page loads them")
    PHOTO_CONTENT_READ_FAILED = (
        "photo.content_read_failed",
        "Reading a photo's content failed (destroyed key or tampered ciphertext)")
    PHOTO_TRAINING_CHOSEN = "photo.training_chosen", "The owner chose the photo kept for training"
    PHOTO_DELETED = "photo.deleted", "The owner deleted a photo (retention removes it and its results)"
    PHOTO_EXPIRED = "photo.expired", "Retention deleted a photo because its deadline passed"
    PHOTO_PURGED_ON_REQUEST = (
        "photo.purged_on_request", "A photo its owner deleted was removed (actor: the owner)")
    PHOTO_PURGED_ON_WITHDRAWAL = (
        "photo.purged_on_withdrawal", "A photo was removed as its owner withdrew consent (actor: the owner)")
    RESULT_EXPIRED = (
        "result.expired", "Retention deleted a transformation result because its deadline passed")
    RESULT_PURGED_ON_REQUEST = (
        "result.purged_on_request", "A result of a photo its owner deleted was removed (actor: the owner)")
    RESULT_PURGED_ON_WITHDRAWAL = (
        "result.purged_on_withdrawal",
        "A result was removed as its owner withdrew consent (actor: the owner)")
    RESULT_DELETED = "result.deleted", "A transformation result was deleted with its photo"
    RESULT_CONTENT_READ = (
        "result.content_read", "A transformation result's content was decrypted for its owner")
    OBJECT_ORPHAN_DELETED = (
        "object.orphan_deleted", "Ciphertext that no row names was deleted after its grace period")
    JOB_CREATED = "job.created", "A transformation was requested"
    JOB_COMPLETED = "job.completed", "A transformation finished and its result was stored"
    JOB_FAILED = "job.failed", "A transformation failed (the failure code says why)"
    JOB_REQUEUED = "job.requeued", "A job whose worker was lost went back to the queue"
    EXPORT_GENERATED = "export.generated", "The user's data export was generated"
    ERASURE_ACCEPTED = (
        "erasure.accepted", "An erasure was accepted: the data key is destroyed, the purge begins")
    ERASURE_COMPLETED = "erasure.completed", "An erasure's purge finished; only a tombstone remains"
    KEYS_ROTATED = "keys.rotated", "The key-encryption key was rotated and data keys re-wrapped"
    TRAINING_RESERVED = (
        "training.reserved", "A DP training run froze its manifest and reserved its epsilon")
    TRAINING_STARTED = "training.started", "A DP training run started"
    TRAINING_FINISHED = "training.finished", "A DP training run finished (succeeded or failed)"
    TRAINING_REFUSED = (
        "training.refused",
        "A DP training run was refused after its noisy count was drawn; the count is charged")
    TRAINING_PRIVACY_AUDIT = (
        "training.privacy_audit", "An empirical privacy audit of the DP code was recorded")
    MODEL_TRAINED = (
        "model.trained", "A model version was trained without users' data (synthetic or a folder)")
    MODEL_PROMOTED = "model.promoted", "A model version was promoted to serve"
    AUDIT_PENDING_REFUSED = (
        "audit.pending_refused", "A queued audit event whose signature did not verify was refused, not "
        "chained (written or edited there by a database writer; object_ref names the queue row)")


# The stored values, for checking text from outside the type checker (a queued row, a filter's query).
KNOWN_ACTIONS: frozenset[str] = frozenset(action.value for action in AuditAction)
