"""Account erasure: accept (key destroyed, account dead) in one transaction, then purge to a tombstone."""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.db import transaction
from rest_framework.authtoken.models import Token

from governance.erasure import erasure_accept, erasure_complete, erasure_mark_failed, erasure_mark_purging
from governance.errors import TimeveilError
from governance.models import ConsentRecord, ErasureRequest, ErasureStatus
from webplatform.jobs.models import JobStatus, TransformationJob
from webplatform.objects import object_delete

from .retention import HELD_MODELS


class PurgeIncomplete(TimeveilError):
    status, code, message = 503, "purge_incomplete", "Some objects could not be deleted yet; retrying."


def user_erase(*, user_id: int) -> tuple[ErasureRequest, str]:
    """Accept an erasure: destroy the data key, kill tokens and sessions, scrub the account, queue the purge.

    All of it in one transaction, O(1) in what the user holds: from the commit on their ciphertext is
    unreadable and they cannot sign in. The purge of objects and rows runs after, within the deadline.
    """
    from .tasks import erasure_purge_task

    with transaction.atomic():
        request, receipt = erasure_accept(user_id=user_id)
        Token.objects.filter(user_id=user_id).delete()
        # Inactive users get no session (ModelBackend) and no token auth; the new password hash also
        # invalidates every session's auth hash. Name and email go now rather than at purge time.
        get_user_model().objects.filter(pk=user_id).update(
            is_active=False, username=f"erased-{secrets.token_hex(8)}", email="", first_name="", last_name="",
            password=make_password(None),
        )
        TransformationJob.objects.filter(owner_id=user_id, status=JobStatus.QUEUED).update(
            status=JobStatus.FAILED, error="erased")
        transaction.on_commit(lambda: erasure_purge_task.delay(request.pk))
    return request, receipt


def erasure_purge(*, request_id: int) -> ErasureRequest:
    """Delete every object and row of an accepted erasure; idempotent, retried until done."""
    request = ErasureRequest.objects.get(pk=request_id)
    if request.status == ErasureStatus.DONE:
        return request
    erasure_mark_purging(request)
    user_id = request.user_id
    counts: dict[str, int] = {}
    failures = 0
    for model in HELD_MODELS:
        for obj in model.objects.filter(owner_id=user_id).only("pk", "storage_name").iterator():
            try:
                object_delete(obj.storage_name)
            except Exception as exc:  # any storage fault: keep the row so the retry finds the object
                failures += 1
                erasure_mark_failed(request, f"{type(exc).__name__}: {exc}")
                continue
            model.objects.filter(pk=obj.pk).delete()
            counts[model.KIND] = counts.get(model.KIND, 0) + 1
    if failures:
        raise PurgeIncomplete(details={"failed_objects": failures})
    with transaction.atomic():
        counts["jobs"] = TransformationJob.objects.filter(owner_id=user_id).delete()[0]
        counts["consent_records"] = ConsentRecord.objects.filter(user_id=user_id).delete()[0]
        get_user_model().objects.filter(pk=user_id).delete()  # cascades tokens and any remaining rows
        erasure_complete(request, counts=counts)
    return request


def erasures_pending() -> list[int]:
    """Ids of accepted erasures whose purge has not finished (the periodic job retries them)."""
    return list(ErasureRequest.objects.exclude(status=ErasureStatus.DONE).values_list("pk", flat=True))
