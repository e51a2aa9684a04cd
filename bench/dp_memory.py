"""Where a DP step's peak memory comes from: a timeline of torch's CPU allocator, phase by phase.

    .venv/bin/python bench/dp_memory.py [--size 128] [--batch 16] [--mode bookkeeping]

bench/train.py measures the peak as the growth of the process' peak RSS, which moves by about 0.05x between
runs. This one is exact and repeatable: torch.profiler(profile_memory=True) records every allocation and
free of one step (after a warm-up step, so Adam's state already exists) on the same model and batch as
bench/train.py, with the Python stack of each. It prints, for a non-private step and a DP step, the live
memory above the step's start at its peak, the phase each peak falls in (forward, backward, per-layer norms,
clipped sum, the optimizer's sum and scaling, noise, Adam) and the stack there; then the DP / non-private
ratio of the two peaks.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch._C._profiler import _EventType  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from bench import dp_modes  # noqa: E402, F401 - registers Opacus' stock modes for --mode
from bench.train import PlainStep, random_step_data  # noqa: E402
from inference import dp  # noqa: E402


def phase(stack: list[str]) -> str:
    """The phase of an allocation, from its innermost frame that names one."""
    for frame in reversed(stack):
        file, func = frame.split("(")[0], frame.split(": ")[-1]
        if func in ("add_noise", "normal_like"):
            return "noise"
        if file.endswith("adam.py"):
            return "Adam"
        if func == "zero_grad":
            return "zero_grad"
        if "opacus/optimizers" in file:
            return "optimizer: clip, sum, scale"
        if file.endswith("samplers.py") and func not in ("forward", "_record", "clipped_backward"):
            return "clipped sum" if func in ("add", "add_kept", "_accumulate") else "per-layer norms"
        if "autograd" in frame or "Backward" in frame or func == "backward":
            return "backward"
        if func == "forward":
            return "forward"
    return "other"


def allocations(prof: Any) -> list[tuple[int, int, list[str]]]:
    """(time, bytes (+ alloc, - free), stack) of every CPU allocator event, in time order."""
    out: list[tuple[int, int, list[str]]] = []

    def walk(node: Any, stack: list[str]) -> None:
        if node.tag == _EventType.Allocation:
            out.append((node.start_time_ns, node.extra_fields.alloc_size, stack))
            return
        if node.tag in (_EventType.PyCall, _EventType.TorchOp):
            stack = [*stack, node.name]
        for child in node.children:
            walk(child, stack)

    for root in prof.profiler.kineto_results.experimental_event_tree():
        walk(root, [])
    return sorted(out, key=lambda a: a[0])


def timeline(step: Any, batch: tuple[torch.Tensor, ...]) -> tuple[float, dict[str, float], list[str]]:
    """Peak live MB above the step's start, each phase's own peak, and the stack at the peak."""
    step(*batch)  # warm-up: Adam's state and every lazily built buffer exist before the measured step
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True, with_stack=True) as prof:
            step(*batch)
    live, peak, at = 0, 0, []
    phases: dict[str, float] = {}
    for _, size, stack in allocations(prof):
        live += size
        name = phase(stack)
        phases[name] = max(phases.get(name, 0.0), live / 2**20)
        if live > peak:
            peak, at = live, stack
    return peak / 2**20, phases, at


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--mode", default=dp.DEFAULT_GRAD_SAMPLE_MODE)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model, (faces, ages, renders, render_ages), batch = random_step_data(args.size, args.batch)
    n = len(faces)
    config = dp.DPConfig(sample_rate=1 / 4, grad_sample_mode=args.mode, expected_batch_size=n / 4,
                         device="cpu")
    trainer = dp.PrivateTrainer(model=model, faces=faces, source_ages=ages, renders=renders,
                                render_ages=render_ages, config=config)
    print(f"== CPU allocator peak of one step above its start: small generator at {args.size}x{args.size}, "
          f"batch {args.batch}, mode {args.mode} ==")
    peaks = {}
    for name, step in (("non-private", PlainStep(model, config, torch.device("cpu"))), ("DP", trainer.step)):
        peak, phases, at = timeline(step, batch)
        peaks[name] = peak
        print(f"-- {name}: peak {peak:.1f} MB, in {phase(at)}; each phase's peak (MB):")
        for p, mb in sorted(phases.items(), key=lambda kv: -kv[1]):
            print(f"   {mb:8.1f}  {p}")
        print("   stack at the peak: " + " <- ".join(
            f.split("/")[-1] for f in reversed(at) if "torch/nn/modules" not in f)[:600])
    print(f"DP / non-private peak: {peaks['DP'] / peaks['non-private']:.2f}x")


if __name__ == "__main__":
    main()
