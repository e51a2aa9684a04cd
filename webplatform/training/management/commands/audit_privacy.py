"""`manage.py audit_privacy`: an empirical one-run audit of the DP training code; promotion needs it
passed."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from webplatform.training.services import privacy_audit_run


class Command(BaseCommand):
    help = ("Audit DP-SGD as training runs it (Steinke, Nasr & Jagielski 2023): canaries in with "
            "probability 1/2, noisy gradients seen, epsilon lower bounds against each claim; records the "
            "verdict for this code.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--claims", default="2,8,50", help="claimed epsilons to audit, comma-separated")
        parser.add_argument("--canaries", type=int, default=1000)
        parser.add_argument("--sample-rate", type=float, default=0.25)
        parser.add_argument("--steps", type=int, default=40)
        parser.add_argument("--guesses", type=int, default=100)
        parser.add_argument("--delta", type=float, default=1e-5)

    def handle(self, *args: object, **options: Any) -> None:
        from inference.dp.audit import AuditConfig

        config = AuditConfig(canaries=options["canaries"], sample_rate=options["sample_rate"],
                             steps=options["steps"], guesses=options["guesses"], delta=options["delta"])
        claims = [float(c) for c in str(options["claims"]).split(",") if c.strip()]
        audit = privacy_audit_run(claims=claims, config=config)
        self.stdout.write(f"{'claimed':>8} {'lower bound':>11} {'ideal':>6} {'control':>7} {'max':>6} "
                          f"{'sigma':>6} {'measured':>8} {'q':>5} {'measured':>8}  verdict")
        for r in audit.report["results"]:
            self.stdout.write(
                f"{r['claimed_epsilon']:8.2f} {r['epsilon_lower_bound']:11.2f} {r['ideal_lower_bound']:6.2f} "
                f"{r['control_lower_bound']:7.2f} {r['max_lower_bound']:6.2f} {r['noise_multiplier']:6.3f} "
                f"{r['noise_measured']:8.3f} {r['sample_rate']:5.3f} {r['sample_rate_measured']:8.3f}  "
                f"{'pass' if r['passed'] else 'FAIL: ' + '; '.join(r['failures'])}")
        if options["verbosity"] > 1:
            self.stdout.write(json.dumps(audit.report, indent=2))
        if not audit.passed:
            raise CommandError(f"DP code {audit.code_version[:16]} failed its privacy audit: models trained "
                               "with it cannot be promoted")
        self.stdout.write(self.style.SUCCESS(f"DP code {audit.code_version[:16]} passed; "
                                             "its models may be promoted."))
