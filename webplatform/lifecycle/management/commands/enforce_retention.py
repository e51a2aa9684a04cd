"""`manage.py enforce_retention`: delete everything past its deadline, then retry unfinished erasures."""

from typing import Any

from django.core.management.base import BaseCommand
from tqdm import tqdm

from governance import clock
from webplatform.lifecycle.erasure import PurgeIncomplete, erasure_purge, erasures_pending
from webplatform.lifecycle.retention import HELD_MODELS, expired, retention_enforce


class Command(BaseCommand):
    help = "Delete ciphertext and rows past their retention deadline (idempotent; safe to run concurrently)."

    def handle(self, *args: object, **options: Any) -> None:
        now = clock.now()
        due = sum(expired(model, now=now).count() for model in HELD_MODELS)
        with tqdm(total=due, unit="object", desc="retention") as bar:
            report = retention_enforce(now=now, progress=bar.update)
        unfinished = 0
        for request_id in erasures_pending():
            try:
                erasure_purge(request_id=request_id)
            except PurgeIncomplete:
                unfinished += 1
        self.stdout.write(f"deleted {report.deleted}, storage failures {report.failed} (retried next run), "
                          f"erasures still purging {unfinished}")
