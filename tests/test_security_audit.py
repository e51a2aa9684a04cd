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
from governance.checkpoints import checkpoint_latest, checkpoint_path, checkpoint_write
from governance.models import AuditEvent, AuditHead

from .images import image_bytes
from .support import named

reanchor = importlib.import_module("governance.migrations.0004_audit_chain_keyed").reanchor


def verify(officer) -> dict:
    response = officer.client.get("/api/v1/audit/verify")
    assert response.status_code == 200
    return response.json()


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
    assert verify(officer) == {"ok": True, "events_checked": chain, "checkpoint_seq": chain}


def test_cutting_events_and_moving_the_head_back_is_found_by_the_checkpoint(chain, officer):
    # Given an attacker who deletes the last three events and rewrites the head to match the new end
    AuditEvent.objects.filter(seq__gt=chain - 3).delete()
    _set_head(chain - 3)
    # Then the chain is internally consistent, but the signed checkpoint outside remembers its length
    assert verify(officer) == {"ok": False, "events_checked": chain - 3, "first_bad_seq": chain - 2,
                               "reason": "truncated", "checkpoint_seq": chain}
    with pytest.raises(CommandError, match="truncated"):
        call_command("verify_audit", stdout=io.StringIO(), stderr=io.StringIO())


def test_rewriting_an_event_and_recomputing_every_later_hash_is_found(chain, officer):
    # Given an attacker who edits a middle event and recomputes all later links and the head, as SHA-256
    target = chain // 2
    _rewrite_from(target, key=None)
    # Then the first rewritten event already fails: its hash needs the keyring's key
    report = verify(officer)
    assert (report["ok"], report["first_bad_seq"], report["reason"]) == (False, target, "broken_link")


def test_a_rewrite_even_with_the_chain_key_is_found_by_the_checkpoint(chain, officer):
    # Given an attacker who somehow holds the chain key but cannot write the checkpoint store
    _rewrite_from(chain // 2, key=audit.chain_key())
    # Then every link verifies, but the event at the checkpoint's seq is not the one that was signed
    assert verify(officer) == {"ok": False, "events_checked": chain, "first_bad_seq": chain,
                               "reason": "checkpoint_mismatch", "checkpoint_seq": chain}


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
    assert verify(officer) == {"ok": True, "events_checked": chain, "checkpoint_seq": chain}


def test_the_migration_refuses_to_bless_a_legacy_chain_that_is_already_broken(chain):
    _make_legacy(chain)
    AuditEvent.objects.filter(seq=3).update(details={"tampered": True})
    with pytest.raises(RuntimeError, match="already broken at seq 3"):
        reanchor(apps, None)
