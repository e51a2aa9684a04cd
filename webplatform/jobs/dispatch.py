"""Fair dispatch: which queued jobs go to the broker now, so one person's burst never starves everyone else.

The broker's queue is first in, first out. Handing it every job at once would make the 51st request wait for
the first 50. So a job row stays *held* (queued, `published_at` unset) until its owner has fewer than
`JOB_INFLIGHT_PER_PERSON` jobs *in flight* (published and waiting, or running). When one of a person's jobs
ends, the worker (tasks.py's post-run hook) publishes their next held job, behind whatever others published
meanwhile: with one worker slot and the default of 2, a newcomer's job starts after at most 2 of a busy
person's. A sweep (beat) dispatches
every person's held jobs, one round at a time in the order each person first waited (round-robin).

In embedded mode (eager tasks) every request runs its own job in its own thread: nothing is shared, so
nothing is held.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from django.conf import settings
from django.db import transaction
from django.db.models import Min, Q

from governance import clock
from governance.errors import QueueFull
from webplatform.celery import app

from .models import JobStatus, TransformationJob

DISPATCH_OWNERS = 500  # people served per sweep; the next sweep serves the rest


def _in_flight() -> Q:
    """Jobs a worker holds or will take next: running, or queued with a live message."""
    return Q(status=JobStatus.RUNNING) | Q(status=JobStatus.QUEUED, published_at__isnull=False)


def _held() -> Q:
    return Q(status=JobStatus.QUEUED, published_at__isnull=True)


def per_person_cap() -> int | None:
    """How many of one person's jobs may be in flight; None (no cap) when tasks run in the request."""
    return None if app.conf.task_always_eager else settings.JOB_INFLIGHT_PER_PERSON


def job_queue_check(*, user_id: int) -> None:
    """Refuse (429 queue_full) a request from a person who already has JOB_QUEUED_PER_PERSON jobs waiting."""
    waiting = TransformationJob.objects.filter(owner_id=user_id, status=JobStatus.QUEUED).count()
    if waiting >= settings.JOB_QUEUED_PER_PERSON:
        raise QueueFull(retry_after=settings.JOB_QUEUE_FULL_RETRY_AFTER_SECONDS,
                        details={"queued": waiting, "max_queued": settings.JOB_QUEUED_PER_PERSON})


def _reserve(owner_id: int) -> list[uuid.UUID]:
    """Stamp the owner's oldest held jobs as published, up to their free slots; the ids, oldest first."""
    cap = per_person_cap()
    with transaction.atomic():
        # Lock the owner's queued rows (fixed order against deadlocks): two dispatchers for one person take
        # turns, so the second counts what the first published and the cap holds.
        list(TransformationJob.objects.select_for_update().filter(owner_id=owner_id, status=JobStatus.QUEUED)
             .order_by("pk").values_list("pk", flat=True))
        mine = TransformationJob.objects.filter(owner_id=owner_id)
        held = mine.filter(_held()).order_by("created_at", "pk").values_list("pk", flat=True)
        if cap is not None:
            held = held[:max(0, cap - mine.filter(_in_flight()).count())]
        job_ids = list(held)
        if job_ids:
            # The job row is the outbox: stamped before the send, unstamped if the broker refuses it.
            TransformationJob.objects.filter(pk__in=job_ids).update(published_at=clock.now())
    return job_ids


def _round_robin(batches: list[list[uuid.UUID]]) -> list[uuid.UUID]:
    """Each person's first job, then each person's second, ...: the order the broker should hold them in."""
    order: list[uuid.UUID] = []
    for turn in range(max((len(b) for b in batches), default=0)):
        order.extend(b[turn] for b in batches if turn < len(b))
    return order


def jobs_dispatch(*, publish: Callable[..., bool], owner_id: int | None = None) -> dict[str, int]:
    """Publish held jobs that fit their owner's in-flight cap (one owner's, or everyone's, longest waiting
    first), round-robin between people, with `publish(job_id=...)` (services.job_publish). If the broker
    refuses, the rest stay held for the next sweep."""
    held = TransformationJob.objects.filter(_held())
    if owner_id is not None:
        held = held.filter(owner_id=owner_id)
    owners = list(held.values("owner_id").annotate(first=Min("created_at")).order_by("first")
                  .values_list("owner_id", flat=True)[:DISPATCH_OWNERS])
    order = _round_robin([_reserve(owner) for owner in owners])
    counts = {"published": 0, "unpublished": 0}
    for index, job_id in enumerate(order):
        if not publish(job_id=job_id):  # the broker is down; job_publish unstamped this one
            rest = order[index + 1:]
            TransformationJob.objects.filter(pk__in=rest, status=JobStatus.QUEUED).update(published_at=None)
            counts["unpublished"] = len(rest) + 1
            break
        counts["published"] += 1
    return counts
