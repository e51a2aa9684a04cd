"""Transformation jobs through the API, in embedded mode (Celery eager: the job runs in process)."""

from __future__ import annotations

import ast
import io
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import governance.clock
from governance.errors import IntegrityFailure, KeyDestroyed, NoFace
from governance.keyring import KeyringUnavailable
from governance.models import AuditEvent
from inference.serving.aging import VERSION as AGING_VERSION
from webplatform.encrypted_store import StorageUnavailable
from webplatform.jobs.models import JobFailure, JobStatus, TransformationJob, TransformationResult
from webplatform.photos.models import Photo

from .images import face_jpeg
from .lifecycle_support import job_make


def decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(np.int16)


@pytest.fixture
def face_photo(upload):
    response = upload(face_jpeg())
    assert response.status_code == 201, response.content
    return response.json()["id"]


def test_a_face_is_aged_and_the_rest_of_the_photo_is_untouched(
    owner, face_photo, django_capture_on_commit_callbacks
):
    # When the owner asks for age 75 (embedded mode runs the job on commit, in process)
    with django_capture_on_commit_callbacks(execute=True):
        response = owner.client.post(
            f"/api/v1/photos/{face_photo}/transformations", {"target_age": 75}, format="json"
        )
    assert response.status_code == 202, response.content
    job_id = response.json()["id"]

    # Then the job is done, names the aging layers' version that made it (the API's key `model_version`,
    # the row's `aging_version`), and its result is an image of the same size
    job = owner.client.get(f"/api/v1/transformations/{job_id}").json()
    assert job["status"] == "done", job
    assert job["model_version"] == AGING_VERSION == TransformationJob.objects.get(pk=job_id).aging_version
    assert job["target_age"] == 75
    original = decode(owner.client.get(f"/api/v1/photos/{face_photo}/content").content)
    result_response = owner.client.get(f"/api/v1/transformations/{job_id}/content")
    assert result_response.status_code == 200
    assert result_response["Content-Type"] == "image/jpeg"
    result = decode(result_response.content)
    assert result.shape == original.shape

    # The face changed; a corner far from it did not (beyond JPEG re-encoding noise)
    centre = (slice(100, 260), slice(160, 320))
    assert np.abs(result[centre] - original[centre]).mean() > 2.0
    assert np.abs(result[:40, :40] - original[:40, :40]).mean() < 2.0

    # And the result is encrypted with its own deadline, and the run is audited
    stored = TransformationResult.objects.get(job_id=job_id)
    assert stored.expires_at > stored.created_at
    assert AuditEvent.objects.filter(action="job.completed", object_ref=f"job:{job_id}").exists()


def test_a_photo_without_a_face_is_refused_with_422_no_face_before_any_job(owner, upload):
    flat = io.BytesIO()
    Image.new("RGB", (320, 240), (90, 140, 200)).save(flat, format="PNG")
    uploaded = upload(flat.getvalue(), name="sky.png").json()
    # The upload itself is accepted, and says there is no face to change.
    assert (uploaded["face_count"], uploaded["face_box"]) == (0, None)
    response = owner.client.post(f"/api/v1/photos/{uploaded['id']}/transformations", {"target_age": 40},
                                 format="json")
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "no_face" and "face" in error["message"]
    assert TransformationJob.objects.count() == 0


def test_the_upload_names_the_face_that_will_change(upload):
    uploaded = upload(face_jpeg()).json()
    assert uploaded["face_count"] == 1
    x, y, w, h = uploaded["face_box"]
    assert 150 < x + w / 2 < 330 and 100 < y + h / 2 < 260  # the synthetic face sits near (240, 180)


def test_a_face_the_worker_cannot_find_fails_the_job_with_no_face(
    owner, upload, django_capture_on_commit_callbacks
):
    flat = io.BytesIO()
    Image.new("RGB", (320, 240), (90, 140, 200)).save(flat, format="PNG")
    photo_id = upload(flat.getvalue(), name="sky.png").json()["id"]
    Photo.objects.filter(pk=photo_id).update(face_count=1)  # as if detection at upload had disagreed
    with django_capture_on_commit_callbacks(execute=True):
        job_id = owner.client.post(f"/api/v1/photos/{photo_id}/transformations", {"target_age": 40},
                                   format="json").json()["id"]
    job = owner.client.get(f"/api/v1/transformations/{job_id}").json()
    assert (job["status"], job["error"]) == ("failed", "no_face")
    content = owner.client.get(f"/api/v1/transformations/{job_id}/content")
    assert content.status_code == 409 and content.json()["error"]["code"] == "conflict"


@pytest.mark.parametrize(
    "body", [{"target_age": 0}, {"target_age": 101}, {"target_age": "old"}, {}, {"target_age": 2.5}]
)
def test_target_age_out_of_range_is_400(owner, face_photo, body):
    response = owner.client.post(f"/api/v1/photos/{face_photo}/transformations", body, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"
    assert TransformationJob.objects.count() == 0


def test_other_users_photo_and_job_are_404(owner, other, face_photo, django_capture_on_commit_callbacks):
    assert other.client.post(f"/api/v1/photos/{face_photo}/transformations", {"target_age": 50},
                             format="json").status_code == 404
    with django_capture_on_commit_callbacks(execute=True):
        job_id = owner.client.post(f"/api/v1/photos/{face_photo}/transformations", {"target_age": 50},
                                   format="json").json()["id"]
    assert other.client.get(f"/api/v1/transformations/{job_id}").status_code == 404
    assert other.client.get(f"/api/v1/transformations/{job_id}/content").status_code == 404


def test_transformation_needs_processing_consent(owner, face_photo):
    # Given a photo kept for training (training consent), which outlives a processing withdrawal
    owner.client.put("/api/v1/me/consents/training", {"granted": True, "policy_version": 1}, format="json")
    chose = owner.client.put("/api/v1/me/training-photo", {"photo_id": str(face_photo)}, format="json")
    assert chose.status_code == 200, chose.content  # kept because the owner chose it, never by default
    owner.client.put("/api/v1/me/consents/processing", {"granted": False}, format="json")
    assert owner.client.get(f"/api/v1/photos/{face_photo}").status_code == 200
    # When a transformation is asked for, it is refused: processing consent is gone
    response = owner.client.post(
        f"/api/v1/photos/{face_photo}/transformations", {"target_age": 50}, format="json"
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "consent_required"
    assert TransformationJob.objects.count() == 0


def test_the_task_message_carries_the_job_id_only(
    owner, face_photo, monkeypatch, django_capture_on_commit_callbacks
):
    from webplatform.jobs import services

    sent = []
    monkeypatch.setattr(services, "publish", lambda name, *args: sent.append((name, args)) or True)
    with django_capture_on_commit_callbacks(execute=True):
        job_id = owner.client.post(f"/api/v1/photos/{face_photo}/transformations", {"target_age": 20},
                                   format="json").json()["id"]
    assert sent == [("webplatform.jobs.tasks.transform_task", (job_id,))]


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "123", "", "00000000-0000-0000-0000-00000000000g"])
def test_the_doors_to_a_photo_and_a_job_answer_404_for_a_malformed_id(owner, bad_id):
    from governance.errors import NotFound
    from webplatform.jobs.services import job_for_owner
    from webplatform.photos.services import photo_for_owner

    with pytest.raises(NotFound):
        photo_for_owner(user_id=owner.user.pk, photo_id=bad_id)
    with pytest.raises(NotFound):
        job_for_owner(user_id=owner.user.pk, job_id=bad_id)


def test_failure_codes_named_after_errors_are_those_errors_codes():
    for error in (NoFace, KeyDestroyed, IntegrityFailure, StorageUnavailable, KeyringUnavailable):
        assert JobFailure(error.code) == error.code


def test_every_job_failure_is_written_from_the_vocabulary_never_a_bare_string():
    # A failure code is written by _fail/job_fail (code) or a row update (error=): none may be a literal.
    root = Path(__file__).resolve().parents[1] / "webplatform"
    sites = []
    for path in root.rglob("*.py"):
        for call in ast.walk(ast.parse(path.read_text())):
            if not isinstance(call, ast.Call):
                continue
            name = getattr(call.func, "id", None) or getattr(call.func, "attr", None)
            if name not in ("_fail", "job_fail", "update", "create"):
                continue
            values = [k.value for k in call.keywords
                      if k.arg == "error" or (k.arg == "code" and name == "job_fail")]
            if name == "_fail":
                values.append(call.args[1])
            sites += [(f"{path.relative_to(root)}:{call.lineno}", v) for v in values]
    assert len(sites) >= 10, sites  # the scan found the writers (not an empty pass)
    literals = [where for where, value in sites if isinstance(value, ast.Constant)]
    assert not literals, f"write a JobFailure member instead of a string at {literals}"


def test_a_photo_uploaded_before_faces_were_counted_can_still_be_aged(owner, upload,
                                                                      django_capture_on_commit_callbacks):
    photo_id = upload(face_jpeg()).json()["id"]
    Photo.objects.filter(pk=photo_id).update(face_count=None, face_box=None)  # as the migration leaves them
    with django_capture_on_commit_callbacks(execute=True):
        response = owner.client.post(f"/api/v1/photos/{photo_id}/transformations", {"target_age": 60},
                                     format="json")
    assert response.status_code == 202  # the worker finds the face then
    assert owner.client.get(f"/api/v1/transformations/{response.json()['id']}").json()["status"] == "done"
    assert owner.client.get(f"/api/v1/photos/{photo_id}").json()["face_count"] is None


def test_a_queued_job_says_how_many_requests_are_ahead_of_it(owner, other, face_photo):
    # Given two requests of someone else's still waiting or running, one finished, all made earlier
    start = governance.clock.now()
    theirs = other.client.post("/api/v1/photos", {"file": io.BytesIO(face_jpeg())}).json()["id"]
    for minutes, status in ((3, JobStatus.RUNNING), (2, JobStatus.QUEUED), (1, JobStatus.DONE)):
        job_make(owner_id=other.user.pk, photo_id=theirs, status=status,
                 created_at=start - timedelta(minutes=minutes))
    # When the owner's own request waits behind them (the queue is not run here)
    mine = job_make(owner_id=owner.user.pk, photo_id=face_photo, created_at=start)
    later = job_make(owner_id=owner.user.pk, photo_id=face_photo, created_at=start + timedelta(seconds=1))
    # Then it counts the two unfinished ones, never the finished one or anything after it
    body = owner.client.get(f"/api/v1/transformations/{mine.pk}").json()
    assert body["status"] == "queued" and body["queue_ahead"] == 2
    assert owner.client.get(f"/api/v1/transformations/{later.pk}").json()["queue_ahead"] == 3
    # And once a job runs the count is gone
    TransformationJob.objects.filter(pk=mine.pk).update(status=JobStatus.RUNNING)
    assert owner.client.get(f"/api/v1/transformations/{mine.pk}").json()["queue_ahead"] is None
    listed = owner.client.get(f"/api/v1/photos/{face_photo}/transformations").json()["results"]
    assert {j["id"]: j["queue_ahead"] for j in listed} == {str(mine.pk): None, str(later.pk): 3}
