"""`manage.py bootstrap`: seed purposes and policy v1, the compliance group, demo accounts (idempotent)."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from governance.consent import PROCESSING, TRAINING, consent_set, policy_current, policy_publish
from governance.keys import get_keyring
from governance.models import Purpose
from webplatform.accounts.services import user_register

POLICY_DIR = Path(__file__).resolve().parents[4] / "governance" / "policies"
PURPOSE_NAMES = {PROCESSING: "Processing your photos", TRAINING: "Improving the model (differential privacy)"}


def policy_text(slug: str) -> str:
    """A purpose's policy text with the configured privacy caps in it, so what users agree to states them."""
    caps = {"epsilon_cap": settings.DP_EPSILON_CAP, "delta": settings.DP_DELTA,
            "user_epsilon_cap": getattr(settings, "DP_USER_EPSILON_CAP", settings.DP_EPSILON_CAP)}
    text = (POLICY_DIR / f"{slug}.txt").read_text()
    for name, value in caps.items():
        text = text.replace("{" + name + "}", f"{value:g}")
    return text


class Command(BaseCommand):
    help = "Seed purposes, policies and roles; with --demo also demo accounts, whose credentials it prints."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--demo", action="store_true",
                            help="also create a demo end user and compliance officer (refused in production)")

    def handle(self, *args: object, **options: Any) -> None:
        if options["demo"] and settings.PRODUCTION:
            raise CommandError(
                "Demo accounts are refused in production mode (PRODUCTION=1): their passwords are "
                "printed and kept on disk. Create real accounts instead."
            )
        get_keyring()  # generated on first run, mode 0600
        with transaction.atomic():
            for slug, name in PURPOSE_NAMES.items():
                if not Purpose.objects.filter(slug=slug).exists():
                    policy_publish(purpose_slug=slug, name=name, text=policy_text(slug))
            Group.objects.get_or_create(name=settings.COMPLIANCE_GROUP)
        if not options["demo"]:
            self.stdout.write(
                self.style.SUCCESS("Timeveil is ready (no demo accounts: pass --demo for them).")
            )
            return
        credentials = self._demo_accounts()
        self.stdout.write(
            self.style.SUCCESS("Timeveil is ready. Demo accounts (kept in var/demo_credentials.json):")
        )
        for role, cred in credentials.items():
            self.stdout.write(f"  {role:<12} username={cred['username']}  password={cred['password']}")

    def _demo_accounts(self) -> dict[str, dict[str, str]]:
        path = settings.VAR_DIR / "demo_credentials.json"
        User = get_user_model()
        if path.exists():
            credentials = json.loads(path.read_text())
            if all(User.objects.filter(username=c["username"]).exists() for c in credentials.values()):
                return credentials
        # Generated on first run, never fixed in code.
        credentials = {
            "end user": {"username": f"demo-{secrets.token_hex(3)}", "password": secrets.token_urlsafe(12)},
            "compliance": {
                "username": f"officer-{secrets.token_hex(3)}", "password": secrets.token_urlsafe(12)
            },
        }
        user, _ = user_register(**credentials["end user"])
        consent_set(user_id=user.pk, purpose_slug=PROCESSING, granted=True,
                    policy_version=policy_current(Purpose.objects.get(slug=PROCESSING)).version)
        officer = User.objects.create_user(**credentials["compliance"])  # its data key: accounts.signals
        officer.groups.add(Group.objects.get(name=settings.COMPLIANCE_GROUP))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(credentials, fh, indent=2)
        return credentials
