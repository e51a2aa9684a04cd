"""Audited appends per second from 1, 2, 4 and 8 processes on PostgreSQL, against bare inserts (issue 23).

    .venv/bin/python bench/audit_append.py [--seconds 5] [--processes 1,2,4,8]
        [--database-url postgres://postgres@127.0.0.1:5432/audit_append_bench] [--runs 5]

Each process appends single-event transactions (audit_append, as one audited request does) for --seconds:
with group commit (the event queued in the transaction, chained on commit by whoever holds the head, the
checkpoint line after that), and, for comparison, chained in the transaction under the head row lock (the
design before group commit). The baseline is the same number of processes inserting rows of the same shape
into a table with no lock, in the same run. Prints appends/s, the ratio to 1 process, and the ratio to bare
inserts. The database is dropped and created fresh; the chain must verify at the end.
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
    from governance.audit_actions import AuditAction

    done, stop = 0, time.perf_counter() + seconds
    while time.perf_counter() < stop:
        if kind in ("audit", "locked"):
            with transaction.atomic():
                # "locked": chained in the action's transaction under the head lock (before group commit)
                audit_append(action=AuditAction.KEYS_ROTATED, actor_id=None,
                             object_ref=f"bench:{os.getpid()}:{done}", chained=kind == "locked")
        else:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("INSERT INTO bench_bare (at, ref, hash) VALUES (now(), %s, %s)",
                               [f"bench:{os.getpid()}:{done}", "0" * 64])
        done += 1
    connection.close()
    out.put(done)


def _chaining_commits() -> int:
    """Checkpoint lines so far: one per commit that moved the head (a drained batch, or a locked append)."""
    from governance.checkpoints import checkpoint_path

    path = checkpoint_path()
    if not path.exists():
        return 0
    with path.open() as lines:
        return sum(1 for _ in lines)


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
    parser.add_argument("--runs", type=int, default=1,
                        help="repeat the whole measurement; the last line lists each run's ratio")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/audit_append_bench")
    args = parser.parse_args()
    from history import _fresh_postgres

    _fresh_postgres(args.database_url)
    django_for_bench(args.database_url)
    from django.db import connection

    from governance.audit import audit_append
    from governance.audit_actions import AuditAction

    # The head row and the keyring exist before forking
    audit_append(action=AuditAction.KEYS_ROTATED, actor_id=None)
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE bench_bare (id bigserial primary key, at timestamptz, ref text, hash text)")
    connection.close()
    counts = [int(n) for n in args.processes.split(",")]
    print(f"PostgreSQL, {args.seconds:g} s a run; single-event transactions")
    ratios = [_measure(counts, args.seconds) for _ in range(args.runs)]
    if args.runs > 1:
        print(f"group commit, {counts[-1]} processes against {counts[0]}, {args.runs} runs: "
              + ", ".join(f"{r:.2f}x" for r in ratios))
    from governance.audit import audit_verify

    report = audit_verify()
    assert report.ok and report.checkpoint_lag == 0, report
    print(f"  chain verified: {report.events_checked} events, none left queued")


def _measure(counts: list[int], seconds: float) -> float:
    """One run over every process count; returns group commit's ratio, the most processes to the fewest."""
    first: dict[str, float] = {}
    for n in counts:
        commits = _chaining_commits()
        audited = _run("audit", n, seconds)
        batch = audited * seconds / max(1, _chaining_commits() - commits)
        locked, bare = (_run(kind, n, seconds) for kind in ("locked", "bare"))
        first.setdefault("audit", audited)
        first.setdefault("locked", locked)
        first["last"] = audited / first["audit"]
        print(f"  {n} process{'es' if n > 1 else '  '}: group commit {audited:6.0f} appends/s "
              f"({audited / first['audit']:.2f}x 1 process, {audited / bare:.2f} of bare, "
              f"{batch:.1f} a batch); "
              f"head lock {locked:6.0f}/s ({locked / first['locked']:.2f}x, {locked / bare:.2f} of bare); "
              f"bare inserts {bare:6.0f}/s")
    return first["last"]


if __name__ == "__main__":
    main()
