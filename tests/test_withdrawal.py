"""Withdrawing consent takes effect on data already held and on work already queued."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings

from governance.audit import pseudonym
from governance.consent import PROCESSING, TRAINING, consent_set
from governance.models import AuditEvent
from webplatform.jobs import services as job_services
from webplatform.jobs.models import JobStatus, TransformationJob, TransformationResult
from webplatform.lifecycle.retention import retention_enforce
from webplatform.photos.models import Photo

from .lifecycle_support import job_make, refs, result_make, storage_path, training_photo_choose_api
from .support import assert_error, storage_files

pytestmark = pytest.mark.usefixtures("empty_storage")


def _upload(actor, upload) -> Photo:
    response = upload(actor=actor)
    assert response.status_code == 201, response.content
    return Photo.objects.get(pk=response.json()["id"])


def _consent(actor, purpose: str, granted: bool):
    body = {"granted": granted, "policy_version": 1} if granted else {"granted": False}
    response = actor.client.put(f"/api/v1/me/consents/{purpose}", body, format="json")
    assert response.status_code == 200, response.content
    return response


def test_withdrawing_processing_stops_queued_work_and_deletes_originals_and_results(
        owner, upload, clock, django_capture_on_commit_callbacks):
    # given two photos, a result, two queued jobs and a finished one
    photos = [_upload(owner, upload) for _ in range(2)]
    clock.advance(minutes=5)
    result = result_make(owner_id=owner.pk, photo_id=photos[0].pk)
    queued = [job_make(owner_id=owner.pk, photo_id=p.pk) for p in photos]
    files = [storage_path(o.storage_name) for o in (*photos, result)]

    # when the owner withdraws processing consent (on_commit effects held back)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        _consent(owner, PROCESSING, False)

    # then queued jobs failed with the reason, and nothing is served any more
    for job in queued:
        job.refresh_from_db()
        assert (job.status, job.error) == (JobStatus.FAILED, "consent_withdrawn")
        assert job.finished_at is not None
    assert TransformationJob.objects.get(pk=result.job_id).status == JobStatus.DONE  # history stays true
    for photo in photos:
        assert owner.client.get(f"/api/v1/photos/{photo.pk}/content").status_code == 404

    # when the on_commit callbacks run, then originals and results (ciphertext and rows) are gone
    for callback in callbacks:
        callback()
    assert not Photo.objects.filter(owner_id=owner.pk).exists()
    assert not TransformationResult.objects.filter(owner_id=owner.pk).exists()
    assert not any(path.exists() for path in files)
    # and the trail says why, and who: the owner's withdrawal, not a deadline passed by the system
    assert refs("photo.expired") == refs("result.expired") == []
    assert sorted(refs("photo.purged_on_withdrawal")) == sorted(f"photo:{p.pk}" for p in photos)
    assert refs("result.purged_on_withdrawal") == [f"result:{result.pk}"]
    assert set(AuditEvent.objects.filter(action__endswith=".purged_on_withdrawal")
               .values_list("actor", flat=True)) == {pseudonym(owner.pk)}
    # and no new upload is accepted
    assert_error(upload(), 403, "consent_required")


def test_the_photo_kept_for_training_survives_processing_withdrawal_while_training_stands(
        trainer, upload, clock, django_capture_on_commit_callbacks):
    # given two photos: the newest is the one chosen for training
    older = _upload(trainer, upload)
    clock.advance(minutes=1)
    kept = training_photo_choose_api(trainer, _upload(trainer, upload))
    assert Photo.objects.get(pk=kept.pk).kept_for_training
    assert not Photo.objects.get(pk=older.pk).kept_for_training

    # when processing consent is withdrawn, then only the photo kept for training remains
    with django_capture_on_commit_callbacks(execute=True):
        _consent(trainer, PROCESSING, False)
    assert list(Photo.objects.values_list("pk", flat=True)) == [kept.pk]
    assert set(storage_files()) == {storage_path(kept.storage_name)}
    assert Photo.objects.get(pk=kept.pk).expires_at == kept.created_at + settings.RETENTION_TRAINING

    # when training consent is withdrawn too, then it goes at once (no basis is left to hold it)
    with django_capture_on_commit_callbacks(execute=True):
        _consent(trainer, TRAINING, False)
    assert not Photo.objects.exists()
    assert storage_files() == []


def test_withdrawing_training_reverts_the_kept_photo_to_the_original_deadline(
        trainer, upload, clock, django_capture_on_commit_callbacks):
    # given a photo kept for training, one hour old
    photo = training_photo_choose_api(trainer, _upload(trainer, upload))
    clock.advance(hours=1)

    # when training consent is withdrawn
    with django_capture_on_commit_callbacks(execute=True):
        _consent(trainer, TRAINING, False)

    # then it is an ordinary original again: due 48 h after upload, and deleted then
    photo.refresh_from_db()
    assert not photo.kept_for_training
    assert photo.expires_at == photo.created_at + timedelta(hours=48)
    clock.to(photo.created_at + timedelta(hours=48, seconds=-1))
    assert retention_enforce().total_deleted == 0
    clock.advance(seconds=1)
    assert retention_enforce().deleted["photo"] == 1
    assert not storage_path(photo.storage_name).exists()


def test_withdrawing_training_deletes_at_once_a_kept_photo_older_than_48_hours(
        trainer, upload, clock, django_capture_on_commit_callbacks):
    photo = training_photo_choose_api(trainer, _upload(trainer, upload))
    clock.advance(hours=72)
    retention_enforce()
    assert Photo.objects.filter(pk=photo.pk).exists()  # held for training past the 48 h

    with django_capture_on_commit_callbacks(execute=True):
        _consent(trainer, TRAINING, False)

    assert not Photo.objects.filter(pk=photo.pk).exists()
    assert not storage_path(photo.storage_name).exists()
    assert refs("photo.purged_on_withdrawal") == [f"photo:{photo.pk}"]
    assert refs("photo.expired") == []


def test_a_training_grant_keeps_only_the_photo_chosen_and_an_upload_never_changes_it(
        owner, upload, clock, django_capture_on_commit_callbacks):
    # given two photos uploaded without training consent
    first = _upload(owner, upload)
    clock.advance(hours=1)
    newest = _upload(owner, upload)
    assert not newest.kept_for_training

    # when training consent is granted without choosing, then no photo is kept (nothing chosen for them)
    with django_capture_on_commit_callbacks(execute=True):
        _consent(owner, TRAINING, True)
    assert not Photo.objects.filter(kept_for_training=True).exists()
    assert owner.client.get("/api/v1/me/training-photo").json()["photo_id"] is None

    # when they choose the older one, then it is kept until created + 90 days, and only it
    chosen = training_photo_choose_api(owner, first)
    assert chosen.expires_at == chosen.created_at + timedelta(days=90)
    newest.refresh_from_db()
    assert not newest.kept_for_training and newest.expires_at == newest.created_at + timedelta(hours=48)

    # when a newer photo arrives, then the choice stays theirs: the upload keeps its 48 hours
    clock.advance(hours=1)
    latest = _upload(owner, upload)
    chosen.refresh_from_db()
    assert not latest.kept_for_training and latest.expires_at == latest.created_at + timedelta(hours=48)
    assert chosen.kept_for_training and chosen.expires_at == chosen.created_at + timedelta(days=90)
    assert owner.client.get("/api/v1/me/training-photo").json()["photo_id"] == str(chosen.pk)


def test_a_photo_without_exactly_one_face_is_never_kept_for_training(trainer, upload):
    # given a photo with no face (the noise test image) and one with two faces
    faceless = _upload(trainer, upload)
    crowd = _upload(trainer, upload)
    Photo.objects.filter(pk=crowd.pk).update(face_count=2)

    # when the owner asks to keep either, then it is refused as unprocessable, and nothing is kept
    for photo in (faceless, crowd):
        response = trainer.client.put("/api/v1/me/training-photo", {"photo_id": str(photo.pk)}, format="json")
        assert_error(response, 422, "not_trainable")
    assert not Photo.objects.filter(kept_for_training=True).exists()


def test_a_training_grant_does_not_revive_a_photo_already_past_its_deadline(
        owner, upload, clock, django_capture_on_commit_callbacks):
    # given a photo whose 48 h passed, not yet deleted (retention has not run)
    photo = _upload(owner, upload)
    clock.advance(hours=49)

    # when training consent is granted
    with django_capture_on_commit_callbacks(execute=True):
        _consent(owner, TRAINING, True)

    # then that photo is not kept for training: the promise of 48 h holds, and it is deleted
    assert not Photo.objects.filter(pk=photo.pk, kept_for_training=True).exists()
    retention_enforce()
    assert not Photo.objects.filter(pk=photo.pk).exists()
    assert not storage_path(photo.storage_name).exists()


def _forbid_reads(monkeypatch) -> list:
    """Make any decryption by the job runner fail the test: a job that must not run must not read photos."""
    reads: list = []
    monkeypatch.setattr(job_services, "object_get", lambda **kw: reads.append(kw) or pytest.fail("job ran"))
    return reads


def test_a_job_whose_owner_withdrew_before_the_worker_picks_it_up_does_not_run(
        owner, upload, monkeypatch, django_capture_on_commit_callbacks):
    # given a queued job, and its owner withdrawing processing consent (photo deletion held back)
    photo = _upload(owner, upload)
    job = job_make(owner_id=owner.pk, photo_id=photo.pk)
    reads = _forbid_reads(monkeypatch)
    with django_capture_on_commit_callbacks(execute=False):
        _consent(owner, PROCESSING, False)

    # when the worker picks the job up
    job_services.job_run(job_id=str(job.pk))

    # then it did not run: still failed for the withdrawal, no result, photo never decrypted
    job.refresh_from_db()
    assert (job.status, job.error) == (JobStatus.FAILED, "consent_withdrawn")
    assert job.started_at is None and job.attempts == 0
    assert not TransformationResult.objects.filter(job_id=job.pk).exists()
    assert reads == []


def test_a_queued_job_checks_consent_when_it_runs_not_only_when_asked(owner, upload, monkeypatch):
    # given a queued job, and a withdrawal recorded in the ledger behind its back (no withdrawal effects)
    photo = _upload(owner, upload)
    job = job_make(owner_id=owner.pk, photo_id=photo.pk)
    consent_set(user_id=owner.pk, purpose_slug=PROCESSING, granted=False, policy_version=None)
    reads = _forbid_reads(monkeypatch)

    # when the worker picks it up
    job_services.job_run(job_id=str(job.pk))

    # then the runner itself refuses it
    job.refresh_from_db()
    assert (job.status, job.error) == (JobStatus.FAILED, "consent_withdrawn")
    assert not TransformationResult.objects.filter(job_id=job.pk).exists()
    assert reads == []
