"""Signed audit checkpoints (sequence, head hash, time) kept outside the database: an append-only file, or
one object per checkpoint in an S3 bucket (object-locked when AUDIT_CHECKPOINT_S3_RETAIN_DAYS is set).

A database writer can delete or rewrite rows and the head, but cannot touch this file nor sign a line for
it: verification compares the chain with the newest checkpoint, so a cut, rewritten or wiped chain shows.
One line is written after every committed append (see audit.py for why on every commit), never before the
commit: a line always names a state the database really reached.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings

from . import clock

log = logging.getLogger(__name__)
FILENAME = "checkpoints.jsonl"


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    hash: str
    at: str


class CheckpointForged(Exception):
    """A well-formed checkpoint line whose signature does not verify (forged, or signed by another key)."""


def _signature(key: bytes, seq: int, head_hash: str, at: str) -> str:
    return hmac.new(
        key, f"timeveil-audit-checkpoint\n{seq}\n{head_hash}\n{at}".encode(), hashlib.sha256
    ).hexdigest()


def checkpoint_path() -> Path:
    """The checkpoint file (AUDIT_CHECKPOINT_DIR/checkpoints.jsonl)."""
    return Path(settings.AUDIT_CHECKPOINT_DIR) / FILENAME


def checkpoint_write(*, key: bytes, seq: int, head_hash: str, at: datetime | None = None) -> Checkpoint:
    """Store one signed checkpoint: a line appended to the file, or an object in the S3 bucket."""
    stamp = (at or clock.now()).isoformat()
    line = (
        json.dumps(
            {"seq": seq, "hash": head_hash, "at": stamp, "mac": _signature(key, seq, head_hash, stamp)},
            separators=(",", ":"),
        )
        + "\n"
    )
    if settings.AUDIT_CHECKPOINT_S3_BUCKET:
        _s3_put(seq, line)
    else:
        _file_append(line)
    return Checkpoint(seq=seq, hash=head_hash, at=stamp)


def _file_append(line: str) -> None:
    """O_APPEND: concurrent writers never interleave inside a line."""
    path = checkpoint_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())
        if settings.AUDIT_CHECKPOINT_FSYNC:
            os.fsync(fd)
    finally:
        os.close(fd)


# How much of the file's end is read for the newest checkpoint and the incremental check (about 300 lines):
# lines land out of seq order only by the few commits racing at one moment, never by a block's worth.
TAIL_BYTES = 64 * 1024


def checkpoint_latest(*, key: bytes, near: int | None = None) -> Checkpoint | None:
    """The checkpoint with the highest sequence, or None when none was ever written.

    Lines land in commit-callback order, which can differ from sequence order across processes, so the
    newest is the highest seq among the file's last lines (read from its end, not the whole file). A torn
    last line (a crash mid-write) is skipped; a whole line with a bad signature raises CheckpointForged.
    `near`: a seq the newest is likely close to (the head), so S3 lists only the keys after it.
    """
    if settings.AUDIT_CHECKPOINT_S3_BUCKET:
        raw = _s3_newest(near)
        return None if raw is None else _parse(key, raw, "the S3 bucket")
    return max(checkpoint_tail(key=key), key=lambda c: c.seq, default=None)


def checkpoint_tail(*, key: bytes, tail_bytes: int = TAIL_BYTES, near: int | None = None) -> list[Checkpoint]:
    """The newest checkpoints: those in the file's last `tail_bytes` (whole lines only), or in S3 the last
    objects by seq. What the incremental verification holds against the chain's end."""
    if settings.AUDIT_CHECKPOINT_S3_BUCKET:
        newest = _s3_newest(near)
        return [] if newest is None or (c := _parse(key, newest, "the S3 bucket")) is None else [c]
    path = checkpoint_path()
    if not path.exists():
        return []
    with path.open("rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        fh.seek(max(0, size - tail_bytes))
        block = fh.read()
    lines = block.split(b"\n")
    if size > tail_bytes:
        lines = lines[1:]  # the first piece is the end of a line cut by the block's start
    found = [_parse(key, line, str(path)) for line in lines if line.strip()]
    return [c for c in found if c is not None]


def checkpoint_all(*, key: bytes) -> Iterator[Checkpoint]:
    """Every checkpoint held, in storage order (the file's lines; S3's keys, ascending): what a full
    verification holds against the chain."""
    if settings.AUDIT_CHECKPOINT_S3_BUCKET:
        # Every version: a seq checkpointed again after a rollback is a new version of the same key, and an
        # object-locked bucket (always versioned) keeps the first one, which the conflict check needs.
        client = _s3()
        for name, version in _s3_versions(client):
            body = client.get_object(Bucket=settings.AUDIT_CHECKPOINT_S3_BUCKET, Key=name,
                                     **({"VersionId": version} if version else {}))["Body"].read()
            if (checkpoint := _parse(key, body, "the S3 bucket")) is not None:
                yield checkpoint
        return
    path = checkpoint_path()
    if not path.exists():
        return
    with path.open("rb") as fh:
        for raw_line in fh:
            if (checkpoint := _parse(key, raw_line, str(path))) is not None:
                yield checkpoint


def _parse(key: bytes, raw: bytes, where: str) -> Checkpoint | None:
    try:
        entry = json.loads(raw)
        seq, head_hash, at, mac = int(entry["seq"]), str(entry["hash"]), str(entry["at"]), str(entry["mac"])
    except (ValueError, KeyError, TypeError):
        log.warning("skipping an unreadable audit checkpoint in %s", where)
        return None
    if not hmac.compare_digest(mac, _signature(key, seq, head_hash, at)):
        raise CheckpointForged(f"checkpoint for seq {seq} in {where} has a bad signature")
    return Checkpoint(seq=seq, hash=head_hash, at=at)


def _s3() -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=settings.AUDIT_CHECKPOINT_S3_ENDPOINT_URL or None,
                        region_name=settings.AUDIT_CHECKPOINT_S3_REGION or None)


def _s3_put(seq: int, line: str) -> None:
    """One object per checkpoint, named by zero-padded seq so the newest lists last; locked if configured."""
    lock: dict[str, Any] = {}
    if settings.AUDIT_CHECKPOINT_S3_RETAIN_DAYS:
        # COMPLIANCE: not even the bucket owner can delete or shorten it before the date.
        lock = {"ObjectLockMode": "COMPLIANCE", "ObjectLockRetainUntilDate":
                clock.now() + timedelta(days=settings.AUDIT_CHECKPOINT_S3_RETAIN_DAYS)}
    _s3().put_object(Bucket=settings.AUDIT_CHECKPOINT_S3_BUCKET, ContentType="application/json",
                     Key=f"{settings.AUDIT_CHECKPOINT_S3_PREFIX}{seq:020d}.json", Body=line.encode(), **lock)


# How far below `near` the S3 listing starts: the newest checkpoint trails the head by the commits in flight.
S3_NEAR_MARGIN = 1000


def _s3_keys(client: Any, after: int | None = None) -> Iterator[str]:
    """Checkpoint keys in ascending seq order (zero-padded names), from just past seq `after` if given."""
    prefix = settings.AUDIT_CHECKPOINT_S3_PREFIX
    start = {} if after is None else {"StartAfter": f"{prefix}{max(after, 0):020d}"}
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=settings.AUDIT_CHECKPOINT_S3_BUCKET,
                                                            Prefix=prefix, **start)
    for page in pages:
        for item in page.get("Contents", []):
            yield item["Key"]


def _s3_versions(client: Any) -> Iterator[tuple[str, str | None]]:
    """(key, version id) of every stored version; an unversioned bucket lists each key once (id "null")."""
    pages = client.get_paginator("list_object_versions").paginate(
        Bucket=settings.AUDIT_CHECKPOINT_S3_BUCKET, Prefix=settings.AUDIT_CHECKPOINT_S3_PREFIX)
    for page in pages:
        for item in page.get("Versions", []):
            version = item.get("VersionId")
            yield item["Key"], None if version in (None, "null") else version


def _s3_newest(near: int | None = None) -> bytes | None:
    """The body of the checkpoint object with the highest seq (keys list in ascending order): listing from
    S3_NEAR_MARGIN below `near` when given (a few keys, not every checkpoint ever written), else all."""
    client = _s3()
    newest = None
    if near is not None:
        newest = max(_s3_keys(client, after=near - S3_NEAR_MARGIN), default=None)
    if newest is None:
        newest = max(_s3_keys(client), default=None)
    if newest is None:
        return None
    return bytes(client.get_object(Bucket=settings.AUDIT_CHECKPOINT_S3_BUCKET, Key=newest)["Body"].read())
