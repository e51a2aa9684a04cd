"""Pages through Django's test client: who sees what, consequences stated before they happen, HTML errors."""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, timedelta

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone
from django.utils.html import escape
from PIL import Image

from governance.audit_actions import AuditAction
from governance.consent import PROCESSING, TRAINING, policy_publish
from governance.models import AuditEvent, ConsentRecord
from webplatform.jobs.models import JobFailure, JobStatus, TransformationJob
from webplatform.photos.models import Photo

from .lifecycle_support import faulty_storage, job_make, result_make
from .test_product_api import face_jpeg

pytestmark = pytest.mark.usefixtures("empty_storage")
PASSWORD = "a-Long-passphrase-42"


def browser(actor) -> Client:
    client = Client()
    client.force_login(actor.user)
    return client


def _photo(actor, upload, data: bytes | None = None) -> Photo:
    response = upload(data, actor=actor)
    assert response.status_code == 201, response.content
    return Photo.objects.get(pk=response.json()["id"])


def text(response) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))


def test_visitors_get_a_landing_page_that_says_what_happens_to_a_photo(purposes):
    response = Client().get("/")
    assert response.status_code == 200
    page = text(response)
    assert "encrypted under a key that is yours alone" in page and "48 hours" in page
    assert "Sign up" in page and "Store and transform my photos" in page


def test_every_page_states_the_retention_periods_the_settings_enforce(owner, upload, settings):
    # The periods a person reads come from the settings: a deployment that keeps photos 24 hours never
    # promises 48 (the landing page, the upload form, the results caption and the training consent's words).
    settings.RETENTION_ORIGINAL, settings.RETENTION_RESULT = timedelta(hours=24), timedelta(hours=12)
    photo = _photo(owner, upload)
    client = browser(owner)
    pages = {path: text(client.get(path)) for path in ("/", f"/photos/{photo.id}", "/consents")}
    assert "after 24 hours" in pages["/"]  # the upload form, on a signed-in person's start page
    assert "deleted 12 hours after they are made" in pages[f"/photos/{photo.id}"]
    assert "normal 24 hours" in pages["/consents"]
    assert "after 24 hours" in text(Client().get("/"))  # the landing page a visitor sees
    assert not [path for path, page in pages.items() if "48 hours" in page]


def test_sign_up_records_only_the_consents_ticked(purposes):
    client = Client()
    response = client.post("/signup", {"username": "nina", "password": PASSWORD, "consent_processing": "1",
                                       "version_processing": "1", "version_training": "1"})
    assert response.status_code == 302
    records = ConsentRecord.objects.filter(user__username="nina")
    assert [(r.purpose.slug, r.granted) for r in records] == [(PROCESSING, True)]
    assert "Your photos" in text(client.get("/"))


def test_a_weak_password_is_shown_next_to_its_field(purposes):
    response = Client().post("/signup", {"username": "nina", "password": "123"})
    assert response.status_code == 400
    assert 'aria-invalid="true"' in response.content.decode() and "too short" in text(response)


def test_thumbnails_are_made_on_the_fly_for_the_owner_only_and_never_cached(owner, other, upload):
    photo = _photo(owner, upload)
    response = browser(owner).get(f"/photos/{photo.id}/thumb")
    assert response.status_code == 200 and response["Content-Type"] == "image/jpeg"
    assert "no-store" in response["Cache-Control"] and "private" in response["Cache-Control"]
    assert max(Image.open(io.BytesIO(response.content)).size) <= 320
    assert AuditEvent.objects.filter(action="photo.content_read", object_ref=f"photo:{photo.id}").exists()
    assert browser(other).get(f"/photos/{photo.id}/thumb").status_code == 404
    assert Client().get(f"/photos/{photo.id}/thumb").status_code == 302  # to sign in


def test_withdrawing_processing_says_how_many_photos_and_results_go_before_it_happens(owner, upload):
    first, second = _photo(owner, upload), _photo(owner, upload)
    for photo in (first, second):
        result_make(owner_id=owner.pk, photo_id=photo.pk)
    _photo(owner, upload)

    page = text(browser(owner).get("/consents/processing?granted=0"))

    assert "Withdrawing deletes your 3 photos and 2 results now" in page
    assert Photo.objects.filter(owner_id=owner.pk).count() == 3  # nothing happened yet


def test_confirming_the_withdrawal_deletes_them(owner, upload, django_capture_on_commit_callbacks):
    _photo(owner, upload)
    with django_capture_on_commit_callbacks(execute=True):
        response = browser(owner).post("/consents/processing", {"granted": "0"})
    assert response.status_code == 302
    assert not Photo.objects.filter(owner_id=owner.pk).exists()


def test_deleting_a_photo_is_confirmed_with_its_result_count(owner, upload):
    photo = _photo(owner, upload)
    result_make(owner_id=owner.pk, photo_id=photo.pk)
    page = text(browser(owner).get(f"/photos/{photo.id}/delete"))
    assert "removes 1 photo and 1 result made from it" in page


def test_the_training_grant_lets_the_user_pick_the_photo(owner, upload, clock):
    chosen = _photo(owner, upload)
    clock.advance(minutes=1)
    faceless = _photo(owner, upload)
    Photo.objects.filter(pk=chosen.pk).update(face_count=1)  # the noise test images have no face
    client = browser(owner)
    page = client.get("/consents/training?granted=1").content.decode()
    # only a photo with one face is offered, and none is ticked for the user
    assert f'value="{chosen.id}"' in page and f'value="{faceless.id}"' not in page
    assert "checked" not in page

    client.post("/consents/training", {"granted": "1", "policy_version": "1", "photo_id": str(chosen.id)})

    assert list(Photo.objects.filter(kept_for_training=True).values_list("pk", flat=True)) == [chosen.pk]
    assert "kept for training" in text(client.get(f"/photos/{chosen.id}"))


def test_a_policy_version_is_a_page_with_what_changed(owner):
    policy_publish(purpose_slug=TRAINING, text="Training policy v1\nA new line about the cap.")
    page = browser(owner).get("/policies/training/v2").content.decode()
    assert 'class="added"' in page and "A new line about the cap." in page
    assert "Not the current version" in browser(owner).get("/policies/training/v1").content.decode()


def test_receipts_are_pages_and_downloads_for_their_owner_only(owner, other):
    record = ConsentRecord.objects.filter(user_id=owner.pk).first()
    assert record is not None
    assert record.policy.sha256 in browser(owner).get(f"/receipts/{record.id}").content.decode()
    download = browser(owner).get(f"/receipts/{record.id}.json")
    assert download.json()["receipt_id"] == str(record.id) and "attachment" in download["Content-Disposition"]
    assert browser(other).get(f"/receipts/{record.id}").status_code == 404


def test_the_age_form_without_javascript_queues_a_job_and_opens_it(owner, upload):
    photo = _photo(owner, upload, face_jpeg())
    response = browser(owner).post(f"/photos/{photo.id}/age", {"target_age": "70"})
    job = TransformationJob.objects.get(photo=photo)
    assert response.status_code == 302 and response["Location"].endswith(f"?job={job.id}")
    assert job.target_age == 70
    # The page follows that queued job (its script polls it) until it is done.
    assert f'data-pending="{job.id}"' in browser(owner).get(response["Location"]).content.decode()
    assert browser(owner).post(f"/photos/{photo.id}/age", {"target_age": "500"}).status_code == 302
    assert TransformationJob.objects.filter(photo=photo).count() == 1


def test_a_photo_without_a_face_says_so_on_its_page(owner, upload):
    photo = _photo(owner, upload)  # noise: no face in it
    client = browser(owner)
    response = client.post(f"/photos/{photo.id}/age", {"target_age": "70"}, follow=True)
    assert "No face was found" in text(response)
    assert not TransformationJob.objects.filter(photo=photo).exists()


def test_failed_jobs_say_why_in_words_on_the_photo_page(owner, upload):
    photo = _photo(owner, upload, face_jpeg())
    for code in (JobFailure.NO_FACE, JobFailure.WORKER_LOST):
        job = job_make(owner_id=owner.user.pk, photo_id=photo.id, status=JobStatus.FAILED)
        TransformationJob.objects.filter(pk=job.pk).update(error=code)
    page = text(browser(owner).get(f"/photos/{photo.id}"))
    assert "failed: no face found" in page and "failed: worker lost" in page


def test_storage_down_is_a_503_page_with_retry_after_never_a_500(owner, upload, monkeypatch):
    photo = _photo(owner, upload, face_jpeg())
    result = result_make(owner_id=owner.user.pk, photo_id=photo.id)
    faulty_storage(monkeypatch).unreadable = True
    client = browser(owner)
    for path in (f"/photos/{photo.id}/thumb", f"/results/{result.job_id}/thumb"):
        response = client.get(path)
        assert response.status_code == 503, path
        assert response["Retry-After"] == str(settings.STORAGE_RETRY_AFTER_SECONDS)
        assert response["Content-Type"].startswith("text/html")
        assert "Photo storage is unavailable" in text(response)
    # A client that asks a page for JSON gets API.md's shape.
    response = client.get(f"/photos/{photo.id}/thumb", HTTP_ACCEPT="application/json")
    assert response.status_code == 503 and response.json()["error"]["code"] == "storage_unavailable"


def test_the_privacy_page_shows_the_gauge_and_cap(owner):
    page = browser(owner).get("/privacy").content.decode()
    assert (
        '<svg class="gauge"' in page and 'id="cap">' in page and "No training run has used your data" in page
    )


def test_the_training_policy_states_the_caps_users_agree_to(db):
    from django.core.management import call_command

    from governance.models import PolicyVersion

    call_command("bootstrap", stdout=io.StringIO())
    text = re.sub(r"\s+", " ", PolicyVersion.objects.get(purpose__slug=TRAINING).text)
    assert f"may spend at most epsilon {settings.DP_EPSILON_CAP:g} in total" in text and "{" not in text


def test_browsers_get_html_error_pages_and_the_api_keeps_json(owner, purposes):
    missing = Client().get("/no-such-page")
    assert missing.status_code == 404 and missing["Content-Type"].startswith("text/html")
    assert "Page not found" in missing.content.decode()
    api = Client().get("/api/v1/no-such-endpoint")
    assert api.status_code == 404 and api.json()["error"]["code"] == "not_found"
    forbidden = browser(owner).get("/officer/")
    assert forbidden.status_code == 403 and "Not allowed" in forbidden.content.decode()


@pytest.mark.parametrize("path,data", [
    ("/consents/training", {"granted": "1", "policy_version": "one"}),
    ("/consents/training", {"granted": "1"}),
    ("/consents/nope", {"granted": "1", "policy_version": "1"}),
    ("/training-photo", {"photo_id": "../../etc"}),
    ("/training-photo", {"photo_id": "x", "next": "//evil.example/"}),
    ("/account/erase", {"confirm": "no"}),
])
def test_odd_form_input_gets_a_message_or_404_never_a_500(owner, path, data):
    response = browser(owner).post(path, data)
    assert response.status_code in (302, 404), response.status_code
    assert "evil.example" not in response.get("Location", "")


def test_sign_up_with_a_stale_policy_version_keeps_the_account_and_says_why(purposes):
    client = Client()
    response = client.post("/signup", {"username": "otto", "password": PASSWORD, "consent_training": "1",
                                       "version_training": "7"}, follow=True)
    assert response.status_code == 200
    assert "is not current" in text(response)
    assert not ConsentRecord.objects.filter(user__username="otto").exists()


def test_the_sign_in_page_says_when_sign_in_is_locked(owner):

    for _ in range(settings.LOGIN_LIMIT_ACCOUNT_ADDRESS):
        Client(REMOTE_ADDR="198.51.100.9").post(
            "/login/", {"username": "owner", "password": "wrong-password-1"}
        )
    page = Client(REMOTE_ADDR="198.51.100.9").post("/login/", {"username": "owner", "password": PASSWORD})
    assert page.status_code == 200 and "Try again in" in text(page)
    assert "_auth_user_id" not in page.wsgi_request.session


def test_a_server_error_is_an_html_page_for_browsers_and_json_for_the_api(rf):
    from webplatform.pages.errors import server_error

    page = server_error(rf.get("/photos/x"))
    api = server_error(rf.get("/api/v1/photos"))
    assert page.status_code == 500 and "Something went wrong" in page.content.decode()
    assert page["Content-Type"].startswith("text/html")
    assert api.status_code == 500 and json.loads(api.content)["error"]["code"] == "server_error"


def test_officers_filter_the_audit_trail_page_and_get_the_matching_csv_link(owner, officer, upload):
    _photo(owner, upload)
    client = browser(officer)
    page = client.get("/officer/audit?action=photo.uploaded").content.decode()
    assert page.count("<td>photo.uploaded</td>") == 1 and "<td>account.created</td>" not in page
    assert "format=csv" in page and "action=photo.uploaded" in page
    verified = client.post("/officer/audit/verify").content.decode()
    assert "Chain intact" in verified


def test_the_audit_action_filter_offers_every_action_with_its_meaning(officer):
    page = browser(officer).get("/officer/audit").content.decode()
    select = re.search(r'<select name="action"[^>]*>(.*?)</select>', page, re.S).group(1)
    offered = re.findall(r'<option value="([^"]*)"', select)
    assert offered == ["", *sorted(a.value for a in AuditAction)]
    for action in AuditAction:
        assert f'<option value="{action}">{action} — {escape(action.meaning)}</option>' in select


def test_the_audit_date_filters_match_their_csv_link(owner, officer, upload, clock):
    _photo(owner, upload)
    client = browser(officer)
    today = clock.now.date().isoformat()
    page = client.get(f"/officer/audit?action=photo.uploaded&since={today}&until={today}").content.decode()
    assert page.count("<td>photo.uploaded</td>") == 1
    csv_url = re.search(r'href="(/api/v1/audit/events\?[^"]+)" id="csv"', page).group(1)
    rows = b"".join(client.get(csv_url.replace("&amp;", "&")).streaming_content).decode().splitlines()
    assert len(rows) == 2 and "photo.uploaded" in rows[1]
    tomorrow = (clock.now.date() + timedelta(days=1)).isoformat()
    assert "No events match" in client.get(f"/officer/audit?since={tomorrow}").content.decode()


def test_the_retention_chart_counts_deletions_and_the_backlog_from_the_audit_trail(owner, upload, clock):
    from webplatform.lifecycle.retention import retention_enforce
    from webplatform.pages.selectors import retention_chart

    _photo(owner, upload)
    clock.advance(hours=49)  # past its 48 h, and retention has not run yet

    def today() -> dict[str, float]:
        return {s.name: s.values[-1] for s in retention_chart()["chart"].series}

    assert today() == {"photos deleted": 0, "results deleted": 0, "backlog": 1}
    retention_enforce()
    assert today() == {"photos deleted": 1, "results deleted": 0, "backlog": 0}


def test_the_retention_backlog_of_past_days_is_counted_in_sql(owner, upload, clock):
    from datetime import datetime

    from webplatform.lifecycle.retention import retention_enforce
    from webplatform.pages.selectors import retention_chart

    clock.to(datetime.combine(clock.now.date() - timedelta(days=6), datetime.min.time(), tzinfo=UTC)
             + timedelta(hours=12))
    _photo(owner, upload)  # deadline: noon, day 2
    clock.advance(days=1)
    _photo(owner, upload)  # deadline: noon, day 3
    clock.advance(days=3)  # day 4: both deleted now, after a day and two days overdue
    retention_enforce()
    clock.advance(days=1)  # day 5
    series = {s.name: s.values for s in retention_chart()["chart"].series}
    # Days 0..5: A overdue at the end of day 2, A and B at the end of day 3, none once deleted on day 4
    assert series["backlog"] == [1, 2, 0, 0]  # from day 2, the first deadline
    assert series["photos deleted"] == [0, 0, 2, 0]


def test_the_officer_dashboard_draws_its_four_charts_server_side(officer, owner, upload):
    _photo(owner, upload)
    page = browser(officer).get("/officer/").content.decode()
    for chart in ("consent-chart", "retention-chart", "erasure-chart", "budget-chart"):
        assert f'aria-labelledby="{chart}-t {chart}-d"' in page
    assert "<img" not in page  # never image content
    # Drill-down: each day's count in the numbers table opens the audit trail filtered to it
    today = timezone.now().date().isoformat()
    assert f'href="/officer/audit?action=consent.granted&amp;since={today}&amp;until={today}"' in page
    assert "<script>" not in page


@pytest.mark.parametrize("form", [{}, {"granted": ""}, {"granted": "yes"}, {"granted": "true"}])
def test_a_consent_form_without_an_explicit_choice_changes_nothing(owner, upload, form):
    photo = _photo(owner, upload)
    response = browser(owner).post("/consents/processing", form)
    assert response.status_code == 400 and b"<html" in response.content.lower()
    assert Photo.objects.get(pk=photo.pk).expires_at > timezone.now()  # nothing withdrawn, nothing deleted
    assert not ConsentRecord.objects.filter(user=owner.user, granted=False).exists()


def test_the_audit_trail_pages_by_seq_without_counting_history(officer):
    from governance.audit import audit_append_many
    from webplatform.pages.officer import PAGE_SIZE

    audit_append_many([{"action": "keys.rotated", "actor_id": None}] * (2 * PAGE_SIZE + 5))
    newest = AuditEvent.objects.order_by("-seq").first().seq
    client = browser(officer)

    def seqs(page: str) -> list[int]:
        return [int(s) for s in re.findall(r'<tr><td class="num">(\d+)</td>', page)]

    first = client.get("/officer/audit").content.decode()
    assert seqs(first)[0] == newest and len(seqs(first)) == PAGE_SIZE and "← Newer" not in first
    older = re.search(r'href="\?before=(\d+)" rel="next"', first)
    second = client.get(f"/officer/audit?before={older.group(1)}").content.decode()
    assert seqs(second)[0] == seqs(first)[-1] - 1 and len(seqs(second)) == PAGE_SIZE
    newer = re.search(r'href="\?after=(\d+)" rel="prev"', second)
    assert seqs(client.get(f"/officer/audit?after={newer.group(1)}").content.decode()) == seqs(first)
    # Keyset pages: no COUNT and no OFFSET over the history
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        client.get(f"/officer/audit?before={older.group(1)}&action=keys.rotated")
    sql = " ".join(q["sql"].upper() for q in queries.captured_queries if "AUDITEVENT" in q["sql"].upper())
    assert "COUNT(" not in sql and "OFFSET" not in sql


def test_the_action_filter_lists_stored_actions_no_longer_written(officer):
    from governance.audit import audit_append
    from governance.selectors import audit_stored_actions

    for action in ("keys.rotated", "model.promoted", "keys.rotated"):
        audit_append(action=action, actor_id=None)
    # As an older release wrote it
    AuditEvent.objects.filter(action="model.promoted").update(action="photo.retired_action")
    stored = audit_stored_actions()
    assert stored == sorted(set(AuditEvent.objects.values_list("action", flat=True)))
    assert {"keys.rotated", "photo.retired_action"} <= set(stored) and "model.promoted" not in stored
    page = browser(officer).get("/officer/audit").content.decode()
    assert "photo.retired_action (no longer written)" in page


def test_the_library_records_one_read_event_a_view_not_one_a_thumbnail(owner, other, upload, settings):
    for _ in range(3):
        _photo(owner, upload)
    client = browser(owner)
    reads = AuditEvent.objects.filter(action__in=["photo.content_read", "photo.library_shown"])
    before = reads.count()
    page = client.get("/").content.decode()
    shown = AuditEvent.objects.filter(action="photo.library_shown").get()
    assert len(shown.details["photos"]) == 3 and reads.count() == before + 1
    urls = [u.replace("&amp;", "&") for u in re.findall(r'src="(/photos/[^"]+/thumb\?grant=[^"]+)"', page)]
    assert len(urls) == 3
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200 and response["Content-Type"] == "image/jpeg"
    assert reads.count() == before + 1  # the three thumbnails are the one event's
    # A thumbnail without a grant, with another photo's grant, or another person's, is audited on its own
    first, second = urls[0].split("?")[0], urls[1].split("?")[1]
    assert client.get(first).status_code == 200
    assert client.get(f"{first}?{second}").status_code == 200
    assert reads.count() == before + 3
    assert browser(other).get(urls[0]).status_code == 404  # not theirs: the grant opens nothing
    # An expired grant is no grant
    settings.PHOTO_THUMB_GRANT_SECONDS = -1
    assert client.get(urls[0]).status_code == 200 and reads.count() == before + 4
