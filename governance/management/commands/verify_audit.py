"""`manage.py verify_audit`: check the keyed audit chain against its newest signed checkpoint."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from governance.audit import REASONS, audit_verify
from governance.models import AuditEvent


class Command(BaseCommand):
    help = ("Verify the audit chain: sequence, keyed links, the head, and the newest signed checkpoint "
            "(cut, rewritten or wiped chains fail).")

    def handle(self, *args: object, **options: Any) -> None:
        with tqdm(total=AuditEvent.objects.count(), unit="event", desc="verifying") as bar:
            report = audit_verify(progress=bar.update)
        anchor = (f"checkpoint seq {report.checkpoint_seq}" if report.checkpoint_seq is not None
                  else "no checkpoint")
        if not report.ok:
            where = f" at seq {report.first_bad_seq}" if report.first_bad_seq is not None else ""
            raise CommandError(f"Audit chain broken{where} after {report.events_checked} good events "
                               f"({report.reason}: {REASONS.get(report.reason or '', '')}; {anchor}).")
        self.stdout.write(
            self.style.SUCCESS(f"Audit chain intact: {report.events_checked} events ({anchor}).")
        )
