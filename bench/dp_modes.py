"""Opacus' stock grad-sample modes, selectable in DP training for benchmarks only.

Production offers `hooks_conv` and `ghost_conv` (inference.dp.config); bench/train.py measures them
against the stock modes they replace, which register here when this module is imported.
"""

from __future__ import annotations

from inference.dp import register_grad_sample_mode

BENCH_MODES = ("hooks", "functorch", "ghost")

for _mode in BENCH_MODES:
    register_grad_sample_mode(_mode, _mode)
