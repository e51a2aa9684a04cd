"""A small CNN that reads a face's age in years; it scores the generator and guides DP fine-tuning."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F


@dataclass
class EstimatorConfig:
    name: str = "age-estimator"  # registry versions are named after it
    image_size: int = 128  # side of the square face crop it reads
    channels: tuple[int, ...] = (24, 48, 96, 128)  # width after each stride-2 stage
    groups: int = 8  # GroupNorm groups, so Opacus can train it too

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields, for the model card."""
        return asdict(self)

    @classmethod
    def from_dict(cls, fields: dict[str, Any]) -> EstimatorConfig:
        """Inverse of to_dict."""
        return cls(**{**fields, "channels": tuple(fields["channels"])})


class Stage(nn.Module):
    """A stride-2 conv that halves the resolution, then a residual 3x3 conv."""

    def __init__(self, c_in: int, c_out: int, groups: int) -> None:
        super().__init__()
        self.down = nn.Conv2d(c_in, c_out, 3, stride=2, padding=1)
        self.norm1 = nn.GroupNorm(min(groups, c_out), c_out)
        self.conv = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.norm2 = nn.GroupNorm(min(groups, c_out), c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.norm1(self.down(x)))  # (B, C_out, H/2, W/2)
        return F.silu(h + self.norm2(self.conv(h)))


class AgeEstimator(nn.Module):
    """Face (B, 3, H, W) in [-1, 1] -> age in years (B,)."""

    def __init__(self, config: EstimatorConfig) -> None:
        super().__init__()
        self.config = config
        widths = (3, *config.channels)
        self.stages = nn.Sequential(*(Stage(widths[i], widths[i + 1], config.groups)
                                      for i in range(len(config.channels))))
        self.head = nn.Linear(config.channels[-1], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stages(x)  # (B, C, H/16, W/16)
        h = h.mean(dim=(2, 3))  # (B, C): global average pool
        return 50.0 + 50.0 * self.head(h).squeeze(1)  # (B,) years; the head starts near mid-life

    def num_params(self) -> int:
        """Parameter count."""
        return sum(p.numel() for p in self.parameters())
