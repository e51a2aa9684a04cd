"""Envelope encryption: the AES-GCM frame, bindings, KEK rotation, crypto-shredding and the keyring file."""

from __future__ import annotations

import io
import stat
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command

from governance import crypto
from governance.errors import ConfigurationError, IntegrityFailure, KeyDestroyed
from governance.keyring import FileKeyring
from governance.keys import data_key_destroy, get_keyring, object_decrypt, object_encrypt
from governance.models import DataKey
from webplatform.photos.models import Photo

from .images import image_bytes
from .support import assert_error, named

KEY = bytes(range(32))
AAD = crypto.associated_data(kind="photo", object_id="a", owner_id=1)
PLAINTEXT = b"not really an image but bytes all the same" * 10


def object_path(photo: Photo) -> Path:
    return Path(settings.STORAGES["objects"]["OPTIONS"]["location"]) / photo.storage_name


# --- the frame --------------------------------------------------------------------------------------


def test_roundtrip_and_frame_layout():
    blob = crypto.encrypt(KEY, PLAINTEXT, aad=AAD)
    assert bytes(blob[:4]) == crypto.MAGIC
    assert len(blob) == len(PLAINTEXT) + crypto.HEADER_BYTES + crypto.TAG_BYTES
    assert PLAINTEXT[:32] not in blob
    assert bytes(crypto.decrypt(KEY, blob, aad=AAD)) == PLAINTEXT


def test_each_encryption_uses_a_fresh_nonce():
    first, second = crypto.encrypt(KEY, PLAINTEXT, aad=AAD), crypto.encrypt(KEY, PLAINTEXT, aad=AAD)
    assert first[4:16] != second[4:16]
    assert first != second


@pytest.mark.parametrize("position", [0, 5, crypto.HEADER_BYTES, crypto.HEADER_BYTES + 100, -1])
def test_a_flipped_byte_anywhere_is_an_integrity_failure(position):
    blob = crypto.encrypt(KEY, PLAINTEXT, aad=AAD)
    blob[position] ^= 0x01
    with pytest.raises(IntegrityFailure):
        crypto.decrypt(KEY, blob, aad=AAD)


@pytest.mark.parametrize("keep", [0, 3, crypto.HEADER_BYTES, crypto.HEADER_BYTES + crypto.TAG_BYTES - 1, -1])
def test_a_truncated_blob_is_an_integrity_failure(keep):
    blob = crypto.encrypt(KEY, PLAINTEXT, aad=AAD)
    with pytest.raises(IntegrityFailure):
        crypto.decrypt(KEY, blob[:keep], aad=AAD)


def test_wrong_magic_is_an_integrity_failure():
    blob = crypto.encrypt(KEY, PLAINTEXT, aad=AAD)
    blob[:4] = b"TVE2"
    with pytest.raises(IntegrityFailure, match="format"):
        crypto.decrypt(KEY, blob, aad=AAD)


@pytest.mark.parametrize("field", ["kind", "object_id", "owner_id"])
def test_the_associated_data_binds_kind_object_and_owner(field):
    binding = {"kind": "photo", "object_id": "a", "owner_id": 1}
    blob = crypto.encrypt(KEY, PLAINTEXT, aad=crypto.associated_data(**binding))
    moved = {**binding, field: {"kind": "result", "object_id": "b", "owner_id": 2}[field]}
    with pytest.raises(IntegrityFailure):
        crypto.decrypt(KEY, blob, aad=crypto.associated_data(**moved))


def test_wrong_key_is_an_integrity_failure():
    blob = crypto.encrypt(KEY, PLAINTEXT, aad=AAD)
    with pytest.raises(IntegrityFailure):
        crypto.decrypt(bytes(32), blob, aad=AAD)


def test_per_user_data_keys_differ(owner, other):
    blob = object_encrypt(owner_id=owner.pk, kind="photo", object_id="x", plaintext=PLAINTEXT)
    assert DataKey.objects.get(user_id=owner.pk).wrapped != DataKey.objects.get(user_id=other.pk).wrapped
    with pytest.raises(IntegrityFailure):  # same binding, other user's key
        crypto.decrypt(get_keyring().unwrap(*_wrapped(other.pk)), blob,
                       aad=crypto.associated_data(kind="photo", object_id="x", owner_id=owner.pk))


def _wrapped(user_id: int) -> tuple[int, bytes]:
    row = DataKey.objects.get(user_id=user_id)
    return row.kek_version, bytes(row.wrapped)


# --- through the API ----------------------------------------------------------------------------------


def _upload(actor, seed_color) -> Photo:
    response = actor.client.post(
        "/api/v1/photos", {"file": _file(image_bytes(color=seed_color))}, format="multipart")
    assert response.status_code == 201, response.content
    return Photo.objects.get(pk=response.json()["id"])


def _file(data: bytes):
    return named(data, "selfie.jpg")


def _content(actor, photo: Photo):
    return actor.client.get(f"/api/v1/photos/{photo.id}/content")


def test_ciphertexts_swapped_between_two_photos_fail_and_never_serve_the_other_image(owner):
    # Given two photos of the same owner, readable, with different content
    first, second = _upload(owner, (250, 10, 10)), _upload(owner, (10, 10, 250))
    first_image, second_image = _content(owner, first).content, _content(owner, second).content
    assert first_image != second_image

    # When their stored ciphertext files are swapped on disk
    a, b = object_path(first), object_path(second)
    a_bytes, b_bytes = a.read_bytes(), b.read_bytes()
    a.write_bytes(b_bytes)
    b.write_bytes(a_bytes)

    # Then each read is a JSON integrity error, never the other photo's image
    for photo, theirs in ((first, second_image), (second, first_image)):
        response = _content(owner, photo)
        assert_error(response, 500, "integrity_failure")
        assert theirs not in response.content and b"\xff\xd8\xff" not in response.content


def test_a_row_pointing_at_another_photos_object_fails(owner):
    # The database pointer moved instead of the bytes: the binding to the object id still catches it.
    first, second = _upload(owner, (250, 10, 10)), _upload(owner, (10, 10, 250))
    Photo.objects.filter(pk=first.pk).update(storage_name="swapping")  # storage_name is unique
    Photo.objects.filter(pk=second.pk).update(storage_name=first.storage_name)
    Photo.objects.filter(pk=first.pk).update(storage_name=second.storage_name)
    assert_error(_content(owner, first), 500, "integrity_failure")
    assert_error(_content(owner, second), 500, "integrity_failure")


def test_a_ciphertext_moved_to_another_user_fails(owner, other):
    # Given a photo of `owner` and one of `other`
    mine, theirs = _upload(owner, (250, 10, 10)), _upload(other, (10, 250, 10))
    mine_image = _content(owner, mine).content
    # When owner's ciphertext is copied over other's object
    object_path(theirs).write_bytes(object_path(mine).read_bytes())
    # Then other's read fails (other key, other binding) and does not leak owner's image
    response = _content(other, theirs)
    assert_error(response, 500, "integrity_failure")
    assert mine_image not in response.content


def test_a_row_reassigned_to_another_user_fails(owner, other):
    mine = _upload(owner, (250, 10, 10))
    Photo.objects.filter(pk=mine.pk).update(owner_id=other.pk)
    assert_error(_content(other, mine), 500, "integrity_failure")
    assert_error(_content(owner, mine), 404, "not_found")


def test_integrity_failure_is_logged_for_operators(owner, caplog):
    photo = _upload(owner, (250, 10, 10))
    blob = bytearray(object_path(photo).read_bytes())
    blob[-1] ^= 0xFF
    object_path(photo).write_bytes(bytes(blob))
    response = _content(owner, photo)
    assert_error(response, 500, "integrity_failure")
    assert any("integrity_failure" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")


def test_rotate_kek_twice_keeps_every_photo_readable_and_objects_untouched(owner, other):
    # Given photos of two users, their served images and the exact stored ciphertext
    photos = [(owner, _upload(owner, (250, 10, 10))), (owner, _upload(owner, (10, 250, 10))),
              (other, _upload(other, (9, 9, 9)))]
    images = {p.pk: _content(actor, p).content for actor, p in photos}
    stored = {p.pk: object_path(p).read_bytes() for _, p in photos}
    versions = dict(DataKey.objects.values_list("user_id", "kek_version"))
    wrapped = {k: bytes(v) for k, v in DataKey.objects.values_list("user_id", "wrapped")}
    start = get_keyring().current_version()

    for round_ in (1, 2):
        # When the KEK is rotated
        call_command("rotate_kek", stdout=io.StringIO(), stderr=io.StringIO())

        # Then every data key is wrapped under the new current version, with new wrapping bytes
        assert get_keyring().current_version() == start + round_
        for user_id, version, blob in DataKey.objects.values_list("user_id", "kek_version", "wrapped"):
            assert version == start + round_ != versions[user_id]
            assert bytes(blob) != wrapped[user_id]
        # And every photo still reads back identically, and no stored object changed by a single byte
        for actor, photo in photos:
            response = _content(actor, photo)
            assert response.status_code == 200
            assert response.content == images[photo.pk]
            assert object_path(photo).read_bytes() == stored[photo.pk]


def test_rotate_kek_is_audited(owner):
    from governance.models import AuditEvent

    call_command("rotate_kek", stdout=io.StringIO(), stderr=io.StringIO())
    event = AuditEvent.objects.order_by("-seq").first()
    assert event.action == "keys.rotated"
    assert event.details["rewrapped"] == DataKey.objects.count()


def test_rotate_kek_stamps_rewrapped_keys_by_the_platform_clock(owner, clock):
    moved = clock.advance(days=400)
    call_command("rotate_kek", stdout=io.StringIO(), stderr=io.StringIO())
    assert DataKey.objects.get(user_id=owner.pk).rewrapped_at == moved


def test_destroying_a_data_key_makes_that_users_photos_gone(owner, other):
    # Given photos of two users
    mine, theirs = _upload(owner, (250, 10, 10)), _upload(other, (10, 250, 10))
    # When owner's data key is destroyed (crypto-shredding)
    assert data_key_destroy(user_id=owner.pk) is True
    assert data_key_destroy(user_id=owner.pk) is False  # idempotent
    # Then owner's photo answers 410 key_destroyed, as JSON, and the other user is unaffected
    response = _content(owner, mine)
    assert_error(response, 410, "key_destroyed")
    assert b"\xff\xd8" not in response.content
    assert _content(other, theirs).status_code == 200
    with pytest.raises(KeyDestroyed):
        object_decrypt(
            owner_id=owner.pk, kind="photo", object_id=mine.id, blob=object_path(mine).read_bytes()
        )


def test_data_key_is_stored_only_wrapped(owner):
    row = DataKey.objects.get(user_id=owner.pk)
    dek = get_keyring().unwrap(row.kek_version, bytes(row.wrapped))
    assert len(dek) == 32
    assert dek not in bytes(row.wrapped)
    assert len(bytes(row.wrapped)) == 40  # RFC 3394: 32-byte key + 8-byte integrity block


# --- the keyring file -------------------------------------------------------------------------------------


def test_keyring_file_is_created_0600(tmp_path):
    path = tmp_path / "sub" / "keyring.json"
    keyring = FileKeyring(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    keyring.add_version()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # the rewrite keeps the mode
    assert keyring.current_version() == 2
    assert not list(path.parent.glob("*.tmp"))


def test_configured_keyring_is_0600():
    path = Path(settings.KEYRING_URL.removeprefix("file://"))
    get_keyring()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_keyring_readable_by_others_is_refused(tmp_path, mode):
    path = tmp_path / "keyring.json"
    FileKeyring(path)
    path.chmod(mode)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        FileKeyring(path)


def test_keyring_reloads_every_version(tmp_path):
    # Given a keyring with two versions and a key wrapped under each
    path = tmp_path / "keyring.json"
    first = FileKeyring(path)
    old = first.wrap(b"k" * 32)
    first.add_version()
    new = first.wrap(b"n" * 32)
    # When it is reopened from disk
    again = FileKeyring(path)
    # Then both still unwrap, and the pseudonym key is stable
    assert again.unwrap(*old) == b"k" * 32 and again.unwrap(*new) == b"n" * 32
    assert again.pseudonym_key() == first.pseudonym_key()
    with pytest.raises(IntegrityFailure):
        again.unwrap(99, new[1])
    with pytest.raises(IntegrityFailure):
        again.unwrap(old[0], new[1])  # wrapped under v2, unwrapped with v1


def test_a_failed_content_read_is_audited(owner, upload):
    from governance.keys import data_key_destroy
    from governance.models import AuditEvent

    photo_id = upload().json()["id"]
    data_key_destroy(user_id=owner.pk)
    response = owner.client.get(f"/api/v1/photos/{photo_id}/content")
    assert response.status_code == 410 and response.json()["error"]["code"] == "key_destroyed"
    event = AuditEvent.objects.get(action="photo.content_read_failed", object_ref=f"photo:{photo_id}")
    assert event.details == {"error": "key_destroyed"}
    assert not AuditEvent.objects.filter(action="photo.content_read", object_ref=f"photo:{photo_id}").exists()
