"""`manage.py audit_privacy`: an empirical one-run audit of the DP training code; promotion needs it
passed."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from webplatform.training.services import privacy_audit_run


class Command(BaseCommand):
    help = ("Audit DP-SGD as training runs it, at pinned settings (Steinke, Nasr & Jagielski 2023): "
            "canaries in with probability 1/2, noisy gradients seen, epsilon lower bounds against claims 2 "
            "and 8; and each person's clipped contribution through the real generator. Records the verdict "
            "for this code version; promotion of its DP models needs it passed.")

    def handle(self, *args: object, **options: Any) -> None:
        audit = privacy_audit_run()
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
        probe = audit.report["clipping_probe"]
        self.stdout.write(f"clipping probe through the generator: contributions "
                          f"{min(probe['contributions']):.6f}-{max(probe['contributions']):.6f} of C "
                          f"{probe['max_grad_norm']}, largest share per layer type "
                          + ", ".join(f"{k} {v:.3f}" for k, v in probe["layer_types"].items())
                          + ("" if probe["passed"] else "  FAIL: " + "; ".join(probe["failures"])))
        if not audit.passed:
            raise CommandError(f"DP code {audit.code_version[:16]} failed its privacy audit: models trained "
                               "with it cannot be promoted")
        self.stdout.write(self.style.SUCCESS(f"DP code {audit.code_version[:16]} passed; "
                                             "its models may be promoted."))
