"""`manage.py compliance_report`: print the compliance report (JSON) the API serves."""

import json
from typing import Any

from django.core.management.base import BaseCommand

from webplatform.lifecycle.report import compliance_report


class Command(BaseCommand):
    help = "Print the compliance report: retention backlog, erasures, consent counts, audit chain status."

    def handle(self, *args: object, **options: Any) -> None:
        self.stdout.write(json.dumps(compliance_report(), indent=2, default=str))
