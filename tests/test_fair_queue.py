"""Fair work: one person's burst never starves another's request, and one person's queue has a cap (429).

The broker here is a list: `publish` appends to it and a one-slot "worker" takes messages from its front and
runs the real task (`transform_task.apply`, which fires Celery's post-run signal as a worker does), so the
order is exact and no timing is involved. The real broker path is the same `publish` (tests/test_outbox.py,
tests/integration/test_worker.py). The model is an identity stand-in: these tests check order, not aging.
"""

from __future__ import annotations

import io
from collections import deque
from collections.abc import Callable
from typing import Any

import pytest
from django.test import override_settings

from tests.images import face_jpeg
from webplatform.celery import app as celery_app
from webplatform.jobs.models import JobStatus, TransformationJob
from webplatform.jobs.services import jobs_sweep
from webplatform.jobs.tasks import transform_task


class ListBroker:
    """A first-in, first-out queue of job ids, served by one worker slot."""

    def __init__(self) -> None:
        self.queue: deque[str] = deque()
        self.sent: list[str] = []
        self.up = True
        self.started: list[str] = []
        self.on_commit: Callable[..., Any]

    def publish(self, name: str, *args: object) -> bool:
        if not self.up:
            return False
        self.queue.append(str(args[0]))
        self.sent.append(str(args[0]))
        return True

    def work(self) -> None:
        """Run messages until the queue is empty, in order; each run ends with the post-run dispatch."""
        while self.queue:
            job_id = self.queue.popleft()
            self.started.append(job_id)
            transform_task.apply(args=(job_id,))


@pytest.fixture
def broker(monkeypatch, django_capture_on_commit_callbacks):
    from webplatform.jobs import services

    monkeypatch.setattr(services, "_transform", lambda image, *, target_age: (image, "identity-test"))
    list_broker = ListBroker()
    monkeypatch.setattr(services, "publish", list_broker.publish)
    # Workers, not the request, run the jobs: the per-person cap applies only then.
    monkeypatch.setitem(celery_app.conf, "task_always_eager", False)
    list_broker.on_commit = django_capture_on_commit_callbacks  # each request's commit runs its callbacks
    return list_broker


def _photo(actor) -> str:
    response = actor.client.post("/api/v1/photos", {"file": io.BytesIO(face_jpeg())})
    assert response.status_code == 201, response.content
    return response.json()["id"]


@pytest.fixture
def ask(broker):
    def post(actor, photo_id: str, age: int = 70):
        with broker.on_commit(execute=True):
            return actor.client.post(f"/api/v1/photos/{photo_id}/transformations", {"target_age": age},
                                     format="json")

    return post


@pytest.mark.parametrize(("inflight", "most_started_before"), [(2, 2), (1, 1), (10_000, 12)])
def test_a_second_persons_job_starts_after_at_most_the_cap_of_the_first_persons(
        owner, other, broker, ask, inflight, most_started_before):
    mine, theirs = _photo(owner), _photo(other)
    with override_settings(JOB_INFLIGHT_PER_PERSON=inflight):
        # Given one person's burst of 12 requests, then one request from someone else
        burst = [ask(owner, mine, 20 + i).json()["id"] for i in range(12)]
        late = ask(other, theirs).json()["id"]
        # (and the late request is told how many are really ahead of it in the broker)
        ahead = other.client.get(f"/api/v1/transformations/{late}").json()["queue_ahead"]
        assert ahead == min(inflight, 12)
        # When one worker slot serves the broker first in, first out
        broker.work()
    # Then everything ran, and the late request started after at most `inflight` of the burst's jobs; the
    # last row is the old FIFO (no cap), where it waited for all twelve.
    assert broker.started.index(late) == most_started_before
    assert sorted(broker.started) == sorted([*burst, late])
    assert set(TransformationJob.objects.values_list("status", flat=True)) == {JobStatus.DONE}


def test_no_more_than_the_cap_of_one_persons_jobs_are_in_the_broker_at_once(owner, broker, ask):
    mine = _photo(owner)
    with override_settings(JOB_INFLIGHT_PER_PERSON=2):
        ids = [ask(owner, mine).json()["id"] for _ in range(5)]
        assert list(broker.queue) == ids[:2]
        held = TransformationJob.objects.filter(status=JobStatus.QUEUED, published_at__isnull=True)
        assert set(map(str, held.values_list("pk", flat=True))) == set(ids[2:])
        broker.work()
    assert broker.started == ids  # one person's own jobs keep their order


def test_the_sweeper_dispatches_held_jobs_round_robin_within_each_cap(owner, other, broker, ask):
    mine, theirs = _photo(owner), _photo(other)
    with override_settings(JOB_INFLIGHT_PER_PERSON=2):
        # Given requests accepted while the broker was down: all held, nothing sent
        broker.up = False
        a = [ask(owner, mine).json()["id"] for _ in range(3)]
        b = [ask(other, theirs).json()["id"] for _ in range(2)]
        assert broker.sent == []
        assert jobs_sweep()["unpublished"] == 4  # what fits the caps (2 each) was tried, and stays held
        # When it is back and the sweeper runs
        broker.up = True
        counts = jobs_sweep()
    # Then each person's oldest goes first, taking turns, and nobody passes the cap
    assert broker.sent == [a[0], b[0], a[1], b[1]]
    assert counts["published"] == 4
    assert TransformationJob.objects.get(pk=a[2]).published_at is None


def test_a_person_with_a_full_queue_gets_429_queue_full_and_others_do_not(owner, other, broker, ask):
    mine, theirs = _photo(owner), _photo(other)
    with override_settings(JOB_QUEUED_PER_PERSON=3, JOB_QUEUE_FULL_RETRY_AFTER_SECONDS=17):
        for _ in range(3):
            assert ask(owner, mine).status_code == 202
        # The fourth waiting request of one person is refused, clearly, with when to come back
        refused = ask(owner, mine)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "queue_full"
        assert refused.json()["error"]["details"] == {"queued": 3, "max_queued": 3}
        assert refused["Retry-After"] == "17"
        assert TransformationJob.objects.filter(owner_id=owner.user.pk).count() == 3  # nothing left behind
        # Someone else is not affected
        assert ask(other, theirs).status_code == 202
        # And once the owner's jobs have run, they may ask again
        broker.work()
        assert ask(owner, mine).status_code == 202


def test_the_page_shows_the_queue_full_message_not_an_error_page(owner, broker, ask):
    from django.test import Client

    mine = _photo(owner)
    page = Client()
    page.force_login(owner.user)
    with override_settings(JOB_QUEUED_PER_PERSON=1):
        assert ask(owner, mine).status_code == 202
        response = page.post(f"/photos/{mine}/age", {"target_age": "40"}, follow=True)
    assert response.status_code == 200
    assert b"as many transformations waiting" in response.content
