"""Erasure: DELETE /me shreds the key in the accepting transaction, the purge leaves only a tombstone."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlparse

import pytest
from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import override_settings
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from governance.audit import audit_verify, pseudonym
from governance.consent import PROCESSING, TRAINING
from governance.errors import KeyDestroyed
from governance.keys import object_decrypt
from governance.models import AuditEvent, ConsentRecord, DataKey, ErasureRequest
from webplatform.encrypted_store import object_get
from webplatform.jobs.models import JobStatus, TransformationJob, TransformationResult
from webplatform.lifecycle.erasure import erasure_purge
from webplatform.lifecycle.tasks import retention_enforce_task
from webplatform.photos.models import Photo

from .lifecycle_support import (
    faulty_storage,
    job_make,
    orphan_files,
    result_make,
    storage_path,
)
from .support import assert_error, storage_files

pytestmark = pytest.mark.usefixtures("empty_storage")

PASSWORD = "a-Long-passphrase-42"  # what conftest's make_actor registers everyone with
STATUS_KEYS = {"status", "requested_at", "deadline", "purge_started_at", "completed_at", "overdue"}


def _upload(actor, upload) -> Photo:
    response = upload(actor=actor)
    assert response.status_code == 201, response.content
    return Photo.objects.get(pk=response.json()["id"])


def _erase(actor, capture, *, execute: bool = True) -> dict:
    """DELETE /me as the actor; returns the 202 body (purge run on commit unless execute=False)."""
    with capture(execute=execute):
        response = actor.client.delete("/api/v1/me")
    assert response.status_code == 202, response.content
    return response.json()


def _status_path(body: dict) -> str:
    return urlparse(body["status_url"]).path


def test_delete_me_shreds_the_key_and_kills_access_before_the_purge_runs(
        owner, upload, django_capture_on_commit_callbacks):
    # given an owner with a photo, signed in both by token and by session
    photo = _upload(owner, upload)
    session = APIClient()
    assert session.login(username="owner", password=PASSWORD)
    assert session.get("/api/v1/photos").status_code == 200

    # when they erase their account, with the purge (an on_commit callback) held back
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = owner.client.delete("/api/v1/me")

        # then, inside the accepting transaction: 202 with a receipt, and the data key is already gone
        assert response.status_code == 202, response.content
        body = response.json()
        assert {"receipt", "status_url"} <= set(body)
        assert len(body["receipt"]) >= 40
        assert _status_path(body) == f"/api/v1/erasures/{body['receipt']}"
        assert not DataKey.objects.filter(user_id=owner.pk).exists()
        assert Photo.objects.filter(pk=photo.pk).exists()  # purge not run yet ...
        blob = storage_path(photo.storage_name).read_bytes()
        with pytest.raises(KeyDestroyed):  # ... but its ciphertext is unreadable already
            object_decrypt(owner_id=owner.pk, kind="photo", object_id=photo.pk, blob=blob)
        with pytest.raises(KeyDestroyed):
            object_get(owner_id=owner.pk, kind="photo", object_id=photo.pk, name=photo.storage_name)
        # token and session dead, and the credentials no longer sign in
        assert owner.client.get("/api/v1/photos").status_code == 401
        assert session.get("/api/v1/photos").status_code == 401
        assert not APIClient().login(username="owner", password=PASSWORD)
        assert_error(APIClient().post("/api/v1/auth/token", {"username": "owner", "password": PASSWORD},
                                      format="json"), 401)
        assert ErasureRequest.objects.get().status == "accepted"

    # when the on_commit callbacks run, then the purge finishes
    assert callbacks, "the purge must be queued on commit"
    for callback in callbacks:
        callback()
    assert ErasureRequest.objects.get().status == "done"
    assert not Photo.objects.filter(pk=photo.pk).exists()
    assert not storage_path(photo.storage_name).exists()
    assert not get_user_model().objects.filter(pk=owner.pk).exists()
    assert audit_verify().ok


def test_erasure_status_is_status_only_for_whoever_holds_the_receipt(
        owner, other, anon, upload, django_capture_on_commit_callbacks):
    _upload(owner, upload)
    body = _erase(owner, django_capture_on_commit_callbacks, execute=False)

    accepted = anon.client.get(_status_path(body))
    assert accepted.status_code == 200
    assert set(accepted.json()) == STATUS_KEYS
    assert accepted.json()["status"] == "accepted"

    erasure_purge(request_id=ErasureRequest.objects.get().pk)

    for client in (anon.client, other.client, APIClient()):
        done = client.get(_status_path(body))
        assert done.status_code == 200
        status = done.json()
        assert set(status) == STATUS_KEYS
        assert status["status"] == "done" and status["completed_at"] and status["overdue"] is False
        text = done.content.decode().lower()
        for secret in ("owner", "owner@example.com", pseudonym(owner.pk), body["receipt"].lower()):
            assert secret not in text
    # the tombstone keeps only a hash of the receipt
    assert body["receipt"] not in str(ErasureRequest.objects.values().get())


def test_an_unknown_receipt_is_a_json_404(db, anon):
    assert_error(anon.client.get("/api/v1/erasures/not-a-real-receipt-" + "x" * 30), 404, "not_found")


# --- completeness -----------------------------------------------------------------------------------------

VICTIM = "Zorbalina_Qx7"
VICTIM_EMAIL = f"{VICTIM}@example.com"  # make_actor's pattern


def _cell_bytes(value: object) -> bytes:
    if isinstance(value, memoryview):
        return value.tobytes()
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    return str(value).encode()


def _database_cells() -> list[tuple[str, str, bytes]]:
    """(table, column, value) for every column of every row of every table in the database."""
    cells = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608 - introspected names
            columns = [c[0] for c in cursor.description]
            for row in cursor.fetchall():
                cells += [(table, column, _cell_bytes(v)) for column, v in zip(columns, row, strict=True)
                          if v is not None]
    return cells


def _user_fk_rows(user_id: int) -> list[str]:
    """Every model (auto-created through tables included) with a row pointing at this user id."""
    User = get_user_model()
    found = []
    for model in apps.get_models(include_auto_created=True):
        for field in model._meta.concrete_fields:
            if field.is_relation and field.related_model is User:
                if model._default_manager.filter(**{field.attname: user_id}).exists():
                    found.append(f"{model._meta.label}.{field.name}")
    if User.objects.filter(pk=user_id).exists():
        found.append("the user row")
    return found


def _sessions_of(user_id: int) -> list[str]:
    return [s.session_key for s in Session.objects.all()
            if s.get_decoded().get("_auth_user_id") == str(user_id)]


def test_after_erasure_nothing_in_database_or_storage_leads_back_to_the_user(
        make_actor, upload, django_capture_on_commit_callbacks):
    # given a user with a distinctive name and email, photos, both consents (and a withdrawal), a queued
    # job, a done job with its result, a browser session; and a bystander whose data must survive
    victim = make_actor(VICTIM, consents=(PROCESSING, TRAINING))
    bystander = make_actor("bystander")
    photos = [_upload(victim, upload) for _ in range(3)]
    result = result_make(owner_id=victim.pk, photo_id=photos[0].pk)
    job_make(owner_id=victim.pk, photo_id=photos[1].pk)
    assert (
        victim.client.put("/api/v1/me/consents/training", {"granted": False}, format="json").status_code
        == 200
    )
    kept = _upload(bystander, upload)
    session = APIClient()
    assert session.login(username=VICTIM, password=PASSWORD)
    assert session.get("/api/v1/me/consents").status_code == 200
    uid, alias = victim.pk, pseudonym(victim.pk)
    ciphertexts = {o.storage_name: storage_path(o.storage_name).read_bytes() for o in (*photos, result)}
    wrapped_key = bytes(DataKey.objects.get(user_id=uid).wrapped)
    assert _sessions_of(uid) and Token.objects.filter(user_id=uid).exists()  # the scan below has work to do

    # when they erase their account and the purge runs
    body = _erase(victim, django_capture_on_commit_callbacks)

    # then the tombstone is done, and no row references the user id
    assert ErasureRequest.objects.get().status == "done"
    assert ErasureRequest.objects.get().user_id is None
    assert _user_fk_rows(uid) == []
    assert _sessions_of(uid) == []
    for model in (ConsentRecord, Token, DataKey, Photo, TransformationJob, TransformationResult):
        assert not model.objects.filter(**{"user_id" if model in (ConsentRecord, Token, DataKey)
                                           else "owner_id": uid}).exists(), model
    # no cell of any table holds their name, email, wrapped key or ciphertext; the pseudonym only in the
    # audit chain and the tombstone, which hold no identity to join it with
    pseudonym_tables = set()
    for table, column, value in _database_cells():
        lowered = value.lower()
        assert VICTIM.lower().encode() not in lowered, (table, column)
        assert VICTIM_EMAIL.lower().encode() not in lowered, (table, column)
        assert wrapped_key not in value, (table, column)
        for blob in ciphertexts.values():
            assert blob[100:164] not in value, (table, column)
        if alias.encode() in value:
            pseudonym_tables.add(table)
    assert pseudonym_tables == {AuditEvent._meta.db_table, ErasureRequest._meta.db_table}
    assert AuditEvent.objects.filter(subject=alias, action="erasure.completed").exists()
    # the storage folder holds none of their files nor their bytes; the bystander keeps theirs
    remaining = storage_files()
    assert {storage_path(name) for name in ciphertexts}.isdisjoint(remaining)
    for path in remaining:
        data = path.read_bytes()
        assert not any(blob[100:164] in data for blob in ciphertexts.values())
    assert remaining == [storage_path(kept.storage_name)]
    assert bystander.client.get(f"/api/v1/photos/{kept.pk}/content").status_code == 200
    assert body["receipt"]
    assert audit_verify().ok


REDIS_URL = "redis://127.0.0.1:6379/15"


@pytest.fixture
def redis_db15():
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.flushdb()
    except redis.exceptions.ConnectionError:
        pytest.skip("Redis at 127.0.0.1:6379 does not answer")
    yield client
    client.flushdb()


def _redis_dump(client) -> list[tuple[bytes, bytes]]:
    pairs = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        if kind == b"string":
            value = client.get(key) or b""
        elif kind == b"hash":
            value = b"|".join(k + b"=" + v for k, v in client.hgetall(key).items())
        elif kind in (b"list",):
            value = b"|".join(client.lrange(key, 0, -1))
        elif kind == b"set":
            value = b"|".join(client.smembers(key))
        else:
            value = client.dump(key) or b""
        pairs.append((key, value))
    return pairs


@pytest.mark.services
def test_after_erasure_redis_holds_nothing_of_the_user(make_actor, upload, redis_db15,
                                                       django_capture_on_commit_callbacks):
    cache = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
    with override_settings(CACHES=cache):
        # given a user whose API requests (and a login) put throttle state into the Redis cache
        victim = make_actor(VICTIM)
        _upload(victim, upload)
        assert victim.client.get("/api/v1/photos").status_code == 200
        assert victim.client.get("/api/v1/me/consents").status_code == 200
        assert APIClient().post("/api/v1/auth/token", {"username": VICTIM, "password": PASSWORD},
                                format="json").status_code == 200
        assert _redis_dump(redis_db15), "the requests should have left throttle keys in Redis db 15"
        alias = pseudonym(victim.pk)

        # when they erase their account and the purge runs; the status is polled too
        body = _erase(victim, django_capture_on_commit_callbacks)
        assert APIClient().get(_status_path(body)).json()["status"] == "done"

        # then no key or value in Redis names them
        for key, value in _redis_dump(redis_db15):
            for needle in (VICTIM, VICTIM_EMAIL, alias):
                assert needle.lower().encode() not in key.lower(), key
                assert needle.lower().encode() not in value.lower(), key


# --- faults and deadlines ---------------------------------------------------------------------------------

def test_a_storage_fault_during_the_purge_leaves_it_purging_then_a_retry_finishes(
        owner, upload, monkeypatch, django_capture_on_commit_callbacks):
    # given an owner with photos and a result, and storage that fails to delete the result's ciphertext
    photos = [_upload(owner, upload) for _ in range(3)]
    result = result_make(owner_id=owner.pk, photo_id=photos[0].pk)
    storage = faulty_storage(monkeypatch)
    storage.broken.add(result.storage_name)

    # when they erase their account and the purge runs
    body = _erase(owner, django_capture_on_commit_callbacks)

    # then the request is still purging, the attempt is recorded, and their data is unreadable anyway
    request = ErasureRequest.objects.get()
    assert request.status == "purging"
    assert request.attempts == 1 and "OSError" in request.last_error
    assert APIClient().get(_status_path(body)).json()["status"] == "purging"
    assert not DataKey.objects.filter(user_id=owner.pk).exists()
    with pytest.raises(KeyDestroyed):
        object_get(owner_id=owner.pk, kind="result", object_id=result.pk, name=result.storage_name)
    # nothing was stranded: the result's ciphertext still has its row for the retry to find
    assert orphan_files() == set()
    assert TransformationResult.objects.filter(pk=result.pk).exists()

    # when the fault clears and the periodic job runs, then the purge completes
    storage.broken.clear()
    retention_enforce_task()
    request.refresh_from_db()
    assert request.status == "done" and request.attempts == 2 and request.last_error == ""
    assert storage_files() == []
    assert _user_fk_rows(owner.pk) == []
    assert APIClient().get(_status_path(body)).json()["status"] == "done"


def test_a_stuck_purge_shows_overdue_after_the_deadline(owner, officer, upload, clock, monkeypatch,
                                                        django_capture_on_commit_callbacks):
    photo = _upload(owner, upload)
    faulty_storage(monkeypatch).broken.add(photo.storage_name)
    body = _erase(owner, django_capture_on_commit_callbacks)
    request = ErasureRequest.objects.get()
    assert (
        request.deadline == request.requested_at + settings.ERASURE_DEADLINE == clock.now + timedelta(days=30)
    )

    clock.advance(days=30)
    assert APIClient().get(_status_path(body)).json()["overdue"] is False

    clock.advance(seconds=1)
    status = APIClient().get(_status_path(body)).json()
    assert status["status"] == "purging" and status["overdue"] is True
    [erasure] = officer.client.get("/api/v1/compliance/report").json()["erasures"]
    assert erasure["overdue"] is True and erasure["status"] == "purging" and erasure["attempts"] == 1


def test_queued_jobs_fail_when_the_account_is_erased(owner, upload, django_capture_on_commit_callbacks):
    photo = _upload(owner, upload)
    job = job_make(owner_id=owner.pk, photo_id=photo.pk)

    _erase(owner, django_capture_on_commit_callbacks, execute=False)

    job.refresh_from_db()
    assert job.status == JobStatus.FAILED


def test_an_accepted_erasure_forgets_the_keyed_name_at_once(owner):
    from webplatform.accounts.models import Account

    assert Account.objects.get(user=owner.user).name_key
    response = owner.client.delete("/api/v1/me")
    assert response.status_code == 202
    assert Account.objects.get(user_id=owner.user.pk).name_key is None  # before the purge runs


def test_officers_see_erasures_under_opaque_ids_not_row_numbers(make_actor, officer):
    # Issue 19.13: the audit trail and the report said erasure:1, erasure:2 (how many people left, in order)
    for name in ("leaver1", "leaver2"):
        assert make_actor(name).client.delete("/api/v1/me").status_code == 202
    for request in ErasureRequest.objects.all():
        erasure_purge(request_id=request.pk)  # idempotent: done already if the purge ran on commit
    refs = set(AuditEvent.objects.filter(action__startswith="erasure.").values_list("object_ref", flat=True))
    ids = {str(r.public_id) for r in ErasureRequest.objects.all()}
    assert refs == {f"erasure:{i}" for i in ids} and len(ids) == 2
    report = officer.client.get("/api/v1/compliance/report").json()
    assert {e["id"] for e in report["erasures"]} == ids
    assert not any(ref.split(":")[1].isdigit() for ref in refs)
