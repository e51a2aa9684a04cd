"""What the officer opens costs a page, not all of history: times at growing audit chains (issue 23).

    .venv/bin/python bench/history.py [--sizes 1000,100000] [--repeat 5] [--verify-up-to 100000]
        [--database-url postgres://postgres@127.0.0.1:5432/audit_bench]

Seeds a valid keyed chain (10% of it retention `*.expired` events spread over 30 days, one signed
checkpoint line per event as one commit per event writes) in bulk, growing it to each size in turn, and
at each size times (median of --repeat, Django test client, signed in as an officer): the dashboard,
GET /api/v1/compliance/report, the audit trail page (newest, a deep keyset page, one action, one day, one
subject by the start of their pseudonym), the API's
first page, and a bare page (/healthz). Prints each against the same figure at the first size and against
the bare page, and the full verification's events/s up to --verify-up-to events. With --database-url
the database is dropped and created fresh (PostgreSQL: the figures the issue asks for).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from datetime import timedelta

from _setup import django_for_bench


def _fresh_postgres(url: str) -> None:
    from urllib.parse import urlparse

    import psycopg

    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    admin = parsed._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')


def median_ms(client, path: str, repeat: int) -> float:
    from django.core.cache import cache

    samples = []
    for _ in range(repeat):
        cache.clear()  # throttle counters: the bench measures work, not the rate limit
        start = time.perf_counter()
        response = client.get(path)
        samples.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, (path, response.status_code, response.content[:300])
    return statistics.median(samples)


def grow_chain(to: int, *, batch: int = 5000) -> None:
    """Append valid events up to seq `to` in bulk (one head move per batch, one checkpoint line per event)."""
    from django.db import transaction

    from governance import clock
    from governance.audit import GENESIS, _event_hash, chain_key, checkpoint_key, pseudonym
    from governance.audit_rollups import rollup_add
    from governance.checkpoints import _signature, checkpoint_path
    from governance.models import AuditEvent, AuditHead

    key, cp_key = chain_key(), checkpoint_key()
    head, _ = AuditHead.objects.get_or_create(pk=1, defaults={"seq": 0, "hash": GENESIS})
    seq, prev = head.seq, head.hash
    now = clock.now()
    people = [pseudonym(i) for i in range(1, 201)]
    path = checkpoint_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as checkpoints:
        while seq < to:
            rows, lines = [], []
            for _ in range(min(batch, to - seq)):
                seq += 1
                # Oldest first over the last 30 days, so `at` grows with seq as real appends do
                at = now - timedelta(days=30) + timedelta(seconds=seq * 30 * 86400 / max(to, 1))
                if seq % 10 == 0:
                    deadline = at - timedelta(hours=seq % 50)
                    action, details = "photo.expired", {"expires_at": deadline.isoformat()}
                else:
                    action, details = "photo.content_read", {}
                fields = {"seq": seq, "at": at, "action": action, "actor": people[seq % 200],
                          "subject": people[seq % 200], "object_ref": f"photo:{seq}", "details": details,
                          "prev_hash": prev}
                prev = _event_hash(**fields, key=key)
                rows.append(AuditEvent(**fields, hash=prev))
                stamp = at.isoformat()
                lines.append(f'{{"seq":{seq},"hash":"{prev}","at":"{stamp}",'
                             f'"mac":"{_signature(cp_key, seq, prev, stamp)}"}}\n')
            with transaction.atomic():
                _insert(rows, batch)
                rollup_add(rows)  # what audit_append_many keeps with each append
                AuditHead.objects.filter(pk=1).update(seq=seq, hash=prev)
            checkpoints.writelines(lines)


def _insert(rows: list, batch: int) -> None:
    """Bulk insert: COPY on PostgreSQL (ten times bulk_create's speed), bulk_create elsewhere."""
    import json

    from django.db import connection

    from governance.models import AuditEvent

    if connection.vendor != "postgresql":
        AuditEvent.objects.bulk_create(rows, batch_size=batch)
        return
    columns = ["seq", "at", "action", "actor", "subject", "object_ref", "details", "prev_hash", "hash"]
    with connection.cursor() as cursor, cursor.cursor.copy(
            f"COPY governance_auditevent ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([json.dumps(row.details) if c == "details" else getattr(row, c) for c in columns])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,100000")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--verify-up-to", type=int, default=100000)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"))
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.database_url and args.database_url.startswith("postgres"):
        _fresh_postgres(args.database_url)
    django_for_bench(args.database_url)

    from django.conf import settings
    from django.contrib.auth.models import Group
    from django.db import connection
    from django.test import Client

    from governance.audit import audit_verify, pseudonym
    from governance.models import AuditEvent
    from webplatform.accounts.services import user_register

    Group.objects.get_or_create(name=settings.COMPLIANCE_GROUP)
    officer, _ = user_register(username="bench-officer", password="a-Long-passphrase-42")
    officer.groups.add(Group.objects.get(name=settings.COMPLIANCE_GROUP))
    client = Client()
    client.force_login(officer)
    print(f"database: {connection.vendor}; sizes {sizes}; median of {args.repeat}")

    first: dict[str, float] = {}
    for size in sizes:
        start = time.perf_counter()
        grow_chain(size)
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE governance_auditevent")
        print(f"\n{size:,} events (seeded in {time.perf_counter() - start:.0f} s)")
        middle = AuditEvent.objects.get(seq=size // 2).at.date().isoformat()
        subject = pseudonym(1)[:8] + "…"
        pages = {
            "bare page (/healthz)": "/healthz",
            "dashboard": "/officer/",
            "compliance report": "/api/v1/compliance/report",
            "audit page, newest": "/officer/audit",
            "audit page, deep (keyset)": f"/officer/audit?before={size // 2}",
            "audit page, one action": "/officer/audit?action=photo.expired",
            "audit page, one day": f"/officer/audit?since={middle}&until={middle}",
            "audit page, one subject": f"/officer/audit?subject={subject}",
            "API events, first page": "/api/v1/audit/events?limit=50",
        }
        times = {name: median_ms(client, path, args.repeat) for name, path in pages.items()}
        bare = times["bare page (/healthz)"]
        for name, ms in times.items():
            first.setdefault(name, ms)
            print(f"  {name:28s} {ms:9.1f} ms  {ms / first[name]:6.2f}x the {sizes[0]:,} case  "
                  f"{ms / bare:7.1f}x bare")
        if size <= args.verify_up_to:
            start = time.perf_counter()
            report = audit_verify()
            took = time.perf_counter() - start
            assert report.ok, report
            print(f"  full verification: {report.events_checked:,} events, {report.checkpoints_checked:,} "
                  f"checkpoints in {took:.1f} s = {report.events_checked / took:,.0f} events/s")


if __name__ == "__main__":
    main()
