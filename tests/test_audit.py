"""Invariant 3: every change appends a pseudonymous event to one hash chain, and tampering is detected."""

from __future__ import annotations

import hashlib
import importlib
import inspect
import io
import json
import re
import threading
import typing
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from rest_framework.test import APIClient

from governance import audit, clock
from governance.audit import _event_hash, audit_append, audit_verify, pseudonym
from governance.audit_actions import KNOWN_ACTIONS, AuditAction
from governance.audit_results import audit_verify_full_and_record
from governance.checkpoints import checkpoint_path
from governance.models import AuditEvent, AuditHead

from .images import image_bytes
from .lifecycle_support import training_photo_choose_api
from .support import assert_error, named

HEX64 = re.compile(r"^[0-9a-f]{64}$")


def last_seq() -> int:
    return AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first() or 0


def events_after(seq: int) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(seq__gt=seq).order_by("seq"))


def verify(officer, *, full: bool = False) -> dict:
    """The API's verification, less the checkpoint counts (tests/test_security_audit.py asserts them), where
    the check began and the stored full result; with `full`, after the scheduled full walk has run."""
    if full:
        audit_verify_full_and_record()
    response = officer.client.get("/api/v1/audit/verify")
    assert response.status_code == 200
    body = response.json()
    for name in ("checkpoints_checked", "checkpoint_lag", "checked_from", "full_verification"):
        body.pop(name)
    return body


def first_signed() -> int:
    """The oldest signed checkpoint's seq: where the API's check of the chain's end begins (a short chain's
    checkpoints all lie in the file's tail)."""
    return min(json.loads(line)["seq"] for line in checkpoint_path().read_text().splitlines())


# --- every change appends ------------------------------------------------------------------------------


def test_every_change_and_content_read_appends_the_right_event(purposes, django_capture_on_commit_callbacks):
    client = APIClient()
    start = last_seq()

    # Register
    response = client.post(
        "/api/v1/auth/register", {"username": "auditee", "password": "a-Long-passphrase-42"}
    )
    assert response.status_code == 201
    user_id, token = get_user_model().objects.get(username="auditee").pk, response.json()["token"]
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    me = pseudonym(user_id)
    [created] = events_after(start)
    assert (created.action, created.actor, created.subject) == ("account.created", me, me)

    def step(do, action: str) -> AuditEvent:
        before = last_seq()
        result = do()
        assert result.status_code < 300, result.content
        event, *follow_ups = events_after(before)  # a deletion is followed by retention's own events
        assert event.action == action
        assert all(e.action.startswith("retention.") for e in follow_ups), follow_ups
        assert event.actor == me and event.subject == me
        return event

    grant = step(lambda: client.put("/api/v1/me/consents/processing", {"granted": True, "policy_version": 1},
                                    format="json"), "consent.granted")
    assert grant.details == {"purpose": "processing", "policy_version": 1}
    uploaded = step(lambda: client.post("/api/v1/photos", {"file": named(image_bytes(), "a.jpg")},
                                        format="multipart"), "photo.uploaded")
    photo_id = uploaded.object_ref.removeprefix("photo:")
    step(lambda: client.get(f"/api/v1/photos/{photo_id}/content"), "photo.content_read")
    with django_capture_on_commit_callbacks(execute=True):
        deleted = step(lambda: client.delete(f"/api/v1/photos/{photo_id}"), "photo.deleted")
    assert deleted.object_ref == f"photo:{photo_id}"
    step(lambda: client.put("/api/v1/me/consents/processing", {"granted": False}, format="json"),
         "consent.withdrawn")

    # Reads of metadata are not changes and add nothing; the chain still verifies.
    before = last_seq()
    assert client.get("/api/v1/me/consents").status_code == 200
    assert client.get("/api/v1/photos").status_code == 200
    assert last_seq() == before
    assert audit_verify().ok


def test_refused_requests_append_nothing(owner, other):
    photo_id = owner.client.post("/api/v1/photos", {"file": named(image_bytes(), "a.jpg")},
                                 format="multipart").json()["id"]
    before = last_seq()
    assert other.client.get(f"/api/v1/photos/{photo_id}/content").status_code == 404
    assert other.client.delete(f"/api/v1/photos/{photo_id}").status_code == 404
    assert owner.client.put("/api/v1/me/consents/training", {"granted": True, "policy_version": 7},
                            format="json").status_code == 409
    assert last_seq() == before


# --- pseudonyms only -----------------------------------------------------------------------------------


def test_events_carry_pseudonyms_only(purposes, django_capture_on_commit_callbacks):
    # Given a user with a distinctive name, email and password who does everything once
    username, email, password = (
        "Zelda.Fitzgerald-4711",
        "zelda.private@example.org",
        "Tender-Is-The-Night-1925",
    )
    client = APIClient()
    response = client.post(
        "/api/v1/auth/register", {"username": username, "password": password, "email": email}
    )
    assert response.status_code == 201
    user_id = get_user_model().objects.get(username=username).pk
    client.credentials(HTTP_AUTHORIZATION=f"Token {response.json()['token']}")
    assert client.put("/api/v1/me/consents/processing", {"granted": True, "policy_version": 1},
                      format="json").status_code == 200
    photo_id = client.post("/api/v1/photos", {"file": named(image_bytes(), f"{username}.jpg")},
                           format="multipart").json()["id"]
    assert client.get(f"/api/v1/photos/{photo_id}/content").status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        assert client.delete(f"/api/v1/photos/{photo_id}").status_code == 204
    assert client.post("/api/v1/auth/token", {"username": username, "password": password}).status_code == 200

    # When every column of every event is read
    rows = list(AuditEvent.objects.values())
    dump = repr(rows).lower()

    # Then nothing personal appears: not the name, email, password, the raw user id nor the token
    for secret in (username, "zelda", "fitzgerald", email, "example.org", password, "tender-is",
                   f"user:{user_id}", response.json()["token"], f"{username}.jpg"):
        assert secret.lower() not in dump, secret
    # And actors and subjects are 64-hex keyed hashes (or fixed system names), not unkeyed hashes of the id
    me = pseudonym(user_id)
    assert HEX64.match(me)
    assert me != hashlib.sha256(f"user:{user_id}".encode()).hexdigest()
    for row in rows:
        for field in ("actor", "subject"):
            assert HEX64.match(row[field]) or row[field] in {"system", "policy", "keyring"}, row
    assert sum(1 for row in rows if row["subject"] == me) >= 5
    # The receipt names the same pseudonym, so a person can find their own events.
    assert client.get("/api/v1/me/consents/history").json()[0]["subject"] == me


# --- verification -------------------------------------------------------------------------------------


@pytest.fixture
def chain(owner, officer, django_capture_on_commit_callbacks) -> list[int]:
    """A chain of at least ten events (users, consents, uploads, reads), its last commit checkpointed."""
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(3):
            photo_id = owner.client.post("/api/v1/photos", {"file": named(image_bytes(), "a.jpg")},
                                         format="multipart").json()["id"]
            assert owner.client.get(f"/api/v1/photos/{photo_id}/content").status_code == 200
    seqs = list(AuditEvent.objects.order_by("seq").values_list("seq", flat=True))
    assert len(seqs) >= 10 and seqs == list(range(1, len(seqs) + 1))
    return seqs


def test_fresh_chain_verifies(chain, officer):
    # The request checks from the oldest signed checkpoint it holds to the head (the chain's end)
    assert verify(officer) == {"ok": True, "events_checked": len(chain) - first_signed() + 1,
                               "checkpoint_seq": len(chain)}
    head = AuditHead.objects.get(pk=1)
    assert head.seq == len(chain) and head.hash == AuditEvent.objects.get(seq=len(chain)).hash
    assert AuditEvent.objects.get(seq=1).prev_hash == audit.GENESIS


@pytest.mark.parametrize("field,value", [
    ("details", {"expires_at": "never"}),
    ("action", "photo.deleted"),
    ("actor", "0" * 64),
    ("subject", "f" * 64),
    ("object_ref", "photo:00000000-0000-0000-0000-000000000000"),
    ("at", datetime(2001, 1, 1, tzinfo=UTC)),
])
def test_tampering_with_one_event_is_found_at_its_seq(chain, officer, field, value):
    # Given an intact chain; when one middle event is edited behind the application's back
    target = chain[len(chain) // 2]
    assert AuditEvent.objects.filter(seq=target).update(**{field: value}) == 1
    # Then verification fails and names that event
    assert target >= first_signed()  # inside what the request checks (the prefix: the next test)
    assert verify(officer) == {"ok": False, "events_checked": target - first_signed(),
                               "first_bad_seq": target,
                               "reason": "broken_link", "checkpoint_seq": len(chain)}


def test_tampering_with_a_hash_recomputed_without_the_key_is_found_at_that_event(chain, officer):
    # Given an attacker who rewrites an event and recomputes its hash with every input but the keyring's key
    target = chain[3]
    event = AuditEvent.objects.get(seq=target)
    event.details = {"forged": True}
    event.hash = _event_hash(seq=event.seq, at=event.at, action=event.action, actor=event.actor,
                             subject=event.subject, object_ref=event.object_ref, details=event.details,
                             prev_hash=event.prev_hash, key=b"a guess at the key")
    AuditEvent.objects.filter(seq=target).update(details=event.details, hash=event.hash)
    # Then that very event fails its keyed hash: it lies before the first checkpoint, so in the prefix only
    # the scheduled full walk reads, and the API reports that walk's finding
    assert target < first_signed()
    body = verify(officer, full=True)
    assert (body["ok"], body["first_bad_seq"], body["reason"]) == (False, target, "broken_link")


def test_deleting_a_middle_event_is_found(chain, officer):
    target = chain[5]
    AuditEvent.objects.filter(seq=target).delete()
    report = verify(officer)
    assert report["ok"] is False and report["first_bad_seq"] == target


def test_deleting_the_last_event_is_found_by_the_head(chain, officer):
    # The chain itself stays internally consistent when truncated: only the head remembers its length.
    AuditEvent.objects.filter(seq=chain[-1]).delete()
    assert verify(officer) == {"ok": False, "events_checked": len(chain) - first_signed(),
                               "first_bad_seq": chain[-1],
                               "reason": "head_mismatch", "checkpoint_seq": len(chain)}


def test_verify_audit_command(chain):
    out = io.StringIO()
    call_command("verify_audit", stdout=out, stderr=io.StringIO())
    assert f"{len(chain)} events" in out.getvalue()
    AuditEvent.objects.filter(seq=2).update(details={"x": 1})
    with pytest.raises(CommandError, match="seq 2"):
        call_command("verify_audit", stdout=io.StringIO(), stderr=io.StringIO())


def test_verify_on_an_empty_chain_is_ok(db):
    assert audit_verify() == audit.ChainReport(ok=True, events_checked=0)


# --- listing -------------------------------------------------------------------------------------------


def test_date_filters_find_events_whose_time_runs_behind_their_seq(db, monkeypatch):
    # Given concurrent actions chained out of time order across midnight: the later seq has the earlier day
    from governance.selectors import audit_events

    day1, day2 = datetime(2030, 6, 1, 23, 59, 59, tzinfo=UTC), datetime(2030, 6, 2, 0, 0, 1, tzinfo=UTC)
    for at in (day1 - timedelta(days=3), day2, day1, day2 + timedelta(days=3)):
        monkeypatch.setattr(clock, "now", lambda at=at: at)
        audit_append(action="keys.rotated", actor_id=None, object_ref=at.isoformat())
    refs = lambda events: [e.object_ref for e in events]  # noqa: E731
    # Then each day's filter (whose seq range the per-day roll-ups bound) still finds each of them
    midnight = datetime(2030, 6, 2, tzinfo=UTC)
    assert refs(audit_events(since=midnight - timedelta(days=1), until=midnight)) == [day1.isoformat()]
    assert refs(audit_events(since=midnight, until=midnight + timedelta(days=1))) == [day2.isoformat()]
    assert refs(audit_events(since=midnight)) == [day2.isoformat(), (day2 + timedelta(days=3)).isoformat()]
    assert refs(audit_events(until=midnight)) == [(day1 - timedelta(days=3)).isoformat(), day1.isoformat()]
    assert refs(audit_events(since=midnight + timedelta(days=10))) == []
    assert refs(audit_events(until=midnight - timedelta(days=10))) == []


def test_event_filters_and_pagination(owner, other, officer, monkeypatch):
    # Given events at known times: owner uploads at T+1h..T+3h, other at T+4h
    base = datetime(2030, 6, 1, 12, tzinfo=UTC)
    now = [base]
    monkeypatch.setattr(clock, "now", lambda: now[0])
    for hour, actor in enumerate((owner, owner, owner, other), start=1):
        now[0] = base + timedelta(hours=hour)
        assert actor.client.post("/api/v1/photos", {"file": named(image_bytes(), "a.jpg")},
                                 format="multipart").status_code == 201
    get = officer.client.get

    # action
    body = get("/api/v1/audit/events", {"action": "photo.uploaded"}).json()
    assert body["count"] == 4 and {e["action"] for e in body["results"]} == {"photo.uploaded"}
    # subject (a pseudonym)
    body = get("/api/v1/audit/events", {"subject": pseudonym(owner.pk), "action": "photo.uploaded"}).json()
    assert body["count"] == 3 and {e["subject"] for e in body["results"]} == {pseudonym(owner.pk)}
    # or its start as the table shows it (PostgreSQL resolves it to the pseudonyms it names), or nobody's
    body = get("/api/v1/audit/events", {"subject": pseudonym(owner.pk)[:8] + "…", "action": "photo.uploaded"})
    assert body.json()["count"] == 3
    nobody = next(p for p in ("0000", "ffff", "zz") if not pseudonym(owner.pk).startswith(p)
                  and not pseudonym(other.pk).startswith(p))
    assert get("/api/v1/audit/events", {"subject": nobody, "action": "photo.uploaded"}).json()["count"] == 0
    # since is inclusive, until exclusive
    body = get("/api/v1/audit/events", {"since": (base + timedelta(hours=2)).isoformat(),
                                        "until": (base + timedelta(hours=4)).isoformat()}).json()
    assert [e["at"] for e in body["results"]] == [
        (base + timedelta(hours=h)).isoformat().replace("+00:00", "Z") for h in (2, 3)]
    assert (
        get("/api/v1/audit/events", {"since": (base + timedelta(hours=5)).isoformat()}).json()["count"] == 0
    )

    # pagination: limit/offset over all events, oldest first
    total = AuditEvent.objects.count()
    page = get("/api/v1/audit/events", {"limit": 2, "offset": 1}).json()
    assert page["count"] == total
    assert [e["seq"] for e in page["results"]] == [2, 3]
    assert page["next"] and page["previous"]
    every = get("/api/v1/audit/events", {"limit": 1000}).json()["results"]
    assert [e["seq"] for e in every] == list(range(1, total + 1))
    assert set(every[0]) == {
        "seq",
        "at",
        "action",
        "actor",
        "subject",
        "object_ref",
        "details",
        "prev_hash",
        "hash",
    }


def test_unfiltered_list_counts_from_the_head_not_every_event(officer):
    # Given a trail of a few events
    for _ in range(3):
        audit_append(action="keys.rotated", actor_id=None)
    from django.test.utils import CaptureQueriesContext

    # When the first page of the whole trail is read
    with CaptureQueriesContext(connection) as queries:
        body = officer.client.get("/api/v1/audit/events", {"limit": 2}).json()
    # Then its count is the head's seq, without a COUNT over every event (issue 23: 23x at a million)
    assert body["count"] == AuditHead.objects.get(pk=1).seq == AuditEvent.objects.count()
    assert not [q["sql"] for q in queries if "COUNT(" in q["sql"].upper() and "auditevent" in q["sql"]]
    # and a filtered list still counts its matches
    assert officer.client.get("/api/v1/audit/events", {"action": "keys.rotated"}).json()["count"] == 3


@pytest.mark.parametrize("params", [{"since": "yesterday"}, {"until": "2030-13-45"}, {"action": "x" * 65},
                                    {"action": "photo.uplaoded"}, {"action": "photo.*"}])
def test_invalid_filters_are_400_json(officer, params):
    error = assert_error(officer.client.get("/api/v1/audit/events", params), 400, "invalid")
    assert set(error["details"]) == set(params)


def test_the_action_filter_takes_the_vocabulary_and_retired_actions_still_on_record(officer):
    # Given an event of an action the vocabulary no longer lists (planted as an old trail would hold it)
    audit_append(action=AuditAction.KEYS_ROTATED, actor_id=None, chained=True)
    head = AuditHead.objects.get(pk=1)
    AuditEvent.objects.filter(seq=head.seq).update(action="photo.retired_action")
    # Then the API still filters on it, and on a member nothing wrote yet (an empty page, not a 400)
    for action, count in (("photo.retired_action", 1), (AuditAction.MODEL_PROMOTED.value, 0)):
        response = officer.client.get("/api/v1/audit/events", {"action": action})
        assert response.status_code == 200 and response.json()["count"] == count
    # And the officer's page offers both, and refuses an unknown one with a 400
    client = Client()
    client.force_login(officer.user)
    assert client.get("/officer/audit", {"action": "photo.retired_action"}).status_code == 200
    assert client.get("/officer/audit", {"action": "photo.uplaoded"}).status_code == 400


# --- concurrency ----------------------------------------------------------------------------------------

THREADS, PER_THREAD = 8, 25


def _append_concurrently() -> list[BaseException]:
    barrier = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            barrier.wait()
            for i in range(PER_THREAD):
                audit_append(
                    action="keys.rotated", actor_id=None, subject=f"thread-{n}", object_ref=f"{n}:{i}"
                )
        except BaseException as exc:  # collected and asserted on in the main thread
            errors.append(exc)
        finally:
            connection.close()  # each thread has its own connection; leave none open

    threads = [threading.Thread(target=work, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return errors


# Not run on SQLite: the test database there is in-memory with a shared cache, where concurrent threads get
# table-level SQLITE_LOCKED errors ("database table is locked") that no busy timeout waits out. The file
# database of the embedded mode serialises writers with BEGIN IMMEDIATE instead (see settings).
@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="row locks under real concurrency: PostgreSQL only"
)
@pytest.mark.django_db(transaction=True)
def test_concurrent_appends_keep_one_chain_on_postgresql():
    # Given an empty chain (no head row yet: the threads also race to create it)
    assert not AuditHead.objects.exists()
    # When 8 threads append 25 events each at once
    errors = _append_concurrently()
    # Then there are 200 events with contiguous, unique seqs, each append landed once, and the chain verifies
    assert not errors, errors
    events = list(AuditEvent.objects.order_by("seq").values_list("seq", "object_ref"))
    assert [seq for seq, _ in events] == list(range(1, THREADS * PER_THREAD + 1))
    assert sorted(ref for _, ref in events) == sorted(
        f"{n}:{i}" for n in range(THREADS) for i in range(PER_THREAD)
    )
    # and every commit wrote its checkpoint, lines landing in whatever order: the newest is the highest seq
    assert audit_verify() == audit.ChainReport(ok=True, events_checked=THREADS * PER_THREAD,
                                               checkpoint_seq=THREADS * PER_THREAD,
                                               checkpoints_checked=THREADS * PER_THREAD)
    assert AuditHead.objects.get(pk=1).seq == THREADS * PER_THREAD


# --- the vocabulary ------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def test_audit_append_takes_the_enum_so_mypy_checks_every_call_site():
    # The annotations mypy holds each caller to (a str there is a type error, `make mypy` fails on it)
    assert typing.get_type_hints(audit_append)["action"] is AuditAction
    assert typing.get_type_hints(audit.AuditEntry)["action"] is AuditAction
    assert list(inspect.signature(audit.audit_append_many).parameters) == ["entries", "chained"]


def test_every_action_has_a_meaning_and_keeps_the_text_it_was_stored_as():
    assert len(AuditAction) >= 30
    assert all(a.meaning.strip() and a.meaning[0].isupper() for a in AuditAction)
    # Members are their stored text: equal to it, hashed like it, serialised as it (the chain's JSON)
    member = AuditAction.PHOTO_UPLOADED
    assert member == "photo.uploaded" and str(member) == "photo.uploaded" and f"{member}" == "photo.uploaded"
    assert hash(member) == hash("photo.uploaded") and "photo.uploaded" in {member}
    assert json.dumps([AuditAction.CONSENT_GRANTED]) == '["consent.granted"]'
    assert {a.value for a in AuditAction} == KNOWN_ACTIONS
    assert all(re.fullmatch(r"[a-z]+\.[a-z_]+", a.value) for a in AuditAction)


def test_every_action_is_written_by_the_code():
    # No member nothing writes: each is named as AuditAction.X somewhere in governance/ or webplatform/
    sources = "\n".join(path.read_text() for package in ("governance", "webplatform")
                        for path in (ROOT / package).rglob("*.py") if path.name != "audit_actions.py")
    assert sorted(a.name for a in AuditAction if f"AuditAction.{a.name}" not in sources) == []


def test_the_docs_list_exactly_the_enums_actions_and_meanings():
    doc = (ROOT / "docs" / "audit.md").read_text()
    section = doc.split("\n## Actions\n", 1)[1].split("\n## ", 1)[0]
    assert "governance.audit_actions.AuditAction" in section
    listed = dict(re.findall(r"^\| `([a-z_.]+)` \| (.+) \|$", section, re.M))
    assert listed == {a.value: a.meaning for a in AuditAction}


def test_retention_has_an_action_for_each_kind_it_deletes_and_each_reason():
    from webplatform.lifecycle.retention import HELD_MODELS, PURGE_ACTIONS
    from webplatform.photos.models import DueReason

    assert set(PURGE_ACTIONS) == {(m.KIND, r) for m in HELD_MODELS for r in DueReason}
    assert len(set(PURGE_ACTIONS.values())) == len(PURGE_ACTIONS)  # each cause its own action


def test_every_action_stored_after_the_platforms_flows_is_a_member(
        owner, trainer, upload, clock, monkeypatch, django_capture_on_commit_callbacks):
    from webplatform.jobs import services as job_services
    from webplatform.lifecycle.retention import retention_enforce
    from webplatform.photos.models import Photo

    from .images import face_jpeg

    monkeypatch.setattr(job_services, "_transform", lambda image, *, target_age: (image, "identity-test"))
    client = Client()
    client.force_login(owner.user)

    def step(action):  # each step commits, and what it queued on commit (the job, the purge) runs
        with django_capture_on_commit_callbacks(execute=True):
            return action()

    # Upload, read, the library, a transformation run and its result read, the photo deleted, an export
    aged, lapsing = (step(lambda: upload(face_jpeg())).json()["id"] for _ in range(2))
    assert step(lambda: owner.client.get(f"/api/v1/photos/{aged}/content")).status_code == 200
    assert step(lambda: client.get("/")).status_code == 200
    job = step(lambda: owner.client.post(f"/api/v1/photos/{aged}/transformations", {"target_age": 70},
                                         format="json"))
    assert job.status_code == 202, job.content
    assert step(lambda: owner.client.get(f"/api/v1/transformations/{job.json()['id']}/content")
                ).status_code == 200
    assert step(lambda: owner.client.delete(f"/api/v1/photos/{aged}")).status_code == 204
    assert step(lambda: b"".join(owner.client.get("/api/v1/me/export").streaming_content))
    # A training photo chosen, then both consents withdrawn
    photo = Photo.objects.get(pk=step(lambda: upload(face_jpeg(), actor=trainer)).json()["id"])
    Photo.objects.filter(pk=photo.pk).update(face_count=1)
    step(lambda: training_photo_choose_api(trainer, photo))
    for purpose in ("training", "processing"):
        withdraw = partial(trainer.client.put, f"/api/v1/me/consents/{purpose}", {"granted": False},
                           format="json")
        assert step(withdraw).status_code == 200
    # A deadline passing, the keys rotated, and an erasure
    clock.to(Photo.objects.get(pk=lapsing).expires_at)
    step(retention_enforce)
    step(lambda: call_command("rotate_kek", stdout=io.StringIO(), stderr=io.StringIO()))
    assert step(lambda: owner.client.delete("/api/v1/me")).status_code == 202

    stored = set(AuditEvent.objects.values_list("action", flat=True))
    assert len(stored) >= 20, sorted(stored)  # the flows wrote a broad sample of the vocabulary (20 of 39)
    assert sorted(stored - KNOWN_ACTIONS) == []


def test_an_unknown_action_is_refused_and_appends_nothing(db):
    audit_append(action="keys.rotated", actor_id=None)
    before = list(AuditEvent.objects.values_list("seq", flat=True))
    with pytest.raises(ValueError, match="photo.uplaoded"):
        audit_append(action="photo.uplaoded", actor_id=None)
    with pytest.raises(ValueError, match="made.up"):
        audit.audit_append_many([{"action": "keys.rotated", "actor_id": None},
                                 {"action": "made.up", "actor_id": None}])
    assert list(AuditEvent.objects.values_list("seq", flat=True)) == before
    assert AuditHead.objects.get().seq == before[-1]


def test_retention_events_are_rolled_up_per_day_in_the_appends_transaction(db):
    from django.apps import apps
    from django.db import transaction

    from governance.audit_rollups import rollup_counts
    from governance.models import AuditDaily

    deadline = clock.now() - timedelta(days=2)
    named = {"expires_at": deadline.isoformat()}
    entries = [{"action": "photo.expired", "actor_id": None, "details": named}] * 3
    with pytest.raises(RuntimeError), transaction.atomic():
        audit.audit_append_many(entries)
        raise RuntimeError("rolled back")
    assert not AuditDaily.objects.exists()  # the counts roll back with the chain
    audit.audit_append_many(entries)
    audit_append(action="photo.expired", actor_id=None)  # no deadline named: counted by day only
    today, actions = clock.now().date(), ["photo.expired"]
    assert rollup_counts("at", actions=actions) == {(today, "photo.expired"): 4}
    assert rollup_counts("deadline", actions=actions) == {(deadline.date(), "photo.expired"): 3}
    assert rollup_counts("gone", actions=actions) == {(today, "photo.expired"): 3}
    # The migration's backfill counts a chain written before the roll-ups existed the same way
    before = set(AuditDaily.objects.values_list("kind", "action", "day", "n"))
    AuditDaily.objects.all().delete()
    importlib.import_module("governance.migrations.0010_audit_verification_rollups_indexes").backfill_rollups(
        apps, None)
    assert set(AuditDaily.objects.values_list("kind", "action", "day", "n")) == before
