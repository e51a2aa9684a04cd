"""`manage.py train`: a DP fine-tuning run on the photos of users who opted in to training."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from governance.errors import TimeveilError
from webplatform.training.services import (
    RunRequest,
    training_run_create,
    training_run_execute,
    training_run_queue,
)


class Command(BaseCommand):
    help = "Snapshot consented photos, reserve the privacy budget, train under DP, register the version."

    def add_arguments(self, parser: CommandParser) -> None:
        budget = parser.add_mutually_exclusive_group(required=True)
        budget.add_argument("--target-epsilon", type=float,
                            help="solve the noise multiplier for this epsilon")
        budget.add_argument("--noise-multiplier", type=float, help="use this noise; epsilon follows")
        parser.add_argument("--epochs", type=float, default=1.0)
        parser.add_argument("--batch-size", type=int, default=16, help="expected Poisson batch size")
        parser.add_argument("--max-grad-norm", type=float, default=1.0)
        parser.add_argument("--lr", type=float, default=1e-4)
        parser.add_argument("--lineage", default="")
        parser.add_argument("--queue", action="store_true", help="run on a training worker instead of here")

    def handle(self, *args: object, **options: Any) -> None:
        request = RunRequest(epochs=options["epochs"], target_epsilon=options["target_epsilon"],
                             noise_multiplier=options["noise_multiplier"],
                             batch_size=options["batch_size"], max_grad_norm=options["max_grad_norm"],
                             lr=options["lr"], lineage=options["lineage"])
        try:
            run = training_run_create(request)
        except TimeveilError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from exc
        self.stdout.write(f"run {run.id}: about {run.participants} participants (released with noise), "
                          f"manifest {run.manifest_sha256[:16]}…, "
                          f"epsilon {run.epsilon_reserved:.3f} reserved at delta {run.delta:.1e}, "
                          f"noise {run.noise_multiplier:.3f}, {run.steps} steps")
        if options["queue"]:
            if training_run_queue(run, request):
                self.stdout.write("queued on the training queue")
            else:  # the run's row is its outbox: the sweeper sends it once the broker answers
                self.stdout.write(self.style.WARNING(
                    f"the broker did not answer: run {run.id} stays reserved and is sent to the training "
                    "queue by the sweeper once the broker is back"))
            return
        try:
            run = training_run_execute(run, request)
        except TimeveilError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from exc
        if run.error:
            raise CommandError(f"run failed: {run.error}")
        self.stdout.write(self.style.SUCCESS(
            f"registered {run.model_version}: epsilon spent {run.epsilon_spent:.3f}; "
            f"promote it with `manage.py promote_model {run.model_version}`"))
        self.stdout.write(json.dumps(run.metrics, indent=2, default=str))  # public: held-out synthetic scores
