"""GET /me/export: a streamed zip of exactly the caller's data, decrypted, described and audited."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from django.http import StreamingHttpResponse
from PIL import Image

from governance.audit import pseudonym
from governance.consent import PROCESSING, TRAINING
from governance.models import AuditEvent
from webplatform.photos.models import Photo
from webplatform.privacy import privacy_report

from .lifecycle_support import job_make, result_make, storage_clear, storage_path
from .support import assert_error, windows

DOCUMENTS = {"consents.json", "jobs.json", "audit_events.json", "privacy.json", "manifest.json", "index.html"}


@pytest.fixture(autouse=True)
def _empty_storage() -> None:
    storage_clear()


def _upload(actor, upload, data: bytes | None = None, name: str = "selfie.jpg") -> Photo:
    response = upload(data, actor=actor, name=name)
    assert response.status_code == 201, response.content
    return Photo.objects.get(pk=response.json()["id"])


def _noise(fmt: str, size: tuple[int, int] = (64, 48)) -> bytes:
    """Fresh random pixels: no two users' images share a byte window outside the format's headers."""
    pixels = np.random.default_rng().integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def _holdings(actor, upload) -> dict:
    """Photos (a JPEG and a PNG), a result, a queued job and a consent history for one actor."""
    photos = [
        _upload(actor, upload, _noise("JPEG")),
        _upload(actor, upload, _noise("PNG"), name="selfie.png"),
    ]
    result_plain = _noise("JPEG", (40, 40))
    result = result_make(owner_id=actor.pk, photo_id=photos[0].pk, plaintext=result_plain)
    job = job_make(owner_id=actor.pk, photo_id=photos[1].pk)
    for granted in (True, False):
        body = {"granted": granted, "policy_version": 1}
        assert actor.client.put(f"/api/v1/me/consents/{TRAINING}", body, format="json").status_code == 200
    served = {p.pk: actor.client.get(f"/api/v1/photos/{p.pk}/content").content for p in photos}
    receipts = [r["receipt_id"] for r in actor.client.get("/api/v1/me/consents/history").json()]
    return {"photos": photos, "served": served, "result": result, "result_plain": result_plain,
            "jobs": {str(job.pk), str(result.job_id)}, "receipts": receipts}


def _export(actor) -> tuple[StreamingHttpResponse, list[bytes]]:
    response = actor.client.get("/api/v1/me/export")
    assert response.status_code == 200
    return response, list(response.streaming_content)


@pytest.fixture
def exported(make_actor, upload):
    owner = make_actor("exporter", consents=(PROCESSING,))
    other = make_actor("bystander", consents=(PROCESSING,))
    mine = _holdings(owner, upload)
    theirs = _holdings(other, upload)
    response, chunks = _export(owner)
    archive = zipfile.ZipFile(io.BytesIO(b"".join(chunks)))
    return owner, other, mine, theirs, response, chunks, archive


def test_export_is_a_streamed_zip(exported):
    _owner, _other, mine, _theirs, response, chunks, archive = exported
    assert isinstance(response, StreamingHttpResponse)
    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"].startswith("attachment;")
    assert "no-store" in response["Cache-Control"]
    # one chunk at least per image: the zip is produced object by object, not built whole in memory
    assert len(chunks) >= len(mine["photos"]) + 1
    assert archive.testzip() is None


def test_export_holds_every_photo_and_result_decrypted(exported):
    _owner, _other, mine, _theirs, _response, _chunks, archive = exported
    photos, result = mine["photos"], mine["result"]
    expected = {f"photos/{photos[0].pk}.jpg", f"photos/{photos[1].pk}.png", f"results/{result.pk}.jpg"}
    thumbnails = {f"thumbnails/photos/{photos[0].pk}.jpg", f"thumbnails/photos/{photos[1].pk}.jpg",
                  f"thumbnails/results/{result.pk}.jpg"}
    assert set(archive.namelist()) == expected | thumbnails | DOCUMENTS
    for photo in photos:
        name = f"photos/{photo.pk}.{'png' if photo.content_type == 'image/png' else 'jpg'}"
        assert archive.read(name) == mine["served"][photo.pk]
    assert archive.read(f"results/{result.pk}.jpg") == mine["result_plain"]


def test_export_documents_consents_jobs_audit_privacy(exported):
    owner, _other, mine, _theirs, _response, _chunks, archive = exported
    consents = json.loads(archive.read("consents.json"))
    assert [c["receipt_id"] for c in consents] == mine["receipts"]
    assert [(c["purpose"], c["state"]) for c in consents] == [
        (PROCESSING, "granted"), (TRAINING, "granted"), (TRAINING, "withdrawn")]
    assert {j["id"] for j in json.loads(archive.read("jobs.json"))} == mine["jobs"]
    events = json.loads(archive.read("audit_events.json"))
    about_owner = AuditEvent.objects.filter(subject=pseudonym(owner.pk))
    assert sorted(e["seq"] for e in events) == sorted(about_owner.values_list("seq", flat=True))
    assert {"account.created", "photo.uploaded", "photo.content_read", "export.generated"} <= {
        e["action"] for e in events}
    assert json.loads(archive.read("privacy.json")) == json.loads(json.dumps(privacy_report(owner.pk)))


def test_export_manifest_describes_every_file_and_index_links_them(exported):
    owner, _other, _mine, _theirs, _response, _chunks, archive = exported
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["subject"] == pseudonym(owner.pk)
    described = {entry["file"]: entry for entry in manifest["files"]}
    thumbnails = {entry["thumbnail"] for entry in manifest["files"] if "thumbnail" in entry}
    assert set(described) | thumbnails == set(archive.namelist()) - {"manifest.json"}
    for name, entry in described.items():
        assert entry["kind"] in {"photo", "result", "document"}, entry
        if entry["kind"] != "document":
            assert entry["id"] in name and entry["created_at"] and entry["expires_at"]
    index = archive.read("index.html").decode()
    assert all(f'href="{name}"' in index for name in described)
    # The page shows the small copies and links each to its full-size file
    images = [entry for entry in described.values() if entry["kind"] != "document"]
    assert all(f'<a href="{entry["file"]}"><img src="{entry["thumbnail"]}"' in index for entry in images)
    assert not any(f'src="{entry["file"]}"' in index for entry in images)


def test_export_thumbnails_are_small_copies_of_each_image(exported):
    _owner, _other, _mine, _theirs, _response, _chunks, archive = exported
    for entry in json.loads(archive.read("manifest.json"))["files"]:
        if entry["kind"] == "document":
            continue
        full = Image.open(io.BytesIO(archive.read(entry["file"])))
        small = Image.open(io.BytesIO(archive.read(entry["thumbnail"])))
        assert small.format == "JPEG" and max(small.size) <= 320
        assert abs(small.width / small.height - full.width / full.height) < 0.02
        # the same picture (these are noise, which JPEG cannot keep pixel for pixel): the same mean colour
        means = [np.asarray(im.convert("RGB"), np.float32).mean(axis=(0, 1)) for im in (full, small)]
        assert np.abs(means[0] - means[1]).max() < 4


def test_export_holds_nothing_of_any_other_user(exported):
    owner, other, _mine, theirs, _response, chunks, archive = exported
    # every stored and served byte of theirs, their ids, receipts and pseudonym
    # (windows from the second half: the entropy-coded pixels, not the tables every JPEG shares)
    needles = [window for data in theirs["served"].values() for window in windows(data[len(data) // 2:])]
    needles += windows(theirs["result_plain"][len(theirs["result_plain"]) // 2:])
    needles += [storage_path(p.storage_name).read_bytes()[20:52] for p in theirs["photos"]]
    needles += [str(p.pk).encode() for p in theirs["photos"]] + [str(theirs["result"].pk).encode()]
    needles += [r.encode() for r in theirs["receipts"]] + [j.encode() for j in theirs["jobs"]]
    needles += [pseudonym(other.pk).encode(), b"bystander"]
    members = [archive.read(name) for name in archive.namelist()]
    for blob in [b"".join(chunks), *members]:
        for needle in needles:
            assert needle not in blob
    assert pseudonym(owner.pk).encode() in archive.read("manifest.json")  # the check above can find things


def test_export_is_audited(exported):
    owner, other, *_ = exported
    event = AuditEvent.objects.get(action="export.generated")
    assert event.subject == event.actor == pseudonym(owner.pk)
    assert not AuditEvent.objects.filter(action="export.generated", subject=pseudonym(other.pk)).exists()


def test_export_needs_authentication(anon, db):
    assert_error(anon.client.get("/api/v1/me/export"), 401, "not_authenticated")
    assert not AuditEvent.objects.filter(action="export.generated").exists()


def test_an_object_that_is_no_image_is_still_exported_shown_by_its_full_file(make_actor, upload):
    # Given a held result whose bytes no image decoder reads (an older writer, a damaged file)
    owner = make_actor("keeper", consents=(PROCESSING,))
    photo = _upload(owner, upload, _noise("JPEG"))
    odd = result_make(owner_id=owner.pk, photo_id=photo.pk, plaintext=b"not an image at all")
    # When the owner exports, the export completes, with that object in it as it is
    _response, chunks = _export(owner)
    archive = zipfile.ZipFile(io.BytesIO(b"".join(chunks)))
    assert archive.read(f"results/{odd.pk}.jpg") == b"not an image at all"
    entry = next(f for f in json.loads(archive.read("manifest.json"))["files"] if f.get("id") == str(odd.pk))
    # Then it has no thumbnail, and the index shows the file itself
    assert "thumbnail" not in entry
    assert f"thumbnails/results/{odd.pk}.jpg" not in archive.namelist()
    assert f'<img src="results/{odd.pk}.jpg"' in archive.read("index.html").decode()


def test_a_row_planted_past_the_head_is_not_exported_as_an_event(make_actor):
    owner = make_actor("exporter", consents=(PROCESSING,))
    head = AuditEvent.objects.order_by("-seq").first()
    AuditEvent.objects.create(seq=head.seq + 10**6, at=head.at, action="photo.deleted", actor="planted",
                              subject=pseudonym(owner.pk), object_ref="planted", details={},
                              prev_hash="0" * 64, hash="1" * 64)
    _response, chunks = _export(owner)
    events = json.loads(zipfile.ZipFile(io.BytesIO(b"".join(chunks))).read("audit_events.json"))
    assert events and all(e["object_ref"] != "planted" for e in events)
