"""DP-SGD over two processes (Opacus' DPDDP, gloo on the CPU) gives the one-process result, noise added once.

Each rank is a real process (torch.multiprocessing, spawn) in a real gloo process group. Both runs take the
same batches (the two ranks split each batch between them) and draw noise from generators seeded alike, on
EVERY rank: were noise added once per rank, the two-process update would carry twice the noise and differ.
Rank 1 also starts from other weights: DPDDP must hand it rank 0's.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from inference import dp
from inference.dp.distributed import Ranks, train_dp_ranks
from inference.generator.model import AgeGenerator
from inference.generator.synthetic import make_dataset
from tests.inference.test_dp import SIZE, TINY

pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook is firing", "ignore:Optimal order is the")
# Index sets of the users in each step's batch: full, odd-sized, one user (rank 1 empty), nobody (noise only).
BATCHES = [[0, 1, 2, 3, 4, 5, 6, 7], [3, 5, 9, 11, 13], [4], [], [2, 8, 30, 31]]
NOISE_SEED = 20261204
WITHIN_S = 240  # both ranks, spawn and torch import included, on a busy 2-core machine


def tiny(seed: int) -> AgeGenerator:
    torch.manual_seed(seed)
    model = AgeGenerator(TINY)
    with torch.no_grad():  # the zero-initialised output conv gets weights, so every layer gets gradient
        model.head[2].weight.normal_(0, 0.05)
    return model


def users() -> tuple[np.ndarray, ...]:
    faces = make_dataset(32, (50.0, 20.0, 80.0), 5, size=SIZE, age_jitter=40.0)
    return faces.images[:, 0], faces.ages[:, 0], faces.images[:, 1:], faces.ages[:, 1:]


def train_on(batches: list[list[int]], data: tuple[np.ndarray, ...], mode: str, rank: int, world: int,
             model: AgeGenerator) -> np.ndarray:
    """Take one DP-SGD step per batch (this rank's share of it) with seeded noise; the flat weights."""
    config = dp.DPConfig(sample_rate=1 / 4, recon_fraction=1.0, lr=1e-3, expected_batch_size=4.0,
                         grad_sample_mode=mode, device="cpu")
    trainer = dp.PrivateTrainer(model=model, faces=data[0], source_ages=data[1], renders=data[2],
                                render_ages=data[3], config=config)
    trainer.optimizer.noise_stream = dp.SecretStream(key=NOISE_SEED)  # the same noise, every rank
    tensors = [torch.from_numpy(np.ascontiguousarray(a)) for a in data]
    for batch in batches:
        mine = torch.tensor(batch[rank::world], dtype=torch.long)
        trainer.step(*(t[mine] for t in tensors))
    assert len(trainer.history()) == 1 and trainer.history()[0][2] == len(batches)  # every step accounted
    weights = trainer.plain_model(model).state_dict()
    return torch.cat([v.reshape(-1) for v in weights.values()]).numpy()


def _rank(rank: int, world: int, rendezvous: str, out: str, data: tuple[np.ndarray, ...], mode: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=rendezvous, rank=rank, world_size=world)
    try:
        flat = train_on(BATCHES, data, mode, rank, world, tiny(seed=rank))  # rank 1 starts elsewhere
        np.save(Path(out) / f"rank{rank}.npy", flat, allow_pickle=False)
    finally:
        dist.destroy_process_group()


def run_two_ranks(tmp_path: Path, data: tuple[np.ndarray, ...], mode: str) -> list[np.ndarray]:
    rendezvous = f"file://{tmp_path / 'rendezvous'}"
    procs = mp.start_processes(_rank, args=(2, rendezvous, str(tmp_path), data, mode), nprocs=2, join=False,
                               start_method="spawn")
    deadline = time.monotonic() + WITHIN_S
    try:
        while not procs.join(timeout=1):
            assert time.monotonic() < deadline, f"two ranks did not finish within {WITHIN_S} s"
    finally:
        for process in procs.processes:
            if process.is_alive():
                process.kill()
    return [np.load(tmp_path / f"rank{r}.npy", allow_pickle=False) for r in range(2)]


@pytest.mark.parametrize("mode", ["bookkeeping", "hooks_conv"])
def test_two_gloo_ranks_give_the_one_process_result_with_the_noise_added_once(tmp_path, mode):
    torch.set_num_threads(1)
    data = users()
    # Given one process taking five DP-SGD steps with seeded noise
    alone = train_on(BATCHES, data, mode, rank=0, world=1, model=tiny(seed=0))
    # When two ranks take the same steps, each on its half of every batch, each with that noise seed
    rank0, rank1 = run_two_ranks(tmp_path, data, mode)
    # Then both ranks hold the same weights, and they are the one-process weights (up to float rounding
    # of a sum taken in two parts); twice the noise, or rank 1's own start, would be far off
    np.testing.assert_array_equal(rank0, rank1)
    np.testing.assert_allclose(rank0, alone, rtol=0, atol=2e-5)
    start = torch.cat([v.reshape(-1) for v in tiny(seed=0).state_dict().values()]).numpy()
    assert np.abs(alone - start).max() > 1e-3  # the steps moved the weights: the comparison means something


def test_train_dp_ranks_runs_a_poisson_sampled_run_and_accounts_it_once(tmp_path):
    data = users()
    config = dp.DPConfig(sample_rate=1 / 4, steps=3, recon_fraction=1.0, lr=1e-3, expected_batch_size=8.0,
                         device="cpu")
    result = train_dp_ranks(ranks=Ranks(processes=2, timeout_s=WITHIN_S, threads=1), model=tiny(seed=0),
                            faces=data[0], source_ages=data[1], renders=data[2], render_ages=data[3],
                            config=config, progress=False)
    assert result.history == [(config.noise_multiplier, config.sample_rate, 3)]
    assert result.epsilon_spent == pytest.approx(config.epsilon())
    assert isinstance(result.model, AgeGenerator) and not result.model.training
    moved = [not torch.equal(a, b) for a, b in zip(result.model.state_dict().values(),
                                                   tiny(seed=0).state_dict().values(), strict=True)]
    assert any(moved)
