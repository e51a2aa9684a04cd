"""The consent ledger: purposes and policy versions, append-only grants and withdrawals, the one check."""

from __future__ import annotations

import hashlib
from typing import Any

from django.db import transaction
from django.db.models import OuterRef, Subquery

from . import clock
from .audit import audit_append, pseudonym
from .audit_actions import AuditAction
from .errors import ConsentRequired, NotFound, StalePolicyVersion
from .models import ConsentRecord, PolicyVersion, Purpose

PROCESSING = "processing"
TRAINING = "training"


def policy_publish(*, purpose_slug: str, text: str, name: str | None = None) -> PolicyVersion:
    """Publish a new policy version for a purpose (creating the purpose on first use)."""
    with transaction.atomic():
        purpose, _ = Purpose.objects.get_or_create(slug=purpose_slug, defaults={"name": name or purpose_slug})
        last = purpose.versions.order_by("-version").first()
        policy = PolicyVersion.objects.create(
            purpose=purpose, version=(last.version + 1) if last else 1, text=text,
            sha256=hashlib.sha256(text.encode()).hexdigest(), published_at=clock.now(),
        )
        audit_append(action=AuditAction.POLICY_PUBLISHED, actor_id=None, subject="policy",
                     object_ref=f"policy:{purpose_slug}:{policy.version}", details={"sha256": policy.sha256})
    return policy


def policy_current(purpose: Purpose) -> PolicyVersion:
    """The newest published version of a purpose's policy."""
    policy = purpose.versions.order_by("-version").first()
    if policy is None:
        raise NotFound(f"Purpose {purpose.slug!r} has no published policy.")
    return policy


def purpose_get(slug: str) -> Purpose:
    """A purpose by slug, or 404."""
    purpose = Purpose.objects.filter(slug=slug).first()
    if purpose is None:
        raise NotFound(f"Unknown purpose {slug!r}.", details={"purposes": list_purpose_slugs()})
    return purpose


def list_purpose_slugs() -> list[str]:
    return list(Purpose.objects.order_by("slug").values_list("slug", flat=True))


def consent_set(
    *, user_id: int, purpose_slug: str, granted: bool, policy_version: int | None
) -> ConsentRecord:
    """Record a grant or withdrawal as a new row. A grant must name the current policy version (else 409)."""
    purpose = purpose_get(purpose_slug)
    with transaction.atomic():
        current = policy_current(purpose)
        if granted and policy_version != current.version:
            raise StalePolicyVersion(
                f"Policy version {policy_version} is not current for {purpose_slug!r}; read version "
                f"{current.version} and consent to it.",
                details={"current_version": current.version, "current_sha256": current.sha256},
            )
        record = ConsentRecord.objects.create(
            user_id=user_id, subject=pseudonym(user_id), purpose=purpose, policy=current, granted=granted,
            at=clock.now(),
        )
        audit_append(action=AuditAction.CONSENT_GRANTED if granted else AuditAction.CONSENT_WITHDRAWN,
                     actor_id=user_id, subject_id=user_id, object_ref=f"consent:{record.id}",
                     details={"purpose": purpose_slug, "policy_version": current.version})
    return record


def consent_latest(*, user_id: int, purpose_slug: str) -> ConsentRecord | None:
    """The user's newest consent record for a purpose, if any."""
    return (ConsentRecord.objects.filter(user_id=user_id, purpose__slug=purpose_slug)
            .select_related("policy").order_by("-at", "-pk").first())


def consent_is_active(*, user_id: int, purpose_slug: str) -> bool:
    """May this user's data be used for this purpose now? The one answer everything asks.

    Yes only if the newest record is a grant of the purpose's current policy version: publishing a
    new version asks everyone again rather than stretching old consent over new terms. One query: it runs
    on every upload and every job.
    """
    current = (PolicyVersion.objects.filter(purpose_id=OuterRef("purpose_id"))
               .order_by("-version").values("version")[:1])
    record = (ConsentRecord.objects.filter(user_id=user_id, purpose__slug=purpose_slug)
              .annotate(current_version=Subquery(current))
              .order_by("-at", "-pk").values("granted", "policy__version", "current_version").first())
    return bool(record and record["granted"] and record["policy__version"] == record["current_version"])


def consent_require(*, user_id: int, purpose_slug: str) -> None:
    """Raise ConsentRequired (403) unless consent for the purpose is active."""
    if not consent_is_active(user_id=user_id, purpose_slug=purpose_slug):
        raise ConsentRequired(
            f"Active consent for '{purpose_slug}' is required; "
            f"grant it with PUT /api/v1/me/consents/{purpose_slug}.",
            details={"purpose": purpose_slug},
        )


def consent_receipt(record: ConsentRecord) -> dict[str, Any]:
    """The receipt a user keeps: what they agreed to, when, under which exact policy text."""
    return {
        "receipt_id": str(record.id),
        "at": record.at.isoformat(),
        "subject": record.subject,
        "purpose": record.purpose.slug,
        "policy_version": record.policy.version,
        "policy_sha256": record.policy.sha256,
        "granted": record.granted,
        "state": "granted" if record.granted else "withdrawn",
    }


def consent_states(*, user_id: int) -> list[dict[str, Any]]:
    """Current state per purpose for one user."""
    states = []
    for purpose in Purpose.objects.order_by("slug"):
        record = consent_latest(user_id=user_id, purpose_slug=purpose.slug)
        current = policy_current(purpose)
        states.append({
            "purpose": purpose.slug,
            "active": consent_is_active(user_id=user_id, purpose_slug=purpose.slug),
            "granted": bool(record and record.granted),
            "policy_version": record.policy.version if record else None,
            "current_policy_version": current.version,
            "since": record.at.isoformat() if record else None,
        })
    return states
