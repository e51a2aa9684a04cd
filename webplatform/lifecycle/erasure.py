"""Account erasure: accept (key destroyed, account dead) in one transaction, then purge to a tombstone."""

from __future__ import annotations

import secrets
from importlib import import_module

from django.conf import settings
from django.contrib.auth import SESSION_KEY, get_user_model
from django.contrib.auth.hashers import make_password
from django.db import transaction
from rest_framework.authtoken.models import Token

from governance.erasure_requests import (
    erasure_accept,
    erasure_complete,
    erasure_mark_failed,
    erasure_mark_purging,
)
from governance.errors import TimeveilError
from governance.models import ConsentRecord, ErasureRequest, ErasureStatus
from webplatform import metrics
from webplatform.accounts.models import Account
from webplatform.jobs.models import JobFailure, JobStatus, TransformationJob, TransformationResult
from webplatform.taskqueue import ERASURE_PURGE, publish

from .retention import BATCH, HELD_MODELS, objects_purge


class PurgeIncomplete(TimeveilError):
    status, code, message = 503, "purge_incomplete", "Some objects could not be deleted yet; retrying."


def user_erase(*, user_id: int) -> tuple[ErasureRequest, str]:
    """Accept an erasure: destroy the data key, kill tokens and sessions, scrub the account, queue the purge.

    All of it in one transaction, O(1) in what the user holds: from the commit on their ciphertext is
    unreadable and they cannot sign in. The purge of objects and rows runs after, within the deadline.
    """
    with transaction.atomic():
        request, receipt = erasure_accept(user_id=user_id)
        Token.objects.filter(user_id=user_id).delete()
        # Inactive users get no session (ModelBackend) and no token auth; the new password hash also
        # invalidates every session's auth hash. Name and email go now rather than at purge time.
        get_user_model().objects.filter(pk=user_id).update(
            is_active=False, username=f"erased-{secrets.token_hex(8)}", email="", first_name="", last_name="",
            password=make_password(None),
        )
        # The keyed name key goes with the name: the scrubbed account must not still match the old username.
        Account.objects.filter(user_id=user_id).update(name_key=None)
        TransformationJob.objects.filter(owner_id=user_id, status=JobStatus.QUEUED).update(
            status=JobStatus.FAILED, error=JobFailure.ERASED)
        # The tombstone is the outbox: if the broker is down, the periodic retention job purges it instead.
        transaction.on_commit(lambda: publish(ERASURE_PURGE, request.pk))
    metrics.ERASURES.labels("accepted").inc()
    return request, receipt


def erasure_purge(*, request_id: int) -> ErasureRequest:
    """Delete every object and row of an accepted erasure; idempotent, retried until done."""
    request = ErasureRequest.objects.get(pk=request_id)
    if request.status == ErasureStatus.DONE:
        return request
    user_id = request.user_id
    if user_id is None:  # done already: only finished tombstones forget the user id
        return request
    erasure_mark_purging(request)
    counts: dict[str, int] = {}
    failed: set = set()
    errors: list[str] = []
    for model in HELD_MODELS:
        # Until nothing is left (not "until a short batch"): a locked batch may come back short on PostgreSQL.
        while True:
            with transaction.atomic():
                rows = model.objects.filter(owner_id=user_id).exclude(pk__in=failed).order_by("pk")
                batch = list(rows.select_for_update()[:BATCH])  # waits for a retention runner holding them
                purged = objects_purge(model, batch, skip=failed)
            failed |= purged.failed
            errors += purged.errors
            counts[model.KIND] = counts.get(model.KIND, 0) + len(purged.gone)
            counts[TransformationResult.KIND] = counts.get(TransformationResult.KIND, 0) + len(
                purged.dependents
            )
            if not batch:
                break
    if failed:
        # The key is gone already, so what is left is unreadable; the periodic job retries the rest.
        erasure_mark_failed(request, errors[-1] if errors else "storage delete failed")
        raise PurgeIncomplete(details={"failed_objects": len(failed)})
    with transaction.atomic():
        if any(model.objects.filter(owner_id=user_id).exists() for model in HELD_MODELS):
            # Deleting the user now would cascade to rows whose ciphertext is still stored: retry instead.
            raise PurgeIncomplete(details={"reason": "objects appeared during the purge"})
        counts["jobs"] = TransformationJob.objects.filter(owner_id=user_id).delete()[0]
        counts["consent_records"] = ConsentRecord.objects.filter(user_id=user_id).delete()[0]
        counts["sessions"] = _sessions_delete(user_id)
        get_user_model().objects.filter(pk=user_id).delete()  # cascades tokens and any remaining rows
        erasure_complete(request, counts=counts)
    metrics.ERASURES.labels("done").inc()
    return request


def _sessions_delete(user_id: int) -> int:
    """Delete the user's stored sessions: dead since the request (new password hash), but they still name the
    user id. Session keys are random, so the store is scanned; only stores that can be listed (db, cached_db).
    """
    if settings.SESSION_ENGINE not in ("django.contrib.sessions.backends.db",
                                       "django.contrib.sessions.backends.cached_db"):
        return 0  # cache / signed-cookie sessions expire on their own and no longer authenticate
    from django.contrib.sessions.models import Session

    store = import_module(settings.SESSION_ENGINE).SessionStore
    doomed = [s.session_key for s in Session.objects.iterator()
              if s.get_decoded().get(SESSION_KEY) == str(user_id)]
    for session_key in doomed:
        store(session_key=session_key).delete()
    return len(doomed)


def erasures_pending() -> list[int]:
    """Ids of accepted erasures whose purge has not finished (the periodic job retries them)."""
    return list(ErasureRequest.objects.exclude(status=ErasureStatus.DONE).values_list("pk", flat=True))
