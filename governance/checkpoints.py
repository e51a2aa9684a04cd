"""Signed audit checkpoints (sequence, head hash, time) kept outside the database, in an append-only file.

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
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

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
    return hmac.new(key, f"timeveil-audit-checkpoint\n{seq}\n{head_hash}\n{at}".encode(), hashlib.sha256).hexdigest()


def checkpoint_path() -> Path:
    """The checkpoint file (AUDIT_CHECKPOINT_DIR/checkpoints.jsonl)."""
    return Path(settings.AUDIT_CHECKPOINT_DIR) / FILENAME


def checkpoint_write(*, key: bytes, seq: int, head_hash: str, at: datetime | None = None) -> Checkpoint:
    """Append one signed checkpoint line (O_APPEND: concurrent writers never interleave inside a line)."""
    stamp = (at or clock.now()).isoformat()
    line = json.dumps({"seq": seq, "hash": head_hash, "at": stamp, "mac": _signature(key, seq, head_hash, stamp)},
                      separators=(",", ":")) + "\n"
    path = checkpoint_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())
        if settings.AUDIT_CHECKPOINT_FSYNC:
            os.fsync(fd)
    finally:
        os.close(fd)
    return Checkpoint(seq=seq, hash=head_hash, at=stamp)


def checkpoint_latest(*, key: bytes) -> Checkpoint | None:
    """The checkpoint with the highest sequence, or None when none was ever written.

    Lines land in commit-callback order, which can differ from sequence order across processes, so the
    newest is the highest seq, not the last line. A torn last line (a crash mid-write) is skipped; a whole
    line with a bad signature raises CheckpointForged.
    """
    path = checkpoint_path()
    if not path.exists():
        return None
    latest: Checkpoint | None = None
    with path.open("rb") as fh:
        for raw in fh:
            try:
                entry = json.loads(raw)
                seq, head_hash, at, mac = int(entry["seq"]), str(entry["hash"]), str(entry["at"]), str(entry["mac"])
            except (ValueError, KeyError, TypeError):
                log.warning("skipping an unreadable audit checkpoint line in %s", path)
                continue
            if not hmac.compare_digest(mac, _signature(key, seq, head_hash, at)):
                raise CheckpointForged(f"checkpoint for seq {seq} in {path} has a bad signature")
            if latest is None or seq > latest.seq:
                latest = Checkpoint(seq=seq, hash=head_hash, at=at)
    return latest
