"""GET /compliance/report and `manage.py compliance_report`: backlog, erasures, consents, chain status."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
from django.core.management import call_command

from governance.consent import PROCESSING, TRAINING, consent_set, policy_publish
from governance.models import AuditEvent
from webplatform.lifecycle.erasure import user_erase

from .lifecycle_support import faulty_storage, photo_make, result_make
from .support import assert_error

pytestmark = pytest.mark.usefixtures("empty_storage")

REPORT = "/api/v1/compliance/report"


def _report(officer) -> dict:
    response = officer.client.get(REPORT)
    assert response.status_code == 200, response.content
    return response.json()


def test_only_compliance_officers_get_the_report(owner, staff, anon, officer):
    assert_error(owner.client.get(REPORT), 403, "forbidden")
    assert_error(staff.client.get(REPORT), 403, "forbidden")
    assert_error(anon.client.get(REPORT), 401, "not_authenticated")
    assert {"generated_at", "retention", "erasures", "consent", "audit"} <= set(_report(officer))


def test_retention_backlog_lists_overdue_objects_oldest_first(owner, officer, clock):
    # given objects whose deadlines passed at different times (a result among the photos), and a fresh one
    start = clock.now
    oldest = photo_make(owner_id=owner.pk, created_at=start)
    middle = result_make(owner_id=owner.pk, photo_id=photo_make(owner_id=owner.pk, kept_for_training=True).pk,
                         created_at=start + timedelta(hours=1))
    newest = photo_make(owner_id=owner.pk, created_at=start + timedelta(hours=2))
    photo_make(owner_id=owner.pk, created_at=start + timedelta(days=5))

    # when the clock passes the three deadlines (retention has not run)
    clock.to(start + timedelta(days=3))
    backlog = _report(officer)["retention"]["backlog"]

    # then the backlog holds those three, oldest deadline first, with how overdue each is
    assert [(b["kind"], b["id"]) for b in backlog] == [
        ("photo", str(oldest.pk)), ("result", str(middle.pk)), ("photo", str(newest.pk))]
    assert [b["overdue_seconds"] for b in backlog] == [24 * 3600, 23 * 3600, 22 * 3600]
    assert all(b["deletion_attempts"] == 0 for b in backlog)
    assert _report(officer)["retention"]["held"] == {"photo": 4, "result": 1}


def test_erasures_show_deadline_and_status(make_actor, officer, clock, monkeypatch,
                                           django_capture_on_commit_callbacks):
    # given one erasure that completed and one stuck on a storage fault
    done_user, stuck_user = make_actor("leaver"), make_actor("stuck")
    stuck_photo = photo_make(owner_id=stuck_user.pk)
    faulty_storage(monkeypatch).broken.add(stuck_photo.storage_name)
    with django_capture_on_commit_callbacks(execute=True):
        user_erase(user_id=done_user.pk)
    clock.advance(hours=1)
    with django_capture_on_commit_callbacks(execute=True):
        user_erase(user_id=stuck_user.pk)

    # when the officer reads the report
    report = _report(officer)
    erasures = report["erasures"]

    # then both appear, oldest request first, with deadline, status, attempts; nothing names the people
    assert [e["status"] for e in erasures] == ["done", "purging"]
    assert erasures[1]["deadline"] == (clock.now + timedelta(days=30)).isoformat()
    assert erasures[1]["attempts"] == 1 and "OSError" in erasures[1]["last_error"]
    assert erasures[0]["completed_at"] and erasures[0]["counts"]["photo"] == 0
    assert not any(e["overdue"] for e in erasures)
    text = json.dumps(report)
    assert "leaver" not in text and "stuck@" not in text

    clock.advance(days=30, seconds=1)
    assert [e["overdue"] for e in _report(officer)["erasures"]] == [False, True]


def test_consent_counts_per_purpose_and_policy_version(make_actor, officer):
    # given two users granting processing, one granting then withdrawing training, and a training policy v2
    first, second = make_actor("first"), make_actor("second")
    consent_set(user_id=first.pk, purpose_slug=TRAINING, granted=True, policy_version=1)
    consent_set(user_id=first.pk, purpose_slug=TRAINING, granted=False, policy_version=None)
    consent_set(user_id=second.pk, purpose_slug=TRAINING, granted=True, policy_version=1)
    policy_publish(purpose_slug=TRAINING, text="Training policy v2")
    consent_set(user_id=first.pk, purpose_slug=TRAINING, granted=True, policy_version=2)

    consent = _report(officer)["consent"]

    # then "active now" counts the newest record per user and purpose, under its policy version
    assert consent["active_now"] == {f"{PROCESSING}/v1": 2, f"{TRAINING}/v1": 1, f"{TRAINING}/v2": 1}
    totals = {}
    for row in consent["history"]:
        key = (row["purpose"], row["policy_version"], row["event"])
        totals[key] = totals.get(key, 0) + row["count"]
        assert row["day"]
    assert totals == {
        (PROCESSING, 1, "granted"): 2,
        (TRAINING, 1, "granted"): 2,
        (TRAINING, 1, "withdrawn"): 1,
        (TRAINING, 2, "granted"): 1,
    }


def test_audit_status_turns_broken_after_tampering(owner, officer):
    audit = _report(officer)["audit"]
    assert audit["ok"] is True and audit["events_checked"] == AuditEvent.objects.count()

    AuditEvent.objects.filter(seq=3).update(action="consent.withdrawn")

    audit = _report(officer)["audit"]
    assert audit["ok"] is False and audit["first_bad_seq"] == 3


def test_the_command_prints_the_same_report(owner, officer, clock):
    photo_make(owner_id=owner.pk)
    clock.advance(days=3)
    out = io.StringIO()

    call_command("compliance_report", stdout=out)

    printed = json.loads(out.getvalue())
    served = _report(officer)
    assert set(printed) == set(served)
    assert printed == served  # same clock, same data: the same report
    assert len(printed["retention"]["backlog"]) == 1
