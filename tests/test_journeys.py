"""The end-user and officer journeys of issue 18: honest photo states, names, counts and filters."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from django.test import Client

from governance.audit import pseudonym
from governance.consent import PROCESSING, TRAINING
from governance.models import AuditEvent, ConsentRecord
from webplatform.lifecycle.consequences import consequences_of_withdrawal
from webplatform.lifecycle.erasure import user_erase
from webplatform.lifecycle.report import compliance_report
from webplatform.lifecycle.retention import retention_enforce
from webplatform.pages.templatetags.timeveil import countdown
from webplatform.photos.models import Photo

from .images import image_bytes
from .lifecycle_support import job_make, result_make, training_photo_choose_api

pytestmark = pytest.mark.usefixtures("empty_storage")
ROOT = Path(__file__).resolve().parents[1]


def browser(actor) -> Client:
    client = Client()
    client.force_login(actor.user)
    return client


def _photo(actor, upload) -> Photo:
    response = upload(actor=actor)
    assert response.status_code == 201, response.content
    return Photo.objects.get(pk=response.json()["id"])


def _withdraw(actor, purpose: str) -> None:
    response = actor.client.put(f"/api/v1/me/consents/{purpose}", {"granted": False}, format="json")
    assert response.status_code == 200, response.content


# --- 18.2: after withdrawing processing ---------------------------------------------------------------

def test_after_withdrawing_processing_the_kept_photo_shows_only_what_still_exists(
        trainer, upload, django_capture_on_commit_callbacks):
    # given the photo kept for training, with a result made from it
    photo = training_photo_choose_api(trainer, _photo(trainer, upload))
    result = result_make(owner_id=trainer.pk, photo_id=photo.pk)

    # when processing is withdrawn (training stands, so the photo stays and its result goes)
    with django_capture_on_commit_callbacks(execute=True):
        _withdraw(trainer, PROCESSING)
    assert Photo.objects.filter(pk=photo.pk).exists()

    # then the page shows no result that is gone: no thumbnail, no comparison, no dead download
    page = browser(trainer).get(f"/photos/{photo.pk}").content.decode()
    assert f"/results/{result.job_id}/thumb" not in page
    assert 'id="compare"' not in page and f"/transformations/{result.job_id}/content" not in page
    assert re.search(r'<span class="muted">deleted</span>', page)
    assert '<span class="ok">ready</span>' not in page
    # and "Age me" is off, saying why in page words, with a way back and a way out
    assert re.search(r'id="age-submit" disabled aria-describedby="age-blocked"', page)
    assert 'href="/consents/processing?granted=1"' in page
    assert f'href="/photos/{photo.pk}/delete" id="delete-now"' in page
    assert "PUT /api" not in page
    # and the API agrees: the job is on record, its result no longer available
    job = trainer.client.get(f"/api/v1/transformations/{result.job_id}").json()
    assert (job["status"], job["result_available"]) == ("done", False)


def test_the_no_script_age_form_refuses_in_page_words_after_withdrawal(
        trainer, upload, django_capture_on_commit_callbacks):
    photo = training_photo_choose_api(trainer, _photo(trainer, upload))
    with django_capture_on_commit_callbacks(execute=True):
        _withdraw(trainer, PROCESSING)
    client = browser(trainer)
    page = client.post(f"/photos/{photo.pk}/age", {"target_age": "70"}, follow=True).content.decode()
    assert "Aging is off: Timeveil no longer has your permission" in page and "PUT /api" not in page


# --- 18.14: a photo with no face -----------------------------------------------------------------------

def test_a_photo_with_no_face_shows_one_state_and_age_me_off_with_the_reason(owner):
    client = browser(owner)
    sky = image_bytes(size=(320, 240))  # noise: no face
    from django.core.files.uploadedfile import SimpleUploadedFile

    page = client.post("/upload", {"file": SimpleUploadedFile("sky.jpg", sky, "image/jpeg")},
                       follow=True).content.decode()
    assert 'id="no-face"' in page
    assert "Photo uploaded" not in page  # no green "uploaded" above the red "no face"
    assert re.search(r'id="age-submit" disabled aria-describedby="age-blocked"', page)
    assert "no face was found in it" in page
    assert "Keep this photo for training" not in page


# --- 18.1 on the pages ------------------------------------------------------------------------------------

def test_the_training_pages_offer_only_one_face_photos_and_tick_none(trainer, upload):
    faceless, one_face, two_faces = (_photo(trainer, upload) for _ in range(3))
    Photo.objects.filter(pk=one_face.pk).update(face_count=1)
    Photo.objects.filter(pk=two_faces.pk).update(face_count=2)
    page = browser(trainer).get("/consents").content.decode()
    offered = set(re.findall(r'name="photo_id" value="([^"]+)"', page))
    assert offered == {str(one_face.pk)}
    assert not re.search(r'name="photo_id" value="[^"]+" checked', page)
    assert "No photo is kept for training" in page and "upload one" not in page
    # the photo page offers "keep for training" only for the photo that may be kept
    client = browser(trainer)
    assert "Keep this photo for training" in client.get(f"/photos/{one_face.pk}").content.decode()
    assert "Keep this photo for training" not in client.get(f"/photos/{two_faces.pk}").content.decode()


# --- 18.15: download names --------------------------------------------------------------------------------

def test_downloads_are_named_for_people_and_the_original_stays_offered(owner, upload):
    photo = _photo(owner, upload)
    result = result_make(owner_id=owner.pk, photo_id=photo.pk)
    original = owner.client.get(f"/api/v1/photos/{photo.pk}/content")
    assert 'filename="timeveil-original.jpg"' in original["Content-Disposition"]
    aged = owner.client.get(f"/api/v1/transformations/{result.job_id}/content")
    assert 'filename="timeveil-age-70.jpg"' in aged["Content-Disposition"]
    page = browser(owner).get(f"/photos/{photo.pk}").content.decode()
    assert 'id="compare"' in page and 'id="download-original"' in page


# --- 18.12: countdowns --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("seconds", "reads"), [
    (48 * 3600 - 5, "in 48 hours"),  # just uploaded: was "in 1 day"
    (47.5 * 3600, "in 48 hours"),
    (90 * 86400 - 5, "in 90 days"),  # a training photo: was "in 89 days"
    (2 * 86400, "in 2 days"),
    (3 * 3600, "in 3 hours"),
    (90 * 60, "in 90 minutes"),
    (60, "now"),
])
def test_countdowns_round_the_way_people_read_them(seconds, reads):
    assert countdown(seconds) == reads


def test_a_new_photo_page_says_48_hours(owner, upload):
    photo = _photo(owner, upload)
    assert "deleted automatically in 48 hours" in browser(owner).get(f"/photos/{photo.pk}").content.decode()


# --- 18.5: each deletion its own action and actor, each chart its own count ---------------------------

def test_the_retention_chart_counts_deadlines_only_not_a_persons_deletion(owner, upload, clock,
                                                                           django_capture_on_commit_callbacks):
    from webplatform.pages.selectors import retention_chart

    deleted, lapsing = _photo(owner, upload), _photo(owner, upload)
    with django_capture_on_commit_callbacks(execute=True):
        assert owner.client.delete(f"/api/v1/photos/{deleted.pk}").status_code == 204
    event = AuditEvent.objects.get(action="photo.purged_on_request")
    assert (event.actor, event.object_ref) == (pseudonym(owner.pk), f"photo:{deleted.pk}")

    def today() -> dict[str, float]:
        return {s.name: s.values[-1] for s in retention_chart()["chart"].series}

    assert today() == {"photos deleted": 0, "results deleted": 0, "backlog": 0}
    clock.to(lapsing.expires_at)
    retention_enforce()
    assert today()["photos deleted"] == 1
    assert AuditEvent.objects.get(action="photo.expired").actor == "system"


def test_an_owner_deletion_awaiting_its_retry_is_not_retention_backlog(owner, officer, upload, monkeypatch):
    from webplatform.lifecycle import retention
    from webplatform.pages.selectors import retention_chart

    photo = _photo(owner, upload)
    monkeypatch.setattr(retention, "retention_enforce", lambda **kw: None)  # the purge has not run yet
    retention.photo_delete(user_id=owner.pk, photo=photo)
    backlog = next(s for s in retention_chart()["chart"].series if s.name == "backlog")
    assert backlog.values[-1] == 0
    # the report still lists it as due and not yet deleted, saying why
    assert [b["reason"] for b in compliance_report()["retention"]["backlog"]] == ["owner_deleted"]
    assert "<td>its owner deleted it</td>" in browser(officer).get("/officer/").content.decode()


def test_an_erasure_purge_is_recorded_as_the_erasure_not_as_deadlines(owner, upload,
                                                                       django_capture_on_commit_callbacks):
    photo = _photo(owner, upload)
    result_make(owner_id=owner.pk, photo_id=photo.pk)
    with django_capture_on_commit_callbacks(execute=True):
        user_erase(user_id=owner.pk)
    assert not Photo.objects.filter(pk=photo.pk).exists()
    assert not AuditEvent.objects.filter(action__regex=r"^(photo|result)\.(expired|purged_)").exists()
    completed = AuditEvent.objects.get(action="erasure.completed")
    assert completed.actor == "system" and completed.details["counts"]["photo"] == 1


# --- 18.6: consent counts outlive erasure --------------------------------------------------------------

def test_the_consent_counts_keep_an_erased_persons_grants_and_withdrawals(make_actor,
                                                                         django_capture_on_commit_callbacks):
    def totals() -> dict[str, int]:
        out: dict[str, int] = {}
        for row in compliance_report()["consent"]["history"]:
            out[row["event"]] = out.get(row["event"], 0) + row["count"]
        return out

    leaver = make_actor("leaver", consents=(PROCESSING, TRAINING))
    make_actor("stayer")
    _withdraw(leaver, TRAINING)
    before = totals()
    assert before == {"granted": 3, "withdrawn": 1}

    with django_capture_on_commit_callbacks(execute=True):
        user_erase(user_id=leaver.pk)
    assert not ConsentRecord.objects.filter(subject=pseudonym(leaver.pk)).exists()  # the purge ran
    assert totals() == before


# --- 18.7: the officer's audit trail --------------------------------------------------------------------

def test_from_after_to_is_an_error_on_the_page_and_a_400_on_the_api(officer):
    page = browser(officer).get("/officer/audit?since=2026-05-02&until=2026-05-01").content.decode()
    assert 'id="filter-error"' in page and "is after" in page and "No events match" not in page
    response = officer.client.get("/api/v1/audit/events",
                                  {"since": "2026-05-02T00:00:00Z", "until": "2026-05-01T00:00:00Z"})
    assert response.status_code == 400 and response.json()["error"]["code"]


def test_the_shortened_pseudonym_the_table_shows_finds_that_subject(owner, other, officer, upload):
    _photo(owner, upload)
    _photo(other, upload)
    client = browser(officer)
    page = client.get("/officer/audit?action=photo.uploaded").content.decode()
    shown = f"{pseudonym(owner.pk)[:13]}…"
    assert shown in page
    found = client.get("/officer/audit", {"subject": shown}).content.decode()
    assert "photo.uploaded" in found and pseudonym(other.pk) not in found
    api = officer.client.get("/api/v1/audit/events", {"subject": shown, "action": "photo.uploaded"}).json()
    assert [e["subject"] for e in api["results"]] == [pseudonym(owner.pk)]


def test_event_details_read_as_key_value_pairs(owner, officer, upload):
    _photo(owner, upload)
    page = browser(officer).get("/officer/audit?action=photo.uploaded").content.decode()
    assert "<dt>expires_at</dt>" in page
    assert "{&#x27;" not in page and "{'" not in page  # never a raw Python dict


def test_content_reads_are_hidden_by_default_counted_and_shown_on_request(owner, officer, upload):
    photo = _photo(owner, upload)
    for _ in range(3):
        assert owner.client.get(f"/api/v1/photos/{photo.pk}/content").status_code == 200
    client = browser(officer)
    page = client.get("/officer/audit").content.decode()
    assert "<td>photo.content_read</td>" not in page and "<td>photo.uploaded</td>" in page
    assert "3 content reads hidden" in page
    csv_url = re.search(r'href="(/api/v1/audit/events\?[^"]+)" id="csv"', page).group(1).replace("&amp;", "&")
    rows = b"".join(client.get(csv_url).streaming_content).decode()
    assert "photo.content_read" not in rows  # the CSV holds what the table shows
    shown = client.get("/officer/audit?reads=on").content.decode()
    assert shown.count("<td>photo.content_read</td>") == 3
    assert client.get("/officer/audit?action=photo.content_read").content.decode().count(
        "<td>photo.content_read</td>") == 3


def test_hidden_reads_are_counted_among_the_pages_events_and_capped(owner, officer, upload, monkeypatch):
    from webplatform.pages import officer as officer_pages

    # Given more reads than the cap, and one page that holds only the newest of the other events
    photo = _photo(owner, upload)
    for _ in range(3):
        assert owner.client.get(f"/api/v1/photos/{photo.pk}/content").status_code == 200
    monkeypatch.setattr(officer_pages, "HIDDEN_READS_CAP", 2)
    client = browser(officer)
    # Then the count stops at the cap and says "more than"
    assert "More than 2 content reads hidden" in client.get("/officer/audit").content.decode()
    # And a page of events older than those reads counts none of them
    uploaded = AuditEvent.objects.get(action="photo.uploaded").seq
    older = client.get(f"/officer/audit?before={uploaded + 1}").content.decode()
    assert "<td>photo.uploaded</td>" in older and 'id="hidden-reads"' not in older


def test_the_empty_training_runs_page_says_how_a_run_starts(officer):
    page = browser(officer).get("/officer/runs").content.decode()
    assert 'id="no-runs"' in page and "manage.py train --target-epsilon" in page


# --- 21.2: one domain layer ------------------------------------------------------------------------------

def test_the_withdrawal_confirmation_counts_what_the_withdrawal_deletes(
        trainer, upload, clock, django_capture_on_commit_callbacks):
    # given photos, one kept for training and older than 48 hours, results and a queued job
    kept = training_photo_choose_api(trainer, _photo(trainer, upload))
    others = [_photo(trainer, upload) for _ in range(2)]
    result_make(owner_id=trainer.pk, photo_id=others[0].pk)
    job_make(owner_id=trainer.pk, photo_id=others[1].pk)
    clock.advance(hours=1)
    said = consequences_of_withdrawal(user_id=trainer.pk, purpose_slug=PROCESSING)
    assert (said.photos, said.results, said.queued_jobs) == (2, 1, 1)
    assert said.training_photo_kept_until == kept.expires_at
    with django_capture_on_commit_callbacks(execute=True):
        _withdraw(trainer, PROCESSING)
    assert list(Photo.objects.filter(owner_id=trainer.pk).values_list("pk", flat=True)) == [kept.pk]
    clock.advance(hours=48)
    said = consequences_of_withdrawal(user_id=trainer.pk, purpose_slug=TRAINING)
    assert said.photos == 1  # no processing basis left: the kept photo goes at once
    with django_capture_on_commit_callbacks(execute=True):
        _withdraw(trainer, TRAINING)
    assert not Photo.objects.filter(owner_id=trainer.pk).exists()


def test_page_selectors_re_derive_no_domain_rule():
    """pages/selectors.py holds copy and chart series: no consent check, no job states, no status literals."""
    source = (ROOT / "webplatform" / "pages" / "selectors.py").read_text()
    tree = ast.parse(source)
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    assert not names & {"consent_is_active", "JobStatus", "photos_live"}, names & {"consent_is_active",
                                                                                   "JobStatus", "photos_live"}
    literals = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)}
    assert not literals & {"done", "accepted", "purging"}
    assert "Mirror of" not in source
