"""Audited appends per second from 1, 2, 4 and 8 processes on PostgreSQL, against bare inserts (issue 23).

    .venv/bin/python bench/audit_append.py [--seconds 5] [--processes 1,2,4,8]
        [--database-url postgres://postgres@127.0.0.1:5432/audit_append_bench]

Each process appends single-event transactions (audit_append, as one audited request does: head row lock,
insert, head update, checkpoint line after commit) for --seconds; the baseline is the same number of
processes inserting rows of the same shape into a table with no lock, in the same run. Prints appends/s,
the ratio to 1 process, and the ratio to bare inserts. The database is dropped and created fresh.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time

from _setup import django_for_bench


def _worker(kind: str, seconds: float, out: mp.Queue) -> None:
    """Forked from the set-up parent: same settings, keyring and checkpoint folder, its own connection."""
    from django.db import connection, transaction

    from governance.audit import audit_append

    done, stop = 0, time.perf_counter() + seconds
    while time.perf_counter() < stop:
        if kind == "audit":
            with transaction.atomic():
                audit_append(action="keys.rotated", actor_id=None, object_ref=f"bench:{os.getpid()}:{done}")
        else:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("INSERT INTO bench_bare (at, ref, hash) VALUES (now(), %s, %s)",
                               [f"bench:{os.getpid()}:{done}", "0" * 64])
        done += 1
    connection.close()
    out.put(done)


def _run(kind: str, processes: int, seconds: float) -> float:
    from django.db import connection

    connection.close()  # never share the parent's socket with the forked workers
    fork = mp.get_context("fork")
    out: mp.Queue = fork.Queue()
    workers = [fork.Process(target=_worker, args=(kind, seconds, out)) for _ in range(processes)]
    for worker in workers:
        worker.start()
    total = sum(out.get() for _ in workers)
    for worker in workers:
        worker.join()
    return total / seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--processes", default="1,2,4,8")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/audit_append_bench")
    args = parser.parse_args()
    from history import _fresh_postgres

    _fresh_postgres(args.database_url)
    django_for_bench(args.database_url)
    from django.db import connection

    from governance.audit import audit_append

    # The head row and the keyring exist before forking
    audit_append(action="keys.rotated", actor_id=None)
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE bench_bare (id bigserial primary key, at timestamptz, ref text, hash text)")
    connection.close()
    counts = [int(n) for n in args.processes.split(",")]
    print(f"PostgreSQL, {args.seconds:g} s a run; single-event transactions")
    first = {}
    for n in counts:
        audited, bare = (_run(kind, n, args.seconds) for kind in ("audit", "bare"))
        first.setdefault("audit", audited)
        print(f"  {n} process{'es' if n > 1 else '  '}: {audited:7.0f} appends/s "
              f"({audited / first['audit']:.2f}x 1 process), bare inserts {bare:7.0f}/s, "
              f"appends/bare {audited / bare:.2f}")


if __name__ == "__main__":
    main()
