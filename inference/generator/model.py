"""The age-conditioned generator: a U-Net whose every resolution is modulated by the target age (FiLM)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


@dataclass
class GeneratorConfig:
    name: str = "small"  # preset name; registry versions are named after it (small-v1, ...)
    image_size: int = 128  # side of the square face crop the model sees
    patch: int = 4  # pixel-(un)shuffle factor: the U-Net runs at image_size / patch, the output is re-tiled
    channels: tuple[int, ...] = (48, 96, 128)  # width of each U-Net level, finest first
    blocks: int = 1  # residual blocks per level, in the encoder and again in the decoder
    mid_blocks: int = 2  # residual blocks at the coarsest level, between encoder and decoder
    age_dim: int = 64  # width of the age embedding every block is modulated by
    groups: int = 8  # GroupNorm groups: Opacus cannot clip per-sample gradients through BatchNorm

    @classmethod
    def small(cls) -> GeneratorConfig:
        """128x128 for CPUs: about 2.3M parameters, 0.84 GFLOP a face, tens of ms on two cores."""
        return cls()

    @classmethod
    def base(cls) -> GeneratorConfig:
        """256x256 for GPUs: about 36M parameters, 136 GFLOP a face."""
        return cls(
            name="base",
            image_size=256,
            patch=2,
            channels=(128, 256, 352, 352),
            blocks=2,
            mid_blocks=1,
            age_dim=256,
            groups=32,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields, for the model card."""
        return asdict(self)

    @classmethod
    def from_dict(cls, fields: dict[str, Any]) -> GeneratorConfig:
        """Inverse of to_dict (JSON turns the channel tuple into a list)."""
        return cls(**{**fields, "channels": tuple(fields["channels"])})


def sinusoidal(age: torch.Tensor, dim: int) -> torch.Tensor:
    """Age in years (B,) -> (B, dim) sines and cosines of age/100 at geometric frequencies."""
    half = dim // 2
    # 1 .. 100 cycles per century
    freqs = torch.exp(torch.linspace(0.0, math.log(100.0), half, device=age.device))
    angles = (age.float() / 100.0)[:, None] * freqs[None, :] * math.pi  # (B, half)
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class AgeEmbedding(nn.Module):
    """Target age -> the vector every FiLM layer reads."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, age: torch.Tensor) -> torch.Tensor:
        return self.mlp(sinusoidal(age, self.dim))  # (B, dim)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, the second norm scaled and shifted by the age (FiLM), plus a skip."""

    def __init__(self, c_in: int, c_out: int, age_dim: int, groups: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(min(groups, c_in), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2 = nn.GroupNorm(min(groups, c_out), c_out)
        self.film = nn.Linear(age_dim, 2 * c_out)  # per-channel (scale, shift) from the age embedding
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, age: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (B, C_out, H, W)
        scale, shift = self.film(age)[:, :, None, None].chunk(2, dim=1)  # (B, C_out, 1, 1) each
        h = self.norm2(h) * (1.0 + scale) + shift
        h = self.conv2(F.silu(h))
        return self.skip(x) + h


class Level(nn.Module):
    """The residual blocks of one U-Net resolution."""

    def __init__(self, c_in: int, c_out: int, n_blocks: int, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            ResBlock(c_in if i == 0 else c_out, c_out, cfg.age_dim, cfg.groups) for i in range(n_blocks))

    def forward(self, x: torch.Tensor, age: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, age)
        return x


class Upsample(nn.Module):
    """Nearest-neighbour 2x then a 3x3 conv (no transposed-conv checkerboards)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class AgeGenerator(nn.Module):
    """Image (B, 3, H, W) in [-1, 1] and target age (B,) in years -> the face at that age, same shape.

    The network predicts a residual added to the input: with the output conv zero-initialised an untrained
    model is exactly the identity, so training only has to learn what age changes.
    """

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        ch, p = config.channels, config.patch
        self.age = AgeEmbedding(config.age_dim)
        self.stem = nn.Sequential(nn.PixelUnshuffle(p), nn.Conv2d(3 * p * p, ch[0], 3, padding=1))
        self.down = nn.ModuleList(
            Level(ch[max(i - 1, 0)], ch[i], config.blocks, config) for i in range(len(ch))
        )
        self.downsample = nn.ModuleList(nn.Conv2d(c, c, 3, stride=2, padding=1) for c in ch[:-1])
        self.mid = Level(ch[-1], ch[-1], config.mid_blocks, config)
        # Decoder level i reads its input concatenated with the encoder's output at that resolution.
        self.up = nn.ModuleList(Level(2 * c, c, config.blocks, config) for c in ch)
        self.upsample = nn.ModuleList(Upsample(ch[i], ch[i - 1]) for i in range(1, len(ch)))
        out = nn.Conv2d(ch[0], 3 * p * p, 3, padding=1)
        nn.init.zeros_(out.weight)  # the delta starts at zero: an untrained model is the identity
        nn.init.zeros_(out.bias)  # type: ignore[arg-type]  # bias=True above
        self.head = nn.Sequential(
            nn.GroupNorm(min(config.groups, ch[0]), ch[0]), nn.SiLU(), out, nn.PixelShuffle(p)
        )

    def forward(self, x: torch.Tensor, target_age: torch.Tensor) -> torch.Tensor:
        age = self.age(target_age)  # (B, age_dim)
        h = self.stem(x)  # (B, C0, H/p, W/p)
        skips = []
        for i, level in enumerate(self.down):
            h = level(h, age)  # (B, C_i, H_i, W_i)
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)  # (B, C_i, H_i/2, W_i/2)
        h = self.mid(h, age)
        for i in reversed(range(len(self.up))):
            h = self.up[i](torch.cat([h, skips[i]], dim=1), age)  # (B, C_i, H_i, W_i)
            if i > 0:
                h = self.upsample[i - 1](h)  # (B, C_{i-1}, 2 H_i, 2 W_i)
        return x + self.head(h)  # the delta, re-tiled from (B, 3 p^2, H/p, W/p) to (B, 3, H, W)

    def num_params(self) -> int:
        """Parameter count."""
        return sum(p.numel() for p in self.parameters())


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 RGB images (B, H, W, 3) -> float (B, 3, H, W) in [-1, 1], the models' input convention."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    return x.float() / 127.5 - 1.0


def to_images(x: torch.Tensor) -> np.ndarray:
    """Float (B, 3, H, W) in [-1, 1] -> uint8 RGB images (B, H, W, 3), clamped and rounded."""
    x = ((x.detach().float().clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()
