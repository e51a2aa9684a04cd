"""The secret randomness of every DP mechanism: one stream keyed with 128 bits from the OS CSPRNG.

torch's CPU generator keeps only the low 32 bits of its seed (seeds s and s mod 2**32 draw the same noise),
so an observer of the noisy gradients could search 2**32 seeds, recover the noise and read every
participant's membership (issue 20.1). Sampling, gradient noise, the objective's coins and the released
count's noise are therefore all drawn from numpy's Philox-4x64 counter generator whose 128-bit key comes
from `secrets` (numpy's own generator, not ours); the draws are put onto torch tensors afterwards.

The key exists only inside the bit generator: it is never returned, logged or stored, and a fresh one is
drawn for every stream. Philox is a counter-based generator built for statistical quality, with no
published key-recovery attack, but it is not a vetted cryptographic cipher (docs/training.md says so).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler

KEY_BITS = 128  # Philox-4x64's whole key: a search over it is out of reach


def fresh_key() -> int:
    """KEY_BITS bits from the OS CSPRNG; callers hand it to a bit generator and keep it nowhere else."""
    return secrets.randbits(KEY_BITS)


class SecretStream:
    """Draws from Philox keyed with KEY_BITS fresh bits from `secrets`; `key` is for tests only."""

    def __init__(self, key: int | None = None) -> None:
        # Kept only inside the bit generator; no attribute of ours holds it.
        self._rng = np.random.Generator(np.random.Philox(key=fresh_key() if key is None else key))

    def __repr__(self) -> str:
        return "SecretStream(<key withheld>)"

    def __getstate__(self) -> None:
        raise TypeError("a SecretStream is never pickled: its key would travel with it")

    def normal_like(self, std: float, reference: torch.Tensor) -> torch.Tensor:
        """Gaussian noise N(0, std^2) shaped, typed and placed like `reference`."""
        draw = self._rng.standard_normal(reference.numel(), dtype=np.float32)
        noise = torch.from_numpy(draw).view(reference.shape).to(device=reference.device,
                                                                 dtype=reference.dtype)
        return noise.mul_(std)

    def normal(self, std: float) -> float:
        """One draw of N(0, std^2)."""
        return float(self._rng.normal(0.0, std))

    def bernoulli(self, n: int, p: float) -> np.ndarray:
        """n independent coins, True with probability p."""
        return self._rng.random(n) < p

    def integers(self, high: int, n: int) -> np.ndarray:
        """n integers uniform in [0, high)."""
        return self._rng.integers(high, size=n)


class PoissonSampler(Sampler[list[int]]):
    """Poisson sampling: each of `num_samples` rows joins each batch independently with probability
    `sample_rate`, 1/sample_rate batches a pass (Opacus' UniformWithReplacementSampler, from a
    SecretStream). With several ranks each samples only its shard, rows rank, rank + world_size, ...: the
    union over ranks is one Poisson batch of all the rows."""

    def __init__(self, *, num_samples: int, sample_rate: float, stream: SecretStream, rank: int = 0,
                 world_size: int = 1) -> None:
        if num_samples < 1 or not 0.0 < sample_rate <= 1.0:
            raise ValueError(f"num_samples={num_samples} must be >= 1, sample_rate={sample_rate} in (0, 1]")
        self.num_samples, self.sample_rate, self.stream = num_samples, sample_rate, stream
        self.rows = np.arange(rank, num_samples, world_size)
        self.steps = int(1 / sample_rate)

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[int]]:
        for _ in range(self.steps):
            yield self.rows[self.stream.bernoulli(len(self.rows), self.sample_rate)].tolist()
