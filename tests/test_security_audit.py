"""Issue 12, finding 1: a database writer can neither cut, rewrite nor wipe the audit chain unnoticed."""

from __future__ import annotations

import hashlib
import importlib
import io
import json

import pytest
from django.apps import apps
from django.core.management import CommandError, call_command
from django.db import transaction

from governance import audit
from governance.audit import GENESIS, _event_hash, audit_append, audit_verify, checkpoint_key
from governance.audit_results import audit_verify_full_and_record
from governance.checkpoints import checkpoint_latest, checkpoint_path, checkpoint_write
from governance.models import AuditEvent, AuditHead

from .images import image_bytes
from .support import named

reanchor = importlib.import_module("governance.migrations.0004_audit_chain_keyed").reanchor


def verify(officer, *, counts: bool = False, full: bool = False) -> dict:
    """The API's verification; without `counts`, less the checkpoint counts, where the check began and the
    stored full result (asserted where they matter); with `full`, after the scheduled full walk has run."""
    if full:
        audit_verify_full_and_record()
    response = officer.client.get("/api/v1/audit/verify")
    assert response.status_code == 200
    body = response.json()
    if not counts:
        for name in ("checkpoints_checked", "checkpoint_lag", "checked_from", "full_verification"):
            body.pop(name)
    return body


def checked(through: int) -> int:
    """Events the API's check reads up to `through`: it begins at the oldest signed checkpoint it holds (a
    short chain's checkpoints all lie in the file's tail)."""
    return through - _signed_seqs()[0] + 1


@pytest.fixture
def chain(owner, officer, django_capture_on_commit_callbacks) -> int:
    """Twelve-odd committed events (so their checkpoints are written); returns the chain's length."""
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(3):
            photo_id = owner.client.post("/api/v1/photos", {"file": named(image_bytes(), "a.jpg")},
                                         format="multipart").json()["id"]
            assert owner.client.get(f"/api/v1/photos/{photo_id}/content").status_code == 200
    length = AuditEvent.objects.count()
    assert length >= 10 and checkpoint_latest(key=checkpoint_key()).seq == length
    return length


def _set_head(seq: int) -> None:
    last = AuditEvent.objects.filter(seq=seq).first()
    AuditHead.objects.filter(pk=1).update(seq=seq, hash=last.hash if last else GENESIS)


def _plain_sha256(event: AuditEvent, prev_hash: str) -> str:
    """What the chain used to be: SHA-256 over the fields, which anyone can recompute."""
    body = json.dumps([event.seq, event.at.isoformat(), event.action, event.actor, event.subject,
                       event.object_ref, event.details, prev_hash], sort_keys=True, separators=(",", ":"),
                      default=str)
    return hashlib.sha256(body.encode()).hexdigest()


def _rewrite_from(target: int, *, key: bytes | None) -> None:
    """The attacker's rewrite: edit one event, recompute every later link and the head."""
    prev = AuditEvent.objects.get(seq=target).prev_hash
    for event in AuditEvent.objects.filter(seq__gte=target).order_by("seq"):
        if event.seq == target:
            event.details = {"forged": True}
        event.prev_hash = prev
        event.hash = (_event_hash(seq=event.seq, at=event.at, action=event.action, actor=event.actor,
                                  subject=event.subject, object_ref=event.object_ref, details=event.details,
                                  prev_hash=prev, key=key) if key else _plain_sha256(event, prev))
        AuditEvent.objects.filter(seq=event.seq).update(
            details=event.details, prev_hash=prev, hash=event.hash
        )
        prev = event.hash
    _set_head(AuditEvent.objects.order_by("-seq").first().seq)


def test_an_intact_chain_verifies_against_its_newest_checkpoint(chain, officer):
    assert verify(officer) == {"ok": True, "events_checked": checked(chain), "checkpoint_seq": chain}
    assert verify(officer, counts=True)["checked_from"] == _signed_seqs()[0]


def test_cutting_events_and_moving_the_head_back_is_found_by_the_checkpoint(chain, officer):
    # Given an attacker who deletes the last three events and rewrites the head to match the new end
    AuditEvent.objects.filter(seq__gt=chain - 3).delete()
    _set_head(chain - 3)
    # Then the chain is internally consistent, but the signed checkpoint outside remembers its length
    assert verify(officer) == {"ok": False, "events_checked": checked(chain - 3), "first_bad_seq": chain - 2,
                               "reason": "truncated", "checkpoint_seq": chain}
    with pytest.raises(CommandError, match="truncated"):
        call_command("verify_audit", stdout=io.StringIO(), stderr=io.StringIO())


def test_rewriting_an_event_and_recomputing_every_later_hash_is_found(chain, officer):
    # Given an attacker who edits a middle event and recomputes all later links and the head, as SHA-256
    target = chain // 2
    _rewrite_from(target, key=None)
    # Then the first rewritten event already fails: its hash needs the keyring's key (the full walk names it;
    # the check from the first checkpoint, at most the first link it reads)
    report = verify(officer, full=True)
    assert (report["ok"], report["first_bad_seq"], report["reason"]) == (False, target, "broken_link")


def _signed_seqs() -> list[int]:
    return sorted({json.loads(line)["seq"] for line in checkpoint_path().read_text().splitlines()})


def test_a_rewrite_even_with_the_chain_key_is_found_by_the_checkpoint(chain, officer):
    # Given an attacker who somehow holds the chain key but cannot write the checkpoint store
    target = chain // 2
    _rewrite_from(target, key=audit.chain_key())
    # Then every link verifies, but the first checkpoint at or after the edit names another event
    first_signed = min(s for s in _signed_seqs() if s >= target)
    assert verify(officer) == {"ok": False, "events_checked": checked(first_signed - 1),
                               "first_bad_seq": first_signed,
                               "reason": "checkpoint_mismatch", "checkpoint_seq": chain}


def test_an_edit_inside_the_prefix_is_reported_by_the_next_scheduled_full_walk(chain, officer, clock):
    # Given a clean scheduled full walk; the request's check then reads from the oldest checkpoint it holds
    audit_verify_full_and_record()
    clean = verify(officer, counts=True)
    assert clean["ok"] and clean["full_verification"]["ok"]
    assert clean["full_verification"]["verified_through"] == chain
    # When a database writer edits an event before that checkpoint, without the key to relink it
    target = clean["checked_from"] - 1
    assert target >= 1
    AuditEvent.objects.filter(seq=target).update(details={"tampered": True})
    # Then the request's own check, which never reads the prefix, says so truthfully: what it checked, from
    # where, and the full walk it relies on for the rest, with that walk's time
    body = verify(officer, counts=True)
    assert (body["ok"], body["events_checked"], body["checked_from"]) == (True, checked(chain), target + 1)
    assert body["full_verification"] == clean["full_verification"]
    # And the next scheduled full walk finds the edit, which the API then reports with the walk's time
    clock.advance(seconds=60)
    body = verify(officer, counts=True, full=True)
    assert (body["ok"], body["first_bad_seq"], body["reason"]) == (False, target, "broken_link")
    assert body["full_verification"]["first_bad_seq"] == target and not body["full_verification"]["ok"]
    assert body["full_verification"]["at"] > clean["full_verification"]["at"]
    assert body["full_verification"]["verified_through"] == target - 1


def test_wiping_every_event_and_the_head_is_found(chain, officer):
    AuditEvent.objects.all().delete()
    AuditHead.objects.all().delete()
    assert verify(officer) == {"ok": False, "events_checked": 0, "first_bad_seq": 1, "reason": "wiped",
                               "checkpoint_seq": chain}
    with pytest.raises(CommandError, match="wiped"):
        call_command("verify_audit", stdout=io.StringIO(), stderr=io.StringIO())


def test_wiping_the_events_but_keeping_the_head_is_found(chain, officer):
    AuditEvent.objects.all().delete()
    report = verify(officer)
    assert (report["ok"], report["reason"], report["first_bad_seq"]) == (False, "head_mismatch", 1)


def test_a_missing_head_is_a_failure_never_intact(chain, officer):
    AuditHead.objects.all().delete()
    report = verify(officer)
    assert (report["ok"], report["reason"], report["events_checked"]) == (False, "head_missing", chain)


def test_a_checkpoint_signed_with_another_key_is_refused(chain, officer):
    checkpoint_write(key=b"not the keyring's key", seq=chain + 100, head_hash="f" * 64)
    report = verify(officer)
    assert (report["ok"], report["reason"]) == (False, "checkpoint_forged")


def test_a_torn_last_checkpoint_line_is_skipped(chain, officer):
    # A crash mid-write leaves half a line: the checkpoints before it still count.
    with checkpoint_path().open("a") as fh:
        fh.write('{"seq": 99')
    assert verify(officer)["ok"] is True


def test_strict_mode_fails_events_that_no_checkpoint_anchors(owner, officer, settings):
    # Given events whose checkpoints were never written (this test's transaction never commits)
    settings.AUDIT_REQUIRE_CHECKPOINT = True
    assert AuditEvent.objects.exists() and not checkpoint_path().exists()
    # Then strict verification (the production default) refuses to call the chain intact
    report = verify(officer)
    assert (report["ok"], report["reason"], report["checkpoint_seq"]) == (False, "no_checkpoint", None)


def test_an_empty_chain_with_no_checkpoint_is_a_fresh_install(db, settings):
    settings.AUDIT_REQUIRE_CHECKPOINT = True
    assert audit_verify() == audit.ChainReport(ok=True, events_checked=0)


def test_a_rolled_back_append_writes_no_checkpoint(db, django_capture_on_commit_callbacks):
    # Given an append whose transaction rolls back
    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(RuntimeError), transaction.atomic():
            audit_append(action="keys.rotated", actor_id=None)
            raise RuntimeError("the request failed after auditing")
        # And one that commits
        audit_append(action="keys.rotated", actor_id=None)
    # Then only the committed state is checkpointed: a checkpoint always names a state the database reached
    lines = checkpoint_path().read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["seq"] == 1
    assert audit_verify().ok


def test_checkpoints_are_private_and_hold_no_event_content(chain):
    path = checkpoint_path()
    assert path.stat().st_mode & 0o077 == 0
    for line in path.read_text().splitlines():
        assert set(json.loads(line)) == {"seq", "hash", "at", "mac"}


def _make_legacy(length: int) -> None:
    """Rewrite the chain as the previous release wrote it, with no checkpoint."""
    prev = GENESIS
    for event in AuditEvent.objects.order_by("seq"):
        event_hash = _plain_sha256(event, prev)
        AuditEvent.objects.filter(seq=event.seq).update(prev_hash=prev, hash=event_hash)
        prev = event_hash
    _set_head(length)
    checkpoint_path().unlink()


def test_the_migration_reanchors_a_legacy_sha256_chain(chain, officer):
    # Given a chain written by the previous release (plain SHA-256 links) and no checkpoint yet
    _make_legacy(chain)
    assert verify(officer)["reason"] == "broken_link"
    # When the data migration runs
    reanchor(apps, None)
    # Then the chain is keyed, checkpointed and verifies
    assert verify(officer) == {"ok": True, "events_checked": checked(chain), "checkpoint_seq": chain}
    assert audit_verify() == audit.ChainReport(ok=True, events_checked=chain, checkpoint_seq=chain,
                                               checkpoints_checked=1)


def test_the_migration_refuses_to_bless_a_legacy_chain_that_is_already_broken(chain):
    _make_legacy(chain)
    AuditEvent.objects.filter(seq=3).update(details={"tampered": True})
    with pytest.raises(RuntimeError, match="already broken at seq 3"):
        reanchor(apps, None)


# --- issue 19: every checkpoint counts, rows past the head, checkpoint lag, CSV cells ------------------


def _page(officer, path: str):
    from django.test import Client

    client = Client()
    client.force_login(officer.user)
    return client.get(path)


def _use(owner, times: int = 1) -> None:
    """Normal use that appends and commits (so its checkpoints are written): a photo read per time."""
    photo_id = AuditEvent.objects.filter(action="photo.uploaded").first().object_ref.split(":")[1]
    for _ in range(times):
        assert owner.client.get(f"/api/v1/photos/{photo_id}/content").status_code == 200


def test_a_rollback_followed_by_normal_use_never_verifies(chain, owner, officer,
                                                          django_capture_on_commit_callbacks):
    # Given a database writer who deletes the newest 3 events and moves the head back (a restored backup
    # looks the same)
    AuditEvent.objects.filter(seq__gt=chain - 3).delete()
    _set_head(chain - 3)
    # When normal use goes on past the old length, each commit writing its checkpoint
    with django_capture_on_commit_callbacks(execute=True):
        _use(owner, times=4)
    assert AuditEvent.objects.order_by("-seq").first().seq > chain
    # Then the newest checkpoint matches the chain, but the file holds two hashes for the re-used seqs
    report = verify(officer)
    assert (report["ok"], report["reason"], report["first_bad_seq"]) == (
        False, "checkpoint_conflict", chain - 2)
    # And the chain's end, what the dashboard checks on each load, says so too
    recent = audit.audit_verify_recent()
    assert (recent.ok, recent.reason, recent.first_bad_seq) == (False, "checkpoint_conflict", chain - 2)
    # And verify_audit fails (a CommandError: `manage.py verify_audit` exits 1)
    with pytest.raises(CommandError, match="checkpoint_conflict"):
        call_command("verify_audit", stdout=io.StringIO(), stderr=io.StringIO())


def test_every_checkpoint_is_held_against_the_chain_not_only_the_newest(chain, officer):
    # Given an intact chain, every signed checkpoint is compared with the event at its seq
    body = verify(officer, counts=True)
    assert body["ok"] and body["checkpoints_checked"] == len(_signed_seqs()) > 1
    assert body["checkpoint_lag"] == 0
    # When an older checkpoint's event is re-linked with the key (the newest one left as it was)
    older = _signed_seqs()[-2]
    _rewrite_from(older, key=audit.chain_key())
    AuditHead.objects.filter(pk=1).update(hash=AuditEvent.objects.get(seq=chain).hash)
    # Then that older checkpoint fails it
    report = verify(officer)
    assert (report["ok"], report["first_bad_seq"]) == (False, older)


def _plant(seq: int) -> None:
    AuditEvent.objects.create(seq=seq, at=AuditEvent.objects.get(seq=1).at, action="photo.deleted",
                              actor="planted", subject="planted", object_ref="=HYPERLINK(\"http://x\")",
                              details={}, prev_hash="0" * 64, hash="1" * 64)


def test_a_row_far_past_the_head_is_never_listed_and_fails_verification(chain, owner, officer):
    planted = chain + 10**6
    _plant(planted)
    _use(owner)  # appends go on at the head, leaving the planted row past it
    length = chain + 1
    listed = officer.client.get("/api/v1/audit/events", {"limit": 1000}).json()
    assert planted not in {e["seq"] for e in listed["results"]} and listed["count"] == length
    csv_text = b"".join(officer.client.get("/api/v1/audit/events", {"format": "csv"}).streaming_content)
    assert b"planted" not in csv_text
    page = _page(officer, "/officer/audit")
    assert page.status_code == 200 and b"planted" not in page.content
    assert verify(officer) == {"ok": False, "events_checked": checked(length), "first_bad_seq": planted,
                               "reason": "past_head", "checkpoint_seq": chain}
    assert audit.audit_verify_recent().reason == "past_head"


def test_a_row_planted_at_head_plus_one_breaks_no_request(chain, owner, officer):
    # Given a row a database writer planted where the next append would go
    _plant(chain + 1)
    # Then audited requests still answer (the append goes after it), and verification names the row
    _use(owner)
    assert AuditEvent.objects.filter(seq=chain + 2, action="photo.content_read").exists()
    report = verify(officer)
    assert (report["ok"], report["reason"], report["first_bad_seq"]) == (False, "broken_link", chain + 1)


def test_checkpoints_that_stop_being_written_show_as_lag(
        chain, owner, officer, clock, monkeypatch, settings, django_capture_on_commit_callbacks):
    from governance import checkpoints

    # Given a checkpoint store that fails (a full disk cannot be made here, so its error is raised)
    def disk_full(line: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoints, "_file_append", disk_full)
    with django_capture_on_commit_callbacks(execute=True):
        _use(owner, times=2)
    # Then fresh unanchored events are commits in flight: reported, not yet a finding
    assert verify(officer, counts=True)["checkpoint_lag"] == 2 and verify(officer)["ok"]
    # But once they wait past the bound, verification, /readyz and the metric say so
    clock.advance(seconds=settings.AUDIT_CHECKPOINT_MAX_LAG_SECONDS + 1)
    report = verify(officer)
    assert (report["ok"], report["reason"], report["first_bad_seq"]) == (False, "checkpoint_lag", chain + 1)
    ready = officer.client.get("/readyz").json()
    assert ready["checks"]["audit_checkpoints"].startswith("failed") and not ready["ok"]
    from webplatform import metrics

    assert metrics.AUDIT_CHECKPOINT_LAG_EVENTS.collect()[0].samples[0].value == 2
    waited = metrics.AUDIT_CHECKPOINT_LAG_SECONDS.collect()[0].samples[0].value
    assert waited > settings.AUDIT_CHECKPOINT_MAX_LAG_SECONDS
    dashboard = _page(officer, "/officer/")
    assert b"Checkpoints failing" in dashboard.content and b"checkpoint lag 2 events" in dashboard.content


def test_csv_cells_a_spreadsheet_would_run_are_neutralised(owner, officer):
    from webplatform.api.audit import csv_cell

    for start in ("=", "+", "-", "@", "\t", "\r"):
        assert csv_cell(f"{start}HYPERLINK(1)") == f"'{start}HYPERLINK(1)"
    assert csv_cell("photo:1") == "photo:1" and csv_cell(12) == "12"
    audit_append(action="keys.rotated", actor_id=None, object_ref='=HYPERLINK("http://x","y")')
    csv_text = b"".join(officer.client.get("/api/v1/audit/events", {"format": "csv"}).streaming_content)
    assert b"'=HYPERLINK" in csv_text and b",=HYPERLINK" not in csv_text


def test_the_scheduled_full_verification_is_stored_signed_and_shown(chain, officer):
    from django.conf import settings as conf

    from governance.audit_results import audit_full_latest
    from governance.models import AuditVerification
    from webplatform.lifecycle.scheduler import schedule
    from webplatform.taskqueue import AUDIT_VERIFY, publish

    # The job is on both schedules (Celery beat and the embedded thread)
    assert AUDIT_VERIFY in schedule()
    assert any(e["task"] == AUDIT_VERIFY for e in conf.CELERY_BEAT_SCHEDULE.values())
    # When it runs, its result is stored and the dashboard shows it
    publish(AUDIT_VERIFY)
    full = audit_full_latest()
    assert full.ok and full.verified_through == chain and full.events_checked == chain
    assert b"through sequence " + str(chain).encode() in _page(officer, "/officer/").content
    # A database writer cannot plant an "intact" result: an unsigned row is not shown
    AuditVerification.objects.update(ok=False)
    assert audit_full_latest() is None


def test_the_newest_checkpoint_is_read_from_the_end_of_a_long_file(db):
    key = checkpoint_key()
    for seq in range(1, 3001):
        checkpoint_write(key=key, seq=seq, head_hash=f"{seq:064x}")
    assert checkpoint_path().stat().st_size > 4 * 64 * 1024
    # A forged line far from the end is never read by the newest-checkpoint path (only the full walk)
    lines = checkpoint_path().read_text().splitlines()
    lines[0] = lines[0].replace('"mac":"', '"mac":"0')
    checkpoint_path().write_text("\n".join(lines) + "\n")
    assert checkpoint_latest(key=key).seq == 3000
