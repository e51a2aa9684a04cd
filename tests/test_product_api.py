"""API behind the pages: a photo's transformations, choosing the training photo, the audit trail as CSV."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from datetime import timedelta

import pytest

from governance.consent import TRAINING
from governance.models import AuditEvent
from webplatform.photos.models import Photo

from .lifecycle_support import result_make
from .support import assert_error

pytestmark = pytest.mark.usefixtures("empty_storage")


def face_jpeg(seed: int = 4) -> bytes:
    """A synthetic portrait the face detector finds (aging refuses photos without a face: 422 no_face)."""
    from PIL import Image

    from inference.generator.synthetic import Identity, place_in_photo

    photo, _ = place_in_photo(Identity.from_seed(seed), 30, photo_size=(360, 480), face_size=200, seed=seed)
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def _photo(actor, upload, *, face: bool = True) -> str:
    response = upload(face_jpeg() if face else None, actor=actor)
    assert response.status_code == 201, response.content
    return response.json()["id"]


def _age(actor, photo_id: str, age: int) -> dict:
    # Outside django_capture_on_commit_callbacks the job is not sent and stays queued: the list is the point.
    response = actor.client.post(
        f"/api/v1/photos/{photo_id}/transformations", {"target_age": age}, format="json"
    )
    assert response.status_code == 202, response.content
    return response.json()


# --- GET /photos/{id}/transformations ---------------------------------------------------------------------

def test_a_photos_transformations_are_listed_newest_first_with_their_target_ages(owner, upload, clock):
    photo = _photo(owner, upload)
    other_photo = _photo(owner, upload)
    for age in (20, 45, 80):
        _age(owner, photo, age)
        clock.advance(minutes=1)
    _age(owner, other_photo, 33)

    body = owner.client.get(f"/api/v1/photos/{photo}/transformations").json()

    assert body["count"] == 3
    assert [j["target_age"] for j in body["results"]] == [80, 45, 20]
    assert {j["photo_id"] for j in body["results"]} == {photo}
    assert set(body["results"][0]) >= {"id", "status", "error", "model_version", "created_at", "finished_at"}


def test_the_transformation_list_is_paginated_like_the_other_lists(owner, upload, clock):
    photo = _photo(owner, upload)
    for age in (10, 20, 30):
        _age(owner, photo, age)
        clock.advance(minutes=1)

    first = owner.client.get(f"/api/v1/photos/{photo}/transformations?limit=2").json()
    second = owner.client.get(f"/api/v1/photos/{photo}/transformations?limit=2&offset=2").json()

    assert first["count"] == 3 and first["next"] and [j["target_age"] for j in first["results"]] == [30, 20]
    assert second["next"] is None and [j["target_age"] for j in second["results"]] == [10]


def test_someone_elses_photo_or_a_deleted_one_answers_404_not_an_empty_list(owner, other, upload, anon):
    photo = _photo(owner, upload)
    _age(owner, photo, 60)

    assert_error(other.client.get(f"/api/v1/photos/{photo}/transformations"), 404, "not_found")
    assert_error(anon.client.get(f"/api/v1/photos/{photo}/transformations"), 401)
    owner.client.delete(f"/api/v1/photos/{photo}")
    assert_error(owner.client.get(f"/api/v1/photos/{photo}/transformations"), 404, "not_found")


def test_a_photo_never_aged_has_an_empty_list(owner, upload):
    photo = _photo(owner, upload)
    body = owner.client.get(f"/api/v1/photos/{photo}/transformations").json()
    assert body["count"] == 0 and body["results"] == []


def test_the_list_is_in_the_openapi_schema(anon):
    schema = anon.client.get("/api/schema/?format=json").json()
    operation = schema["paths"]["/api/v1/photos/{photo_id}/transformations"]["get"]
    assert "200" in operation["responses"] and "404" in operation["responses"]
    assert "/api/v1/me/training-photo" in schema["paths"]


# --- PUT /me/training-photo ------------------------------------------------------------------------------

def test_the_user_chooses_which_photo_is_kept_for_training(
    trainer, upload, clock, django_capture_on_commit_callbacks
):
    # given two photos (one face each), the newest chosen for training
    older = _photo(trainer, upload)
    clock.advance(hours=1)
    newest = _photo(trainer, upload)
    Photo.objects.filter(pk__in=[older, newest]).update(face_count=1)  # noise test images: no face found
    chose = trainer.client.put("/api/v1/me/training-photo", {"photo_id": newest}, format="json")
    assert chose.status_code == 200, chose.content
    assert trainer.client.get("/api/v1/me/training-photo").json()["photo_id"] == newest

    # when the user chooses the older one
    with django_capture_on_commit_callbacks(execute=True):
        response = trainer.client.put("/api/v1/me/training-photo", {"photo_id": older}, format="json")

    # then it is kept for 90 days, the newest falls back to 48 h, and the choice is audited
    assert response.status_code == 200, response.content
    assert response.json()["photo_id"] == older
    kept, released = Photo.objects.get(pk=older), Photo.objects.get(pk=newest)
    assert kept.kept_for_training and kept.expires_at == kept.created_at + timedelta(days=90)
    assert not released.kept_for_training and released.expires_at == released.created_at + timedelta(hours=48)
    event = AuditEvent.objects.filter(action="photo.training_chosen").order_by("seq").last()
    assert event.object_ref == f"photo:{older}" and event.details["released"] == [newest]
    assert trainer.client.get("/api/v1/me/training-photo").json()["photo_id"] == older


def test_choosing_a_training_photo_needs_training_consent(owner, upload):
    photo = _photo(owner, upload)
    assert_error(owner.client.put("/api/v1/me/training-photo", {"photo_id": photo}, format="json"),
                 403, "consent_required")
    assert not Photo.objects.get(pk=photo).kept_for_training
    assert owner.client.get("/api/v1/me/training-photo").json() == {"photo_id": None, "expires_at": None}


def test_someone_elses_photo_cannot_be_chosen_for_training(trainer, make_actor, upload):
    stranger = make_actor("stranger")
    theirs = _photo(stranger, upload)
    assert_error(trainer.client.put("/api/v1/me/training-photo", {"photo_id": theirs}, format="json"), 404)
    assert_error(trainer.client.put("/api/v1/me/training-photo", {"photo_id": "nope"}, format="json"), 400)
    assert not Photo.objects.get(pk=theirs).kept_for_training


def test_a_training_grant_can_name_the_photo_to_keep(owner, upload, clock):
    chosen = _photo(owner, upload)
    clock.advance(minutes=5)
    _photo(owner, upload)
    Photo.objects.filter(pk=chosen).update(face_count=1)  # the noise test image has no face
    from webplatform.lifecycle.consent_changes import consent_change

    consent_change(user_id=owner.pk, purpose_slug=TRAINING, granted=True, policy_version=1,
                   training_photo_id=chosen)
    assert list(
        Photo.objects.filter(owner_id=owner.pk, kept_for_training=True).values_list("pk", flat=True)
    ) == [Photo.objects.get(pk=chosen).pk]


# --- GET /audit/events?format=csv --------------------------------------------------------------------------

def test_officers_download_the_filtered_audit_trail_as_csv(owner, officer, upload):
    _photo(owner, upload)
    _photo(owner, upload)

    response = officer.client.get("/api/v1/audit/events?format=csv&action=photo.uploaded")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    expected = AuditEvent.objects.filter(action="photo.uploaded").order_by("seq")
    assert [int(r["seq"]) for r in rows] == [e.seq for e in expected]
    assert {r["action"] for r in rows} == {"photo.uploaded"}
    assert rows[0]["hash"] == expected[0].hash and "owner" not in rows[0]["subject"]


def test_csv_is_for_officers_only_and_bad_filters_stay_json(owner, officer):
    assert_error(owner.client.get("/api/v1/audit/events?format=csv"), 403, "forbidden")
    assert_error(officer.client.get("/api/v1/audit/events?format=csv&since=yesterday"), 400, "invalid")


# --- export index.html --------------------------------------------------------------------------------------

def test_the_export_index_shows_each_photo_with_its_results_and_their_target_ages(owner, upload):
    photo = _photo(owner, upload)
    result = result_make(owner_id=owner.pk, photo_id=photo)
    response = owner.client.get("/api/v1/me/export")
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))

    index = archive.read("index.html").decode()
    section = index.split(f'src="thumbnails/photos/{photo}.jpg"')[1].split("</section>")[0]
    assert f'href="results/{result.pk}.jpg"><img src="thumbnails/results/{result.pk}.jpg"' in section
    assert "Aged to 70" in section
    manifest = {f["file"]: f for f in json.loads(archive.read("manifest.json"))["files"]}
    entry = manifest[f"results/{result.pk}.jpg"]
    assert (entry["photo_id"], entry["target_age"]) == (photo, 70)
