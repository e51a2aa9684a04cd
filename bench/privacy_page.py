"""The privacy page against a bare page, for a person held by 1, 10 and 50 runs (issue 23.2).

    .venv/bin/python bench/privacy_page.py [--repeat 20] [--runs 1,10,50]

Each reservation stores a person's Rényi-filter epsilon on their manifest entry (and the lineage's on the
run); the page reads those figures (PRV's estimate is composed only on request, `?estimate=prv`, not
measured here). The rows are made directly (bulk_create) with stored totals, as run_reserve writes them.
Every request is cold: nothing caches a composition. Prints the median ms of GET /privacy and of GET
/healthz (the bare page) in the same run, and their ratio (goal: the privacy page under 50 ms for a person
in 50 runs).
"""

from __future__ import annotations

import argparse
import uuid
from datetime import timedelta

from _setup import django_for_bench, median_ms


def person_in_runs(name: str, n: int):
    """A user with training consent whose pseudonym is in n succeeded runs, each storing their total."""
    from governance import clock
    from governance.audit import pseudonym
    from governance.consent import PROCESSING, TRAINING, consent_set
    from governance.models import ManifestEntry, RunStatus, TrainingRun
    from governance.training import lineage_get_or_create
    from webplatform.accounts.services import user_register

    user, _ = user_register(username=name, password="a-Long-passphrase-42")
    for slug in (PROCESSING, TRAINING):
        consent_set(user_id=user.pk, purpose_slug=slug, granted=True, policy_version=1)
    lineage = lineage_get_or_create(f"bench-{name}")
    start = clock.now() - timedelta(days=n)
    runs, entries = [], []
    for i in range(n):
        run = TrainingRun(lineage=lineage, status=RunStatus.SUCCEEDED, created_at=start + timedelta(days=i),
                          finished_at=start + timedelta(days=i, hours=1), manifest_sha256="0" * 64,
                          participants=1000, count_noise=10.0, sample_rate=0.016, noise_multiplier=3.0,
                          max_grad_norm=1.0, steps=300, delta=1e-6, accountant="prv", epsilon_reserved=0.3,
                          epsilon_spent=0.3, lineage_epsilon_after=0.3 * (i + 1) ** 0.5,
                          model_version=f"bench-dp-{i}")
        runs.append(run)
        entries.append(ManifestEntry(run=run, subject=pseudonym(user.pk), photo_id=uuid.uuid4(),
                                     consent_record_id=uuid.uuid4(), epsilon_after=0.3 * (i + 1) ** 0.5))
    TrainingRun.objects.bulk_create(runs)
    ManifestEntry.objects.bulk_create(entries)
    return user


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--runs", default="1,10,50")
    args = parser.parse_args()
    django_for_bench()

    from django.test import Client

    from governance.consent import PROCESSING, TRAINING, policy_publish

    for slug in (PROCESSING, TRAINING):
        policy_publish(purpose_slug=slug, text=f"{slug} policy")
    bare = Client()
    bare_ms = median_ms(lambda: bare.get("/healthz"), args.repeat)
    print(f"bare page (GET /healthz): {bare_ms:.1f} ms")
    print(f"{'runs':>5} {'privacy ms':>11} {'x bare':>7}")
    for n in (int(x) for x in args.runs.split(",")):
        client = Client()
        client.force_login(person_in_runs(f"bench-{n}", n))
        page_ms = median_ms(lambda c=client: c.get("/privacy"), args.repeat)
        print(f"{n:>5} {page_ms:>11.1f} {page_ms / bare_ms:>7.1f}")


if __name__ == "__main__":
    main()
