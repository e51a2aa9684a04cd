"""The DP noise's secrecy (issue 20.1): 128-bit keys, the key never kept, every draw from a keyed stream;
and the Opacus adapter pinned to the version it mirrors (issue 21.8)."""

from __future__ import annotations

import copy
import hashlib
import inspect

import opacus
import pytest
import torch
from opacus.optimizers import (
    DistributedDPOptimizer,
    DistributedDPOptimizerFastGradientClipping,
    DPOptimizer,
    DPOptimizerFastGradientClipping,
)
from opacus.privacy_engine import PrivacyEngine
from torch import nn
from torch.utils.data import TensorDataset

from inference import dp
from inference.dp import opacus_adapter
from inference.dp.randomness import KEY_BITS, PoissonSampler, SecretStream


def test_two_keys_differing_only_above_bit_64_draw_different_noise():
    key = (1 << 127) | 0x1234_5678_9ABC_DEF0
    reference = torch.zeros(1000)
    base = SecretStream(key=key).normal_like(1.0, reference)
    for bit in (64, 100, 127):
        assert not torch.equal(base, SecretStream(key=key ^ (1 << bit)).normal_like(1.0, reference))
    assert torch.equal(base, SecretStream(key=key).normal_like(1.0, reference))  # the key is all there is
    # What the stream replaced: torch's CPU generator keeps 32 bits of its seed
    seed = (1 << 40) | 12345
    assert torch.equal(torch.randn(8, generator=torch.Generator().manual_seed(seed)),
                       torch.randn(8, generator=torch.Generator().manual_seed(seed % 2**32)))
    assert KEY_BITS >= 128


def test_a_stream_never_shows_or_ships_its_key(monkeypatch):
    monkeypatch.setattr(dp.randomness, "fresh_key", lambda: 0xDEADBEEF_CAFEF00D_12345678_9ABCDEF0)  # known
    stream = SecretStream()
    assert "deadbeef" not in repr(stream).lower() and str(0xDEADBEEF_CAFEF00D_12345678_9ABCDEF0) not in repr(
        stream)
    assert not [v for v in vars(stream).values() if isinstance(v, int)]
    with pytest.raises(TypeError):
        copy.deepcopy(stream)  # what pickling would do: refused


def test_the_trainings_noise_and_sampling_depend_on_key_bits_above_64(monkeypatch):
    # Given the DP code path with its keys fixed (fresh_key returns what the test says: a spy would be random)
    def noisy_steps(key: int) -> tuple[torch.Tensor, list[list[int]]]:
        monkeypatch.setattr(dp.randomness, "fresh_key", lambda: key)
        layer = nn.Linear(4, 1, bias=False)
        nn.init.zeros_(layer.weight)
        config = dp.DPConfig(noise_multiplier=1.0, sample_rate=0.5, steps=1, delta=1e-5,
                             expected_batch_size=1.0, lr=1.0)

        class Loss(nn.Module):
            reduction = "mean"

            def forward(self, out):
                per_sample = out.sum(dim=1)
                return per_sample.mean() if self.reduction == "mean" else per_sample

        parts = dp.trainer.make_private(module=layer, dataset=TensorDataset(torch.zeros(64, 4)),
                                         config=config, objective=Loss(), device=torch.device("cpu"))
        batches = [b for _, b in zip(range(3), parts.loader.batch_sampler, strict=False)]
        (x,) = next(iter(parts.loader))
        parts.criterion(parts.module(x)).backward()  # zero inputs: the gradient is the noise alone
        parts.optimizer.step()
        return layer.weight.detach().clone(), batches

    key = (1 << 90) | 7
    noise, batches = noisy_steps(key)
    assert noise.abs().sum() > 0
    again, same_batches = noisy_steps(key)
    assert torch.equal(noise, again) and batches == same_batches
    other, other_batches = noisy_steps(key ^ (1 << 100))
    assert not torch.equal(noise, other) and batches != other_batches


def test_poisson_sampling_draws_at_the_rate():
    sampler = PoissonSampler(num_samples=2000, sample_rate=0.1, stream=SecretStream())
    sizes = [len(b) for b in sampler]
    assert len(sizes) == 10 and all(140 < s < 260 for s in sizes)  # 200 +- 4.2 sd


# ---- the Opacus adapter: pinned to the version whose private methods it calls and whose add_noise it
# mirrors. An Opacus upgrade fails here: re-read inference/dp/opacus_adapter.py, then update the pins.

MIRRORED = {
    DPOptimizer.add_noise: "DPOptimizer.add_noise",
    DPOptimizerFastGradientClipping.add_noise: "DPOptimizerFastGradientClipping.add_noise",
    DistributedDPOptimizer.add_noise: "DistributedDPOptimizer.add_noise",
    DistributedDPOptimizerFastGradientClipping.add_noise:
        "DistributedDPOptimizerFastGradientClipping.add_noise",
    PrivacyEngine._prepare_model: "PrivacyEngine._prepare_model",
    PrivacyEngine._prepare_optimizer: "PrivacyEngine._prepare_optimizer",
    PrivacyEngine._prepare_criterion: "PrivacyEngine._prepare_criterion",
}
PINNED = {  # sha256 of each method's source in Opacus 1.6.0, first 16 hex digits
    "DPOptimizer.add_noise": "4380705bf5d8f89b",
    "DPOptimizerFastGradientClipping.add_noise": "bb77e6ade482875a",
    "DistributedDPOptimizer.add_noise": "a0d22cac10271631",
    "DistributedDPOptimizerFastGradientClipping.add_noise": "a0d22cac10271631",
    "PrivacyEngine._prepare_model": "17e8542270903464",
    "PrivacyEngine._prepare_optimizer": "64580519904ec063",
    "PrivacyEngine._prepare_criterion": "945866f126ad078f",
}


def test_the_adapter_is_pinned_to_the_opacus_it_mirrors():
    assert opacus.__version__ == opacus_adapter.OPACUS_VERSION
    sources = {name: hashlib.sha256(inspect.getsource(fn).encode()).hexdigest()[:16]
               for fn, name in MIRRORED.items()}
    assert sources == PINNED


@pytest.mark.parametrize("cls", [DPOptimizer, DPOptimizerFastGradientClipping])
def test_keyed_noise_adds_what_opacus_adds_given_the_same_noise(cls):
    # Opacus' own add_noise with a torch generator, ours with a stream that hands out the same draws
    param = nn.Parameter(torch.zeros(5))

    def prepared(opt_cls):
        opt = opt_cls(torch.optim.SGD([param], lr=1.0), noise_multiplier=2.0, max_grad_norm=0.5,
                      expected_batch_size=1, generator=torch.Generator().manual_seed(3))
        param.summed_grad = torch.arange(5.0)
        return opt

    ours = prepared(cls)
    ours.__class__ = type("K", (opacus_adapter.KeyedNoise, cls), {})

    class Replay:
        def normal_like(self, std, reference):
            return torch.normal(0.0, std, reference.shape, generator=torch.Generator().manual_seed(3))

    ours.noise_stream = Replay()
    ours.add_noise()
    mine = param.grad.clone()
    theirs = prepared(cls)
    theirs.add_noise()
    assert torch.equal(mine, param.grad)
