"""Lifecycle figures: the erasure request against holdings, the purge rate, export throughput (same run).

    .venv/bin/python bench/lifecycle.py [--purge 10000] [--export-photos 50] [--export-mb 2]
                                        [--database-url postgres://...]

(a) erasure REQUEST (user_erase's transaction: key destroyed, account scrubbed; the purge kept out) for users
    holding 10, 100 and 1,000 photos: median ms of several users each, and the 1,000 / 10 ratio (goal: about
    1, under 50 ms whatever the user holds). The purge of the 1,000-photo user is timed separately.
(b) retention_enforce over --purge expired objects on the filesystem backend: objects/s (goal > 1,000).
(c) GET /me/export's zip stream for a user with --export-photos JPEG photos of about --export-mb MB (each
    also gets its thumbnail made), against a bare read + decrypt loop over the same objects: MB/s each and the
    ratio.
Rows and ciphertext are made directly (bulk_create), not through the API: intake is bench/upload.py's job.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from datetime import timedelta

from _setup import django_for_bench

SMALL = b"\xff\xd8" + b"bench photo " * 20  # small plaintext: (a) and (b) measure bookkeeping, not AES


def make_user(name: str):
    from governance.consent import PROCESSING, consent_set
    from webplatform.accounts.services import user_register

    user, _token = user_register(username=name, password="a-Long-passphrase-42", email=f"{name}@example.com")
    consent_set(user_id=user.pk, purpose_slug=PROCESSING, granted=True, policy_version=1)
    return user


def make_photos(owner_id: int, n: int, *, plaintext: bytes = SMALL, age: timedelta = timedelta(0),
                progress=None) -> None:
    """n Photo rows with real ciphertext in storage, created `age` ago (bulk insert)."""
    from django.conf import settings

    from governance import clock
    from webplatform.encrypted_store import object_put
    from webplatform.photos.models import Photo

    created = clock.now() - age
    rows = []
    for _ in range(n):
        photo_id = uuid.uuid4()
        name, size = object_put(owner_id=owner_id, kind="photo", object_id=photo_id, plaintext=plaintext)
        rows.append(Photo(id=photo_id, owner_id=owner_id, created_at=created,
                          expires_at=created + settings.RETENTION_ORIGINAL, width=64, height=48,
                          content_type="image/jpeg", size_bytes=size, storage_name=name))
        if progress:
            progress.update(1)
        if len(rows) == 1000:
            Photo.objects.bulk_create(rows)
            rows = []
    Photo.objects.bulk_create(rows)


def bench_erasure(users_per_size: int) -> None:
    from tqdm import tqdm

    from governance.errors import KeyDestroyed
    from webplatform.encrypted_store import object_get
    from webplatform.lifecycle import erasure
    from webplatform.lifecycle.erasure import erasure_purge, user_erase
    from webplatform.photos.models import Photo

    sizes = (10, 100, 1000)
    holders: dict[int, list[int]] = {}
    with tqdm(total=sum(sizes) * users_per_size, desc="setup (a): photos", unit="photo") as bar:
        for size in sizes:
            holders[size] = []
            for i in range(users_per_size):
                user = make_user(f"holder{size}-{i}")
                make_photos(user.pk, size, progress=bar)
                holders[size].append(user.pk)

    # Keep the purge out of the request: on commit it would run eagerly in this process.
    queued: list[int] = []
    erasure.publish = lambda name, request_id: queued.append(request_id) or True  # type: ignore[assignment]
    medians = {}
    print("\n(a) erasure request: key destroyed + account scrubbed, one transaction (purge excluded)")
    for size in sizes:
        times = []
        for user_id in holders[size]:
            start = time.perf_counter()
            user_erase(user_id=user_id)
            times.append((time.perf_counter() - start) * 1000)
            photo = Photo.objects.filter(owner_id=user_id).first()
            try:  # unreadable from the commit on
                object_get(owner_id=user_id, kind="photo", object_id=photo.id, name=photo.storage_name)
                raise SystemExit("BUG: ciphertext still readable after the erasure request")
            except KeyDestroyed:
                pass
        medians[size] = statistics.median(times)
        print(
            f"    {size:5d} photos: median {medians[size]:6.2f} ms  "
            f"(min {min(times):.2f}, max {max(times):.2f},"
            f" n={len(times)})"
        )
    print(f"    ratio 1000-photo / 10-photo: {medians[1000] / medians[10]:.2f}  (goal: ~1, each < 50 ms)")

    request_id = queued[-1]  # the last 1,000-photo user
    start = time.perf_counter()
    erasure_purge(request_id=request_id)
    elapsed = time.perf_counter() - start
    print(
        f"    purge of that 1,000-photo user afterwards: {elapsed * 1000:.0f} ms "
        f"({1000 / elapsed:,.0f} objects/s)"
    )


def bench_purge(n: int) -> None:
    from tqdm import tqdm

    from webplatform.lifecycle.retention import retention_enforce
    from webplatform.photos.models import Photo

    owners = [make_user(f"expired-{i}").pk for i in range(20)]
    with tqdm(total=n, desc="setup (b): expired photos", unit="photo") as bar:
        for i, owner_id in enumerate(owners):
            make_photos(owner_id, n // len(owners) + (1 if i < n % len(owners) else 0), age=timedelta(days=3),
                        progress=bar)
    assert Photo.objects.filter(owner_id__in=owners).count() == n
    start = time.perf_counter()
    report = retention_enforce()
    elapsed = time.perf_counter() - start
    assert report.deleted["photo"] == n and not Photo.objects.filter(owner_id__in=owners).exists(), report
    print(f"\n(b) retention purge of {n:,} expired objects (filesystem backend): {elapsed:.2f} s, "
          f"{n / elapsed:,.0f} objects/s  (goal > 1,000)")


def bench_export(n: int, megabytes: float) -> None:
    from tqdm import tqdm
    from upload import noisy_jpeg  # bench/upload.py: a real JPEG of about that size, for the thumbnails

    from webplatform.encrypted_store import object_get
    from webplatform.lifecycle.export import export_stream
    from webplatform.photos.models import Photo
    from webplatform.privacy import privacy_report

    user = make_user("exporter")
    photo = noisy_jpeg(int(megabytes * 1024 * 1024))
    with tqdm(total=n, desc="setup (c): photos", unit="photo") as bar:
        for _ in range(n):
            make_photos(user.pk, 1, plaintext=photo, progress=bar)
    total_mb = n * len(photo) / 1e6

    def bare() -> int:
        read = 0
        for photo in Photo.objects.filter(owner_id=user.pk).order_by("created_at"):
            read += len(
                object_get(owner_id=user.pk, kind="photo", object_id=photo.id, name=photo.storage_name)
            )
        return read

    def export() -> int:
        return sum(len(chunk) for chunk in export_stream(user_id=user.pk, privacy_report=privacy_report))

    results = {}
    for label, fn in (("bare read+decrypt", bare), ("export zip stream", export)):
        fn()  # warm the page cache, so both read from memory
        times = []
        for _ in range(3):
            start = time.perf_counter()
            produced = fn()
            times.append(time.perf_counter() - start)
        results[label] = total_mb / statistics.median(times)
        print(f"    {label}: {results[label]:7.1f} MB/s  ({produced / 1e6:.1f} MB produced)")
    ratio = results["export zip stream"] / results["bare read+decrypt"]
    print(f"    export / bare: {ratio:.2f}")
    per_photo = total_mb / results["export zip stream"] / n
    print(f"    export: {per_photo * 1e3:.1f} ms a photo, its thumbnail (1/4 decode, shrink, JPEG) included")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users-per-size", type=int, default=5)
    parser.add_argument("--purge", type=int, default=10_000)
    parser.add_argument("--export-photos", type=int, default=50)
    parser.add_argument("--export-mb", type=float, default=2.0)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    var = django_for_bench(args.database_url)

    from django.db import connection

    from governance.consent import PROCESSING, policy_publish

    policy_publish(purpose_slug=PROCESSING, text="bench policy")
    print(f"database: {connection.vendor}; var: {var}")
    bench_erasure(args.users_per_size)
    bench_purge(args.purge)
    print(f"\n(c) export of {args.export_photos} x {args.export_mb:g} MB photos")
    bench_export(args.export_photos, args.export_mb)


if __name__ == "__main__":
    main()
