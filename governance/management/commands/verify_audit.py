"""`manage.py verify_audit`: the full verification, stored as the result the officer's pages show."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from governance.audit import REASONS
from governance.audit_results import audit_verify_full_and_record


class Command(BaseCommand):
    help = ("Verify the whole audit chain: sequence, keyed links, the head, rows past it, every signed "
            "checkpoint (cut, rolled back, rewritten or wiped chains fail) and the checkpoint lag. "
            "Exits non-zero on any finding.")

    def handle(self, *args: object, **options: Any) -> None:
        row = audit_verify_full_and_record()
        anchor = (f"newest checkpoint seq {row.checkpoint_seq}, {row.checkpoints_checked} checkpoints checked"
                  if row.checkpoint_seq is not None else "no checkpoint")
        if not row.ok:
            where = f" at seq {row.first_bad_seq}" if row.first_bad_seq is not None else ""
            raise CommandError(f"Audit chain broken{where} after {row.events_checked} good events "
                               f"({row.reason}: {REASONS.get(row.reason, '')}; {anchor}).")
        self.stdout.write(self.style.SUCCESS(
            f"Audit chain intact: {row.events_checked} events in {row.seconds:.1f} s ({anchor})."))
