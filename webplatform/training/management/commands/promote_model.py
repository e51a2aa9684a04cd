"""`manage.py promote_model VERSION`: make a registered version the one that serves."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from governance.errors import TimeveilError
from webplatform.training.services import model_promote


class Command(BaseCommand):
    help = "Promote a model version (refused when a DP version's card lacks its privacy fields)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("version")

    def handle(self, *args: object, **options: Any) -> None:
        try:
            model_promote(version=options["version"])
        except TimeveilError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(self.style.SUCCESS(f"{options['version']} is promoted and will serve new jobs."))
