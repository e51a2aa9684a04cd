"""`python -m inference.generator.train_base_cli --out inference/generator/weights`: reproduce the shipped
base model."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

import torch

from inference.generator.registry import SHIPPED
from inference.generator.train import build_base_model


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line; defaults reproduce the shipped small model."""
    p = argparse.ArgumentParser(
        description="Train the age estimator and the base generator on synthetic faces, "
        "benchmark them, register both and promote the generator."
    )
    p.add_argument(
        "--out", default=str(SHIPPED), help="registry folder (default: the shipped one)"
    )
    p.add_argument("--preset", choices=("small", "base"), default="small")
    p.add_argument("--steps", type=int, default=1500, help="generator optimisation steps")
    p.add_argument("--estimator-steps", type=int, default=400)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--identities", type=int, default=400, help="synthetic identities for the generator")
    p.add_argument("--bench-identities", type=int, default=24, help="held-out identities for the benchmark")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--data-dir", default=None, help="licensed face crops with ages: labels.csv or <age>_*.png"
    )
    p.add_argument("--threads", type=int, default=2, help="CPU threads for torch")
    p.add_argument("--no-promote", action="store_true", help="register without promoting")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    result = build_base_model(
        args.out,
        preset=args.preset,
        steps=args.steps,
        estimator_steps=args.estimator_steps,
        batch_size=args.batch_size,
        seed=args.seed,
        data_dir=args.data_dir,
        identities=args.identities,
        bench_identities=args.bench_identities,
        promote=not args.no_promote,
        progress=not args.quiet,
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
