"""Retention: objects go at their deadline (time moved, not slept), idempotent, concurrent, despite faults."""

from __future__ import annotations

import io
import threading
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection

from governance.audit import audit_verify, pseudonym
from governance.models import AuditEvent
from webplatform.jobs.models import TransformationJob, TransformationResult
from webplatform.lifecycle import retention
from webplatform.lifecycle.retention import retention_enforce
from webplatform.photos.models import Photo

from .lifecycle_support import (
    faulty_storage,
    orphan_files,
    photo_make,
    refs,
    result_make,
    storage_path,
    training_photo_choose_api,
)
from .support import storage_files

pytestmark = pytest.mark.usefixtures("empty_storage")


def _upload(upload, actor=None) -> Photo:
    response = upload(actor=actor)
    assert response.status_code == 201, response.content
    return Photo.objects.get(pk=response.json()["id"])


def test_original_goes_at_48_hours_not_before(owner, upload, clock):
    # given an original uploaded now
    photo = _upload(upload)
    path = storage_path(photo.storage_name)
    assert photo.expires_at == clock.now + timedelta(hours=48) == clock.now + settings.RETENTION_ORIGINAL
    assert path.exists()

    # when retention runs a second before the deadline, then nothing goes
    clock.advance(hours=48, seconds=-1)
    assert retention_enforce().total_deleted == 0
    assert path.exists() and Photo.objects.filter(pk=photo.pk).exists()
    assert refs("photo.expired") == []

    # when it runs at the deadline, then ciphertext, row go, and the deletion is audited pseudonymously
    clock.advance(seconds=1)
    report = retention_enforce()
    assert report.deleted["photo"] == 1
    assert not path.exists()
    assert not Photo.objects.filter(pk=photo.pk).exists()
    event = AuditEvent.objects.get(action="photo.expired")
    assert event.object_ref == f"photo:{photo.pk}"
    assert event.subject == pseudonym(owner.pk)
    assert audit_verify().ok


def test_result_goes_at_its_own_deadline(trainer, upload, clock):
    # given a photo kept for training (so it outlives the result) and a result made an hour later
    photo = training_photo_choose_api(trainer, _upload(upload, trainer))
    clock.advance(hours=1)
    result = result_make(owner_id=trainer.pk, photo_id=photo.pk)
    path = storage_path(result.storage_name)
    assert result.expires_at == clock.now + settings.RETENTION_RESULT

    # when the clock stops a second short of the result's deadline, then it stays
    clock.advance(hours=48, seconds=-1)
    assert retention_enforce().total_deleted == 0
    assert path.exists()

    # when it reaches the deadline, then the result goes (ciphertext, row, audit) and the photo stays
    clock.advance(seconds=1)
    report = retention_enforce()
    assert report.deleted == {"result": 1, "photo": 0}
    assert not path.exists()
    assert not TransformationResult.objects.filter(pk=result.pk).exists()
    assert refs("result.expired") == [f"result:{result.pk}"]
    assert Photo.objects.filter(pk=photo.pk).exists()
    assert storage_path(photo.storage_name).exists()


def test_photo_kept_for_training_survives_48_hours_and_goes_at_90_days(trainer, upload, clock):
    photo = training_photo_choose_api(trainer, _upload(upload, trainer))
    assert photo.kept_for_training
    assert photo.expires_at == photo.created_at + timedelta(days=90)

    clock.advance(hours=49)
    retention_enforce()
    assert trainer.client.get(f"/api/v1/photos/{photo.pk}/content").status_code == 200

    clock.to(photo.created_at + timedelta(days=90))
    assert retention_enforce().deleted["photo"] == 1
    assert not storage_path(photo.storage_name).exists()
    assert refs("photo.expired") == [f"photo:{photo.pk}"]


def test_a_second_run_deletes_nothing_and_audits_nothing(owner, clock):
    for _ in range(3):
        photo_make(owner_id=owner.pk)
    clock.advance(days=3)
    assert retention_enforce().total_deleted == 3
    events = AuditEvent.objects.count()

    again = retention_enforce()

    assert again.total_deleted == 0 and sum(again.failed.values()) == 0
    assert AuditEvent.objects.count() == events


def test_one_run_catches_up_after_downtime(owner, other, clock, monkeypatch):
    # given a backlog spanning many batches, made over two weeks, with results among the photos
    monkeypatch.setattr(retention, "BATCH", 25)
    start = clock.now
    photos = []
    for i in range(120):
        clock.to(start + timedelta(hours=3 * i))
        photos.append(photo_make(owner_id=(owner if i % 2 else other).pk, plaintext=b"p%d" % i * 40))
    for photo in photos[::10]:
        result_make(
            owner_id=photo.owner_id, photo_id=photo.pk, created_at=photo.created_at, plaintext=b"r" * 80
        )
    fresh = photo_make(owner_id=owner.pk, created_at=start + timedelta(days=400))

    # when the platform comes back a year later and retention runs once
    clock.to(start + timedelta(days=365))
    report = retention_enforce()

    # then everything past its deadline went in that one run, and only that
    assert report.deleted == {"result": 12, "photo": 120}
    assert list(Photo.objects.values_list("pk", flat=True)) == [fresh.pk]
    assert TransformationResult.objects.count() == 0
    assert set(storage_files()) == {storage_path(fresh.storage_name)}
    assert sorted(refs("photo.expired")) == sorted(f"photo:{p.pk}" for p in photos)
    assert audit_verify().ok


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_runs_delete_each_object_exactly_once(make_actor, clock, monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("row locks with SKIP LOCKED need PostgreSQL; SQLite serialises writers anyway")
    # given 150 expired photos in batches of 10
    monkeypatch.setattr(retention, "BATCH", 10)
    owner = make_actor("concurrent")
    photos = [photo_make(owner_id=owner.pk, plaintext=b"x" * 64) for _ in range(150)]
    storage = faulty_storage(monkeypatch)
    # Each runner's first delete waits until the other runner is inside its own batch too: they
    # overlap for certain, and a runner blocking on the other's locks would break the barrier.
    barrier = threading.Barrier(2, timeout=15)
    first_delete = threading.local()

    def meet(_name: str) -> None:
        if not getattr(first_delete, "done", False):
            first_delete.done = True
            barrier.wait()

    storage.before_delete = meet
    clock.advance(days=3)
    reports, errors = [], []

    def run() -> None:
        try:
            reports.append(retention_enforce())
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)
        finally:
            connection.close()

    # when two runners start at once
    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    # then no errors, every object deleted exactly once, one audit event each, and the chain holds
    assert errors == []
    assert sum(r.deleted["photo"] for r in reports) == 150
    assert all(r.deleted["photo"] > 0 for r in reports), "both runners should have taken a share"
    assert storage.deletes == {p.storage_name: 1 for p in photos}
    assert Photo.objects.count() == 0
    expired = refs("photo.expired")
    assert len(expired) == len(set(expired)) == 150
    assert audit_verify().ok


def test_enforce_retention_command(owner, clock):
    photo = photo_make(owner_id=owner.pk)
    clock.advance(hours=48)
    out, err = io.StringIO(), io.StringIO()

    call_command("enforce_retention", stdout=out, stderr=err)

    assert not Photo.objects.filter(pk=photo.pk).exists()
    assert not storage_path(photo.storage_name).exists()
    assert "'photo': 1" in out.getvalue()
    call_command("enforce_retention", stdout=io.StringIO(), stderr=io.StringIO())  # idempotent
    assert refs("photo.expired") == [f"photo:{photo.pk}"]


def test_a_storage_fault_on_one_object_spares_the_rest_and_is_retried(owner, officer, clock, monkeypatch):
    # given five expired photos, and storage that fails to delete one of them
    photos = [photo_make(owner_id=owner.pk, created_at=clock.now + timedelta(minutes=i)) for i in range(5)]
    stuck = photos[2]
    storage = faulty_storage(monkeypatch)
    storage.broken.add(stuck.storage_name)
    clock.advance(days=3)

    # when retention runs
    report = retention_enforce()

    # then the other four went, the stuck one stays with its attempt counted, and the report shows it
    assert report.deleted["photo"] == 4 and report.failed["photo"] == 1
    assert list(Photo.objects.values_list("pk", flat=True)) == [stuck.pk]
    stuck.refresh_from_db()
    assert stuck.deletion_attempts == 1
    assert "OSError" in stuck.last_deletion_error
    assert storage_path(stuck.storage_name).exists()
    backlog = officer.client.get("/api/v1/compliance/report").json()["retention"]["backlog"]
    assert [(b["kind"], b["id"], b["deletion_attempts"]) for b in backlog] == [("photo", str(stuck.pk), 1)]
    assert refs("photo.expired") == [f"photo:{p.pk}" for p in photos if p != stuck]

    # when the fault clears and retention runs again, then it goes too and the backlog is empty
    storage.broken.clear()
    assert retention_enforce().deleted["photo"] == 1
    assert not Photo.objects.exists()
    assert not storage_path(stuck.storage_name).exists()
    assert officer.client.get("/api/v1/compliance/report").json()["retention"]["backlog"] == []


def test_past_its_deadline_a_photo_is_never_served_even_before_retention_runs(owner, upload, clock):
    photo = _upload(upload)
    assert owner.client.get(f"/api/v1/photos/{photo.pk}/content").status_code == 200

    clock.to(photo.expires_at + timedelta(seconds=1))

    assert Photo.objects.filter(pk=photo.pk).exists()  # retention has not run yet
    assert owner.client.get(f"/api/v1/photos/{photo.pk}").status_code == 404
    assert owner.client.get(f"/api/v1/photos/{photo.pk}/content").status_code == 404


def test_deleting_a_photo_removes_its_results_and_their_ciphertext(owner, upload, clock,
                                                                   django_capture_on_commit_callbacks):
    # given a photo with two results, and another photo that must stay
    photo = _upload(upload)
    keep = _upload(upload)
    results = [result_make(owner_id=owner.pk, photo_id=photo.pk) for _ in range(2)]
    kept_result = result_make(owner_id=owner.pk, photo_id=keep.pk)
    gone = [storage_path(o.storage_name) for o in (photo, *results)]

    # when the owner deletes the photo
    with django_capture_on_commit_callbacks(execute=True):
        assert owner.client.delete(f"/api/v1/photos/{photo.pk}").status_code == 204

    # then the photo, its results, their jobs and all their ciphertext are gone; the other photo is untouched
    assert not any(path.exists() for path in gone)
    assert not Photo.objects.filter(pk=photo.pk).exists()
    assert not TransformationResult.objects.filter(photo_id=photo.pk).exists()
    assert not TransformationJob.objects.filter(photo_id=photo.pk).exists()
    assert set(storage_files()) == {storage_path(keep.storage_name), storage_path(kept_result.storage_name)}
    # and the trail names the owner's deletion, not a deadline the system enforced
    assert refs("result.expired") == refs("photo.expired") == []
    assert sorted(refs("result.purged_on_request")) == sorted(f"result:{r.pk}" for r in results)
    assert refs("photo.purged_on_request") == [f"photo:{photo.pk}"]
    actors = AuditEvent.objects.filter(action__endswith=".purged_on_request").values_list("actor", flat=True)
    assert set(actors) == {pseudonym(owner.pk)}
    assert owner.client.get(f"/api/v1/photos/{photo.pk}").status_code == 404


def test_an_expiring_photo_takes_its_later_results_ciphertext_with_it(owner, upload, clock):
    # given a photo and a result made a day later (so the result's own deadline is after the photo's)
    photo = _upload(upload)
    clock.advance(hours=24)
    result = result_make(owner_id=owner.pk, photo_id=photo.pk)

    # when the photo's deadline passes
    clock.to(photo.expires_at)
    retention_enforce()

    # then the photo's row deletion (which cascades to the result row) did not strand the result's ciphertext
    assert not Photo.objects.exists()
    assert not TransformationResult.objects.exists()
    assert not storage_path(result.storage_name).exists()
    assert orphan_files() == set()
    assert f"result:{result.pk}" in refs("result.deleted") + refs("result.expired")


def test_a_fault_on_a_result_keeps_its_photo_until_both_can_go(owner, upload, clock, monkeypatch,
                                                              django_capture_on_commit_callbacks):
    # given a photo with a result whose ciphertext storage refuses to delete
    photo = _upload(upload)
    result = result_make(owner_id=owner.pk, photo_id=photo.pk)
    storage = faulty_storage(monkeypatch)
    storage.broken.add(result.storage_name)

    # when the owner deletes the photo
    with django_capture_on_commit_callbacks(execute=True):
        assert owner.client.delete(f"/api/v1/photos/{photo.pk}").status_code == 204

    # then nothing is stranded: the result row still points at its ciphertext for the retry
    assert orphan_files() == set()
    assert TransformationResult.objects.get(pk=result.pk).deletion_attempts == 1
    assert owner.client.get(f"/api/v1/photos/{photo.pk}").status_code == 404

    # when the fault clears, then the next run deletes everything
    storage.broken.clear()
    retention_enforce()
    assert storage_files() == []
    assert not Photo.objects.exists() and not TransformationResult.objects.exists()
