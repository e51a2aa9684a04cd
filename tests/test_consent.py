"""The consent ledger through the API: receipts, stale versions, append-only records, the one check."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime

import pytest

import governance.consent as consent_module
from governance.audit import pseudonym
from governance.consent import PROCESSING, TRAINING, consent_is_active, policy_publish
from governance.models import AppendOnlyError, ConsentRecord

from .images import image_bytes
from .support import State, assert_error, assert_nothing_left_behind


def put(actor, purpose: str, **body):
    return actor.client.put(f"/api/v1/me/consents/{purpose}", body, format="json")


def test_purposes_list_current_policies(anon, purposes):
    body = anon.client.get("/api/v1/purposes").json()
    assert [p["slug"] for p in body] == [PROCESSING, TRAINING]
    for purpose in body:
        policy = purpose["policy"]
        assert policy["version"] == 1
        assert policy["sha256"] == hashlib.sha256(policy["text"].encode()).hexdigest()


def test_grant_returns_a_full_receipt(make_actor):
    actor = make_actor("carol.receipt", consents=())
    response = put(actor, TRAINING, granted=True, policy_version=1)
    assert response.status_code == 200
    receipt = response.json()
    assert set(receipt) >= {
        "receipt_id",
        "at",
        "subject",
        "purpose",
        "policy_version",
        "policy_sha256",
        "granted",
    }
    record = ConsentRecord.objects.get(pk=receipt["receipt_id"])
    assert record.user_id == actor.pk and record.granted
    datetime.fromisoformat(receipt["at"].replace("Z", "+00:00"))
    assert re.fullmatch(r"[0-9a-f]{64}", receipt["subject"])
    assert receipt["subject"] == pseudonym(actor.pk) and "carol" not in receipt["subject"]
    assert receipt["purpose"] == TRAINING
    assert receipt["policy_version"] == 1
    assert receipt["policy_sha256"] == hashlib.sha256(b"Training policy v1").hexdigest()
    assert receipt["granted"] is True
    assert consent_is_active(user_id=actor.pk, purpose_slug=TRAINING)


def test_grant_against_a_stale_version_is_409(owner):
    policy_publish(purpose_slug=TRAINING, text="Training policy v2")
    before = ConsentRecord.objects.count()
    error = assert_error(put(owner, TRAINING, granted=True, policy_version=1), 409, "stale_policy_version")
    assert error["details"]["current_version"] == 2
    assert error["details"]["current_sha256"] == hashlib.sha256(b"Training policy v2").hexdigest()
    assert ConsentRecord.objects.count() == before
    assert put(owner, TRAINING, granted=True, policy_version=2).status_code == 200


def test_grant_against_a_future_version_is_409(owner):
    assert_error(put(owner, TRAINING, granted=True, policy_version=99), 409, "stale_policy_version")


def test_unknown_purpose_is_404(owner):
    error = assert_error(put(owner, "advertising", granted=True, policy_version=1), 404, "not_found")
    assert error["details"]["purposes"] == [PROCESSING, TRAINING]


@pytest.mark.parametrize("body,field", [
    ({"granted": True}, "policy_version"),
    ({"granted": True, "policy_version": None}, "policy_version"),
    ({"granted": True, "policy_version": 0}, "policy_version"),
    ({"granted": True, "policy_version": "one"}, "policy_version"),
    ({"policy_version": 1}, "granted"),
    ({"granted": "perhaps", "policy_version": 1}, "granted"),
])
def test_bad_consent_bodies_are_400(owner, body, field):
    before = ConsentRecord.objects.count()
    error = assert_error(
        owner.client.put(f"/api/v1/me/consents/{TRAINING}", body, format="json"), 400, "invalid"
    )
    assert field in error["details"]
    assert ConsentRecord.objects.count() == before


def test_withdraw_needs_no_version_and_ends_consent(owner):
    assert consent_is_active(user_id=owner.pk, purpose_slug=PROCESSING)
    receipt = put(owner, PROCESSING, granted=False).json()
    assert receipt["granted"] is False and receipt["policy_version"] == 1
    assert not consent_is_active(user_id=owner.pk, purpose_slug=PROCESSING)
    states = {s["purpose"]: s for s in owner.client.get("/api/v1/me/consents").json()}
    assert states[PROCESSING]["active"] is False and states[PROCESSING]["granted"] is False


def test_receipts_and_policies_are_stamped_by_the_platform_clock(owner, clock):
    # given the clock moved a year ahead (governance.clock is the one seam time-travel tests move)
    moved = clock.advance(days=365)
    # when a policy is published and consent withdrawn
    policy = policy_publish(purpose_slug=PROCESSING, text="Processing policy v2")
    receipt = put(owner, PROCESSING, granted=False).json()
    # then both carry the moved time, not the wall clock
    assert policy.published_at == moved
    assert datetime.fromisoformat(receipt["at"].replace("Z", "+00:00")) == moved


def test_history_is_every_record_oldest_first(make_actor):
    actor = make_actor("historian", consents=())
    steps = [(PROCESSING, True), (TRAINING, True), (PROCESSING, False), (PROCESSING, True), (TRAINING, False)]
    receipts = [put(actor, p, granted=g, policy_version=1).json() for p, g in steps]
    history = actor.client.get("/api/v1/me/consents/history").json()
    assert [r["receipt_id"] for r in history] == [r["receipt_id"] for r in receipts]
    assert [(r["purpose"], r["granted"]) for r in history] == steps
    assert [r["at"] for r in history] == sorted(r["at"] for r in history)


def test_history_is_only_the_callers(owner, other):
    mine = {r["receipt_id"] for r in owner.client.get("/api/v1/me/consents/history").json()}
    theirs = {r["receipt_id"] for r in other.client.get("/api/v1/me/consents/history").json()}
    assert mine and theirs and not mine & theirs


def test_consent_records_are_append_only(owner):
    record = ConsentRecord.objects.filter(user_id=owner.pk).first()
    record.granted = False
    with pytest.raises(AppendOnlyError):
        record.save()
    record.refresh_from_db()
    assert record.granted is True
    # A change is a new row: the grant stays in history next to its withdrawal.
    put(owner, PROCESSING, granted=False)
    assert list(ConsentRecord.objects.filter(user_id=owner.pk, purpose__slug=PROCESSING)
                .order_by("at", "pk").values_list("granted", flat=True)) == [True, False]


def test_a_new_policy_version_suspends_old_consent_until_regranted(owner, upload):
    # Given an owner who consented to processing policy v1 and can upload
    assert upload().status_code == 201
    # When processing policy v2 is published
    policy_publish(purpose_slug=PROCESSING, text="Processing policy v2: new terms")
    # Then the old grant no longer counts: uploads are refused, and the state says why
    assert_error(upload(), 403, "consent_required")
    state = {s["purpose"]: s for s in owner.client.get("/api/v1/me/consents").json()}[PROCESSING]
    assert state["granted"] is True and state["active"] is False
    assert state["policy_version"] == 1 and state["current_policy_version"] == 2
    # Until the owner consents to v2
    assert put(owner, PROCESSING, granted=True, policy_version=2).status_code == 200
    assert upload().status_code == 201


def test_upload_without_processing_consent_is_403_and_stores_nothing(make_actor, upload):
    actor = make_actor("no-consent", consents=(TRAINING,))
    before = State.take()
    error = assert_error(upload(actor=actor), 403, "consent_required")
    assert error["details"] == {"purpose": PROCESSING}
    assert_nothing_left_behind(before)


def test_withdraw_then_upload_is_403(owner, upload):
    assert upload().status_code == 201
    put(owner, PROCESSING, granted=False)
    before = State.take()
    assert_error(upload(), 403, "consent_required")
    assert_nothing_left_behind(before)


def test_upload_asks_consent_is_active_and_nothing_else(owner, make_actor, upload, monkeypatch):
    # Given the one check answers "no" for everyone, a consenting owner is refused
    monkeypatch.setattr(consent_module, "consent_is_active", lambda *, user_id, purpose_slug: False)
    assert_error(upload(), 403, "consent_required")
    # And given it answers "yes" only for processing, a user who never consented is let through
    asked = []

    def only_processing(*, user_id, purpose_slug):
        asked.append(purpose_slug)
        return purpose_slug == PROCESSING

    monkeypatch.setattr(consent_module, "consent_is_active", only_processing)
    stranger = make_actor("stranger", consents=())
    assert upload(image_bytes(), actor=stranger).status_code == 201
    assert PROCESSING in asked
