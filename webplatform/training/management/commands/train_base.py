"""`manage.py train_base`: reproduce the shipped base model from synthetic faces (or a licensed folder)."""

from __future__ import annotations

import json
from typing import Any

import torch
from django.core.management.base import BaseCommand, CommandParser

from governance.audit import audit_append
from governance.audit_actions import AuditAction
from inference.generator.train import build_base_model
from webplatform.models_registry import model_registry


class Command(BaseCommand):
    help = "Train the age estimator and the small generator on synthetic faces, register and promote them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--preset", choices=("small", "base"), default="small")
        parser.add_argument("--steps", type=int, default=1500)  # as the shipped card records
        parser.add_argument("--estimator-steps", type=int, default=400)
        parser.add_argument("--identities", type=int, default=400)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--threads", type=int, default=2)
        parser.add_argument("--data-dir", default=None,
                            help="licensed face images with ages (labels.csv or <age>_*.png) "
                                 "instead of synthetic")
        parser.add_argument("--no-promote", action="store_true")

    def handle(self, *args: object, **options: Any) -> None:
        torch.set_num_threads(int(options["threads"]))
        registry = model_registry()
        result = build_base_model(registry.root, preset=options["preset"], steps=options["steps"],
                                  estimator_steps=options["estimator_steps"], seed=options["seed"],
                                  identities=options["identities"], data_dir=options["data_dir"],
                                  promote=not options["no_promote"], progress=True)
        audit_append(action=AuditAction.MODEL_TRAINED, actor_id=None, subject="model",
                     object_ref=f"model:{result['generator']}",
                     details={"dp": False, "data": "synthetic" if not options["data_dir"] else "folder"})
        self.stdout.write(json.dumps(result, indent=2, default=str))
