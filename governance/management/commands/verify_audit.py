"""`manage.py verify_audit`: recompute the audit hash chain and name the first bad sequence."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from governance.audit import audit_verify
from governance.models import AuditEvent


class Command(BaseCommand):
    help = "Verify the audit chain: sequence, previous-hash links and each event's hash."

    def handle(self, *args: object, **options: Any) -> None:
        with tqdm(total=AuditEvent.objects.count(), unit="event", desc="verifying") as bar:
            report = audit_verify(progress=bar.update)
        if not report.ok:
            raise CommandError(f"Audit chain broken at seq {report.first_bad_seq} "
                               f"after {report.events_checked} good events.")
        self.stdout.write(self.style.SUCCESS(f"Audit chain intact: {report.events_checked} events."))
