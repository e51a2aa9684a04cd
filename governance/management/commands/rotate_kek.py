"""`manage.py rotate_kek`: add a KEK version and re-wrap every data key without touching stored objects."""

from typing import Any

from django.core.management.base import BaseCommand
from tqdm import tqdm

from governance.audit import audit_append
from governance.audit_actions import AuditAction
from governance.keys import kek_rotate
from governance.models import DataKey


class Command(BaseCommand):
    help = "Add a key-encryption-key version and re-wrap every user's data key under it."

    def handle(self, *args: object, **options: Any) -> None:
        with tqdm(total=DataKey.objects.count(), unit="key", desc="re-wrapping") as bar:
            version, count = kek_rotate(progress=bar.update)
        audit_append(action=AuditAction.KEYS_ROTATED, actor_id=None, subject="keyring",
                     object_ref=f"kek:{version}", details={"rewrapped": count})
        self.stdout.write(
            self.style.SUCCESS(f"KEK version {version} is current; re-wrapped {count} data keys.")
        )
