"""Differentially private fine-tuning: accounting (what a run spends), samplers (per-sample gradients), a
run's config, the objective, the private step (trainer) and the whole run (run.train_dp).

Privacy unit: one row of `faces`, one account's photo. Governance puts at most one photo per account in a
run, refuses photos showing more than one face and drops exact pixel copies held by several accounts; a
re-encoded copy, or a person with several accounts, is counted once per account (docs/training.md).
"""

from .accounting import (
    ACCOUNTANTS,
    PRV_MAX_POINTS,
    Step,
    compose_epsilon,
    epsilon_for,
    noise_for_epsilon,
)
from .config import DEFAULT_GRAD_SAMPLE_MODE, GRAD_SAMPLE_MODES, DPConfig, register_grad_sample_mode
from .objective import DPObjective
from .randomness import KEY_BITS, PoissonSampler, SecretStream
from .run import DPResult, train_dp
from .samplers import (
    MATERIALISE_CHUNK,
    compute_conv2d_grad_sample,
    compute_conv2d_norm_sample,
    compute_group_norm_norm_sample,
    conv2d_weight_per_sample,
    conv2d_weight_sq_norms,
    install_ghost_conv,
    install_hooks_conv,
)
from .trainer import PrivateTrainer

__all__ = [
    "ACCOUNTANTS", "DEFAULT_GRAD_SAMPLE_MODE", "GRAD_SAMPLE_MODES", "KEY_BITS", "MATERIALISE_CHUNK",
    "PoissonSampler", "SecretStream",
    "PRV_MAX_POINTS", "DPConfig", "DPObjective", "DPResult", "PrivateTrainer", "Step", "compose_epsilon",
    "compute_conv2d_grad_sample", "compute_conv2d_norm_sample", "compute_group_norm_norm_sample",
    "conv2d_weight_per_sample", "conv2d_weight_sq_norms", "epsilon_for", "install_ghost_conv",
    "install_hooks_conv", "noise_for_epsilon", "register_grad_sample_mode", "train_dp",
]
