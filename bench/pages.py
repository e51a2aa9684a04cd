"""Page figures against the API serving the same data (same run).

    .venv/bin/python bench/pages.py [--repeat 20] [--events 5000] [--photos 20]

(a) a thumbnail (/photos/<id>/thumb: decrypt, decode, shrink to 320 px, re-encode) against the API's full
    decrypted content of the same 2048x1536 photo: median ms each and the ratio.
(b) the photo library page with --photos photos (HTML only; browsers fetch thumbnails after): median ms.
(c) the officer dashboard (report + four SVG charts) against GET /api/v1/compliance/report (the JSON it is
    built on) with --events audit events: median ms each and the ratio.
Requests go through Django's test client (no network), signed in with a session like a browser.
"""

from __future__ import annotations

import argparse
import io

from _setup import django_for_bench, median_ms


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--photos", type=int, default=20)
    args = parser.parse_args()
    django_for_bench()

    import numpy as np
    from django.conf import settings
    from django.contrib.auth.models import Group
    from django.test import Client
    from PIL import Image

    from governance.audit import audit_append_many
    from governance.audit_actions import AuditAction
    from governance.consent import PROCESSING, TRAINING, consent_set, policy_publish
    from webplatform.accounts.services import user_register
    from webplatform.photos.services import photo_create

    for slug in (PROCESSING, TRAINING):
        policy_publish(purpose_slug=slug, text=f"{slug} policy")
    Group.objects.get_or_create(name=settings.COMPLIANCE_GROUP)
    user, _ = user_register(username="bench-user", password="a-Long-passphrase-42")
    consent_set(user_id=user.pk, purpose_slug=PROCESSING, granted=True, policy_version=1)
    rng = np.random.default_rng(0)
    small = Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).resize((2048, 1536))
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=90)
    photos = [photo_create(owner_id=user.pk, data=buffer.getvalue()) for _ in range(args.photos)]
    client = Client()
    client.force_login(user)
    photo = photos[0]

    thumb = median_ms(lambda: client.get(f"/photos/{photo.id}/thumb"), args.repeat)
    full = median_ms(lambda: client.get(f"/api/v1/photos/{photo.id}/content"), args.repeat)
    print(f"(a) thumbnail {thumb:.1f} ms, full content {full:.1f} ms ({photo.width}x{photo.height}): "
          f"ratio {thumb / full:.2f}")
    library = median_ms(lambda: client.get("/"), args.repeat)
    print(f"(b) photo library page, {args.photos} photos: {library:.1f} ms")

    audit_append_many([{"action": AuditAction.PHOTO_CONTENT_READ, "actor_id": user.pk, "subject_id": user.pk,
                        "object_ref": f"bench:{i}"} for i in range(args.events)])
    officer, _ = user_register(username="bench-officer", password="a-Long-passphrase-42")
    officer.groups.add(Group.objects.get(name=settings.COMPLIANCE_GROUP))
    client.force_login(officer)
    dashboard = median_ms(lambda: client.get("/officer/"), max(3, args.repeat // 4))
    report = median_ms(lambda: client.get("/api/v1/compliance/report"), max(3, args.repeat // 4))
    print(f"(c) officer dashboard {dashboard:.1f} ms, compliance report JSON {report:.1f} ms "
          f"({args.events} audit events): ratio {dashboard / report:.2f}")


if __name__ == "__main__":
    main()
