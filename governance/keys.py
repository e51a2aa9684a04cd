"""Envelope encryption: per-user data keys, object encrypt/decrypt, KEK rotation, crypto-shredding."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import connection, transaction

from . import clock, crypto
from .errors import KeyDestroyed
from .keyring import Keyring, keyring_from_url
from .models import DataKey


def get_keyring() -> Keyring:
    """The configured keyring (KEYRING_URL)."""
    return keyring_from_url(settings.KEYRING_URL)


def data_key_create(*, user: Any) -> DataKey:
    """Generate a fresh 256-bit data key for a user and store it wrapped by the current KEK."""
    version, wrapped = get_keyring().wrap(os.urandom(32))
    return DataKey.objects.create(user=user, kek_version=version, wrapped=wrapped, created_at=clock.now())


def data_key_destroy(*, user_id: int) -> bool:
    """Crypto-shred: delete the wrapped data key, so every ciphertext of the user is unreadable at once."""
    deleted, _ = DataKey.objects.filter(user_id=user_id).delete()
    return deleted > 0


_DATA_KEY_SQL = f"SELECT kek_version, wrapped FROM {DataKey._meta.db_table} WHERE user_id = %s"


def _data_key(user_id: int) -> bytes:
    # One plain SELECT rather than the ORM: this runs on every object read and write, and the ORM's
    # ~150 us per query was a third of the cost of encrypting a 4 MB photo.
    with connection.cursor() as cursor:
        cursor.execute(_DATA_KEY_SQL, [user_id])
        row = cursor.fetchone()
    if row is None:
        raise KeyDestroyed()
    return get_keyring().unwrap(row[0], row[1])


def object_encrypt(
    *, owner_id: int, kind: str, object_id: object, plaintext: bytes | memoryview
) -> bytearray:
    """Encrypt an object under its owner's data key, bound to (kind, object id, owner)."""
    aad = crypto.associated_data(kind=kind, object_id=object_id, owner_id=owner_id)
    return crypto.encrypt(_data_key(owner_id), plaintext, aad=aad)


def object_decrypt(*, owner_id: int, kind: str, object_id: object, blob: bytes | bytearray) -> bytearray:
    """Decrypt an object; raises KeyDestroyed after erasure and IntegrityFailure on any tampering."""
    aad = crypto.associated_data(kind=kind, object_id=object_id, owner_id=owner_id)
    return crypto.decrypt(_data_key(owner_id), blob, aad=aad)


def kek_rotate(*, batch_size: int = 500, progress: Callable[[int], None] | None = None) -> tuple[int, int]:
    """Add a KEK version and re-wrap every data key under it; stored objects are untouched.

    Returns (new version, keys re-wrapped). Each batch commits on its own, so a crash part-way leaves
    every key readable (old keys stay in the keyring) and a re-run finishes the job.
    """
    keyring = get_keyring()
    new_version = keyring.add_version()
    done = 0
    while True:
        with transaction.atomic():
            # Fixed order under the lock: two rotations cannot deadlock on each other's rows.
            batch = list(
                DataKey.objects.select_for_update()
                .exclude(kek_version=new_version)
                .order_by("pk")[:batch_size]
            )
            for row in batch:
                dek = keyring.unwrap(row.kek_version, bytes(row.wrapped))
                row.kek_version, row.wrapped = keyring.wrap(dek)
                row.rewrapped_at = clock.now()
                row.save(update_fields=["kek_version", "wrapped", "rewrapped_at"])
        done += len(batch)
        if progress:
            progress(len(batch))
        if len(batch) < batch_size:
            return new_version, done
