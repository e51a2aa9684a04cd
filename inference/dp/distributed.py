"""DP-SGD past one process: Opacus' DPDDP over torch.distributed, the noise added once for the whole batch.

How Opacus 1.6 spreads one DP-SGD step over R processes (ranks) that share one run:
  1. Sample: DPDataLoader(distributed=True) splits the people into R fixed shards, and each rank
     Poisson-samples its own shard at rate q with its own secretly seeded generator. Everyone is still in
     the step's batch independently with probability q, so the accountant's (noise, q) per step is the
     single-process one.
  2. Clip: each rank clips its own people's gradients to C and sums them (any grad-sample mode).
  3. Noise: DistributedDPOptimizer (and its fast-gradient-clipping twin) adds N(0, (noise * C)^2) on rank 0
     ONLY; the other ranks pass their clipped sums on unchanged.
  4. Average: each rank divides by its share of the public expected batch, E / R (`share_of_batch`); the
     optimizer's all_reduce sums over the ranks and divides by R. Every rank then holds
     (sum of all clipped gradients + one noise draw) / E, the single-process update, and takes the same
     Adam step.
DPDDP broadcasts rank 0's weights when it wraps the module, so every rank starts from the same model. Each
rank's accountant records the same steps; rank 0's result is the run's.

`train_dp_ranks` runs `train_dp` in R local processes (gloo on CPUs, nccl with one GPU a rank). To span
hosts, start one process per rank yourself (torchrun sets RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT),
call `torch.distributed.init_process_group` and then `train_dp`: the hooks below switch on by themselves.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from opacus.distributed import DifferentiallyPrivateDistributedDataParallel as DPDDP
from torch import nn

if TYPE_CHECKING:  # run -> trainer imports this module for its hooks: a runtime import would be a cycle
    from .run import DPResult


@dataclass(frozen=True)
class Ranks:
    """How a run is spread: `processes` ranks on this host, over `backend`, bounded by `timeout_s`."""

    processes: int = 2
    backend: str = "gloo"  # "gloo" on CPUs; "nccl" with one GPU a rank (rank r uses cuda:r)
    timeout_s: float = 6 * 3600  # the whole run; ranks still alive then are killed and the run fails
    threads: int | None = None  # torch threads per rank; None: this host's cores shared out evenly


def active() -> bool:
    """True inside a process group of more than one rank: training then runs distributed."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def wrap(module: nn.Module) -> nn.Module:
    """Opacus' DPDDP around the module (it broadcasts rank 0's weights); the module itself in one process."""
    return DPDDP(module) if active() else module


def share_of_batch(expected_batch_size: float) -> float:
    """This rank's share of the public expected batch: the divisor its optimizer uses before the all_reduce
    averages over the ranks (step 4 above)."""
    return expected_batch_size / dist.get_world_size() if active() else expected_batch_size


def plain_key(key: str) -> str:
    """A wrapped module's state_dict key as the plain model names it (DPDDP adds `module.`)."""
    return key.removeprefix("_module.").removeprefix("module.")


def _rank_main(rank: int, ranks: Ranks, rendezvous: str, results: Any, kwargs: dict[str, Any]) -> None:
    """One rank: join the group, train, and (rank 0) send back the result with the model as arrays."""
    from .run import train_dp  # run -> trainer imports this module for its hooks: a cycle at module level

    torch.set_num_threads(ranks.threads or max(1, (os.cpu_count() or 1) // ranks.processes))
    dist.init_process_group(ranks.backend, init_method=rendezvous, rank=rank, world_size=ranks.processes)
    try:
        config = kwargs["config"]
        if ranks.backend == "nccl":
            config = dataclasses.replace(config, device=f"cuda:{rank}")
        progress = kwargs.get("progress", True) and rank == 0  # one bar, not one a rank
        result = train_dp(**{**kwargs, "config": config, "progress": progress})
        if rank == 0:
            state = {k: v.detach().cpu().numpy() for k, v in result.model.state_dict().items()}
            # The weights as arrays: a module's tensors would be shared memory that dies with this rank.
            fields = {f.name: getattr(result, f.name) for f in dataclasses.fields(result)
                      if f.name != "model"}
            results.put((state, fields))
    finally:
        dist.destroy_process_group()


def train_dp_ranks(*, ranks: Ranks, **train_dp_kwargs: Any) -> DPResult:
    """`train_dp` (same arguments) over `ranks.processes` local processes; rank 0's DPResult.

    The faces travel to the ranks through the processes' pipes, never through a file; `on_step`, if given,
    must be a module-level function (it is sent to each rank).
    """
    from .run import DPResult  # run imports trainer, which imports this module for its hooks

    model = train_dp_kwargs["model"]
    results = mp.get_context("spawn").Queue()
    deadline = time.monotonic() + ranks.timeout_s
    got = None
    with tempfile.TemporaryDirectory(prefix="timeveil-ranks-") as folder:
        rendezvous = f"file://{Path(folder) / 'rendezvous'}"
        procs = mp.start_processes(_rank_main, args=(ranks, rendezvous, results, train_dp_kwargs),
                                   nprocs=ranks.processes, join=False, start_method="spawn")
        try:
            while True:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{ranks.processes} ranks did not finish in {ranks.timeout_s} s")
                if got is None:  # read before joining: rank 0 cannot exit while its result sits in the pipe
                    try:
                        got = results.get(timeout=1.0)
                    except queue.Empty:
                        pass
                if procs.join(timeout=0.1):  # raises ProcessRaisedException when a rank failed
                    break
        finally:
            for process in procs.processes:
                if process.is_alive():
                    process.kill()
    if got is None:
        raise RuntimeError("the ranks ended without rank 0's result")
    state, fields = got
    out = type(model)(model.config)
    out.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()})
    return DPResult(model=out.eval(), **fields)
