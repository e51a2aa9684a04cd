"""Group commit (issue 23.4): an audited action queues its event; the sequencer chains the queue in batches.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction

from governance import audit, clock
from governance.audit import audit_append, audit_drain, audit_verify, checkpoint_lag
from governance.models import AuditEvent, AuditHead, AuditPending
from webplatform.lifecycle.tasks import audit_drain_task


@pytest.fixture(autouse=True)
def _group_commit(settings):
    settings.AUDIT_GROUP_COMMIT = True


def refs() -> list[str]:
    return list(AuditEvent.objects.order_by("seq").values_list("object_ref", flat=True))


def test_an_action_queues_its_event_and_its_commit_chains_it(db, django_capture_on_commit_callbacks):
    # Given an action's transaction that appends two events
    with django_capture_on_commit_callbacks(execute=True):
        with transaction.atomic():
            audit_append(action="keys.rotated", actor_id=None, object_ref="a")
            audit_append(action="keys.rotated", actor_id=None, object_ref="b")
            # Then before it commits they are queued, not chained, and the head was never locked
            assert AuditPending.objects.count() == 2 and not AuditEvent.objects.exists()
            assert not AuditHead.objects.exists()
    # and once it commits both are chained, in order, the queue is empty and the chain verifies
    assert refs() == ["a", "b"] and not AuditPending.objects.exists()
    assert audit_verify().ok
    assert AuditHead.objects.get(pk=1).seq == 2


def test_an_action_that_rolls_back_leaves_no_event(db, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError):
        with transaction.atomic():
            audit_append(action="keys.rotated", actor_id=None, object_ref="gone")
            raise RuntimeError("the action fails")
    assert not AuditPending.objects.exists() and not AuditEvent.objects.exists()


def test_a_drain_that_never_ran_is_counted_and_the_backstop_chains_it(db, django_capture_on_commit_callbacks,
                                                                       settings, monkeypatch):
    # Given an action that committed, but whose process died before its drain ran (callbacks not executed)
    with django_capture_on_commit_callbacks(execute=False):
        audit_append(action="keys.rotated", actor_id=None, object_ref="orphan")
    assert AuditPending.objects.count() == 1 and not AuditEvent.objects.exists()
    # Then the lag counts it, and past the bound it is too old (readiness and verification fail on that)
    assert checkpoint_lag().events == 1 and not checkpoint_lag().too_old
    later = clock.now() + timedelta(seconds=settings.AUDIT_CHECKPOINT_MAX_LAG_SECONDS + 1)
    monkeypatch.setattr(clock, "now", lambda: later)
    assert checkpoint_lag().too_old
    # When the scheduled backstop runs, the event is chained and the queue empties
    assert audit_drain_task() == {"chained": 1}
    assert refs() == ["orphan"] and not AuditPending.objects.exists()
    assert audit_verify().ok


def test_chained_appends_take_the_head_now(db):
    # A caller that needs the seq (the library page's thumbnail grants name it) is chained at once
    event = audit_append(action="photo.library_shown", actor_id=None, object_ref="library", chained=True)
    assert event.seq == 1 and not AuditPending.objects.exists()


def test_a_queue_row_planted_or_edited_by_a_database_writer_is_never_chained(db,
                                                                              django_capture_on_commit_callbacks):
    # Given a genuine queued event a database writer edits, and a row they plant
    with django_capture_on_commit_callbacks(execute=False):
        audit_append(action="keys.rotated", actor_id=None, object_ref="genuine")
        audit_append(action="consent.withdrawn", actor_id=None, object_ref="edited")
    AuditPending.objects.filter(object_ref="edited").update(action="consent.granted")
    planted = AuditPending.objects.create(at=clock.now(), action="model.promoted", actor="system",
                                          subject="system", object_ref="planted", details={}, mac="0" * 64)
    edited_id = AuditPending.objects.get(object_ref="edited").id
    # When the queue drains
    assert audit_drain() == 3
    # Then the genuine event is chained, and each bad row is a refusal naming it, never the row's claim
    assert refs() == ["genuine", f"pending:{edited_id}", f"pending:{planted.id}"]
    assert set(AuditEvent.objects.filter(seq__gt=1).values_list("action", flat=True)) == {
        "audit.pending_refused"}
    assert not AuditPending.objects.exists() and audit_verify().ok


def test_the_queue_drains_in_batches_in_order(db, settings):
    settings.AUDIT_DRAIN_BATCH = 2
    with transaction.atomic():  # inside a test transaction: its commit callbacks never run
        for i in range(5):
            audit_append(action="keys.rotated", actor_id=None, object_ref=str(i))
    assert audit_drain() == 5
    assert refs() == ["0", "1", "2", "3", "4"]
    assert audit_verify().ok


THREADS, PER_THREAD = 8, 25


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the head lock under real concurrency: PostgreSQL only"
)
@pytest.mark.django_db(transaction=True)
def test_concurrent_group_commits_keep_one_chain_on_postgresql(settings):
    # Given 8 threads, each appending 25 events in transactions of their own (each drained on commit, or
    # left to the drain lock's holder, whose look at the queue after releasing it must see them: no round cap)
    settings.AUDIT_DRAIN_ROUNDS = 10**6
    barrier, errors = threading.Barrier(THREADS), []

    def work(n: int) -> None:
        try:
            barrier.wait()
            for i in range(PER_THREAD):
                with transaction.atomic():
                    audit_append(action="keys.rotated", actor_id=None, object_ref=f"{n}:{i}")
        except BaseException as exc:  # collected and asserted on in the main thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    # Then nothing is left queued, with no drain but those the commits ran (no lost wake-up)
    assert not AuditPending.objects.exists()
    # and every append landed exactly once, with contiguous seqs, each thread's in its own order
    events = list(AuditEvent.objects.order_by("seq").values_list("seq", "object_ref"))
    assert [seq for seq, _ in events] == list(range(1, THREADS * PER_THREAD + 1))
    assert sorted(ref for _, ref in events) == sorted(
        f"{n}:{i}" for n in range(THREADS) for i in range(PER_THREAD))
    for n in range(THREADS):
        mine = [int(ref.split(":")[1]) for _, ref in events if ref.startswith(f"{n}:")]
        assert mine == list(range(PER_THREAD))
    report = audit_verify()
    assert report.ok and report.events_checked == THREADS * PER_THREAD
    assert report.checkpoint_seq == THREADS * PER_THREAD and audit.checkpoint_lag().events == 0


def _tamper_edit(length: int) -> None:
    AuditEvent.objects.filter(seq=2).update(object_ref="rewritten")


def _tamper_cut(length: int) -> None:
    AuditEvent.objects.filter(seq__gt=length - 2).delete()
    last = AuditEvent.objects.get(seq=length - 2)
    AuditHead.objects.filter(pk=1).update(seq=last.seq, hash=last.hash)


def _tamper_wipe(length: int) -> None:
    AuditEvent.objects.all().delete()
    AuditHead.objects.all().delete()


def _tamper_plant(length: int) -> None:
    AuditEvent.objects.create(seq=length + 5, at=clock.now(), action="photo.deleted", actor="x", subject="x",
                              details={}, prev_hash="0" * 64, hash="1" * 64)


@pytest.mark.parametrize(("tamper", "reason"), [(_tamper_edit, "broken_link"), (_tamper_cut, "truncated"),
                                                (_tamper_wipe, "wiped"), (_tamper_plant, "past_head")])
def test_a_chain_written_by_group_commit_catches_tampering_as_before(db, django_capture_on_commit_callbacks,
                                                                      settings, tamper, reason):
    # Given a chain whose events were queued and drained, each action its own commit (checkpoints written)
    settings.AUDIT_REQUIRE_CHECKPOINT = True
    for i in range(6):
        with django_capture_on_commit_callbacks(execute=True):
            audit_append(action="keys.rotated", actor_id=None, object_ref=str(i))
    assert audit_verify().ok and audit_verify().checkpoints_checked == 6
    # When a database writer tampers with it, verification names it as it does for a chain written directly
    tamper(6)
    assert audit_verify().reason == reason


def test_the_drain_backstop_is_on_both_schedules(settings):
    from webplatform.lifecycle.scheduler import schedule
    from webplatform.taskqueue import AUDIT_DRAIN

    assert schedule()[AUDIT_DRAIN] == settings.AUDIT_DRAIN_INTERVAL_SECONDS
    assert any(e["task"] == AUDIT_DRAIN for e in settings.CELERY_BEAT_SCHEDULE.values())
