"""What DP fine-tuning minimises, per person: DPObjective, and the images as the generator takes them."""

from __future__ import annotations

import math

import torch
from torch import nn


class DPObjective(nn.Module):
    """Per-sample L1 to a target image: the face itself at its own age, or the teacher's rendering of it.

    For row i the generator ran at age a_i: its own source age when `recon[i]` (target: the input), else the
    age of one of its teacher renderings (target: that rendering; the teacher is the mesh-placed aging
    layers). loss_i = mean |out_i - target_i|. No age estimator scores the output: a few painted lines move
    one by years, and a generator trained against it learns to fool it rather than to age a face.
    `reduction` is what Opacus' ghost-clipping wrapper toggles to get the per-sample vector.
    Swappable: PrivateTrainer takes any module with this forward signature and `reduction` attribute.
    """

    def __init__(self) -> None:
        super().__init__()
        self.reduction = "mean"
        self.last: dict[str, float] = {}

    def forward(self, out: torch.Tensor, target: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
        per_sample = (out - target).abs().mean(dim=(1, 2, 3))  # (B,)
        with torch.no_grad():
            rows = recon.sum().item()  # rows asked for their own age this step
            taught = len(recon) - rows
            self.last = {"loss": per_sample.mean().item(),
                         "recon": (recon * per_sample).sum().item() / rows if rows else math.nan,
                         "teacher": ((1 - recon) * per_sample).sum().item() / taught if taught else math.nan}
        return per_sample.mean() if self.reduction == "mean" else per_sample


def _to_model(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, H, W) in [-1, 1], contiguous.

    Contiguous matters: from the permute it would be channels-last strided, and Opacus 1.6's unfold2d (hooks
    and ghost conv grad samplers) reads such activations as if they were NCHW, silently giving wrong
    per-sample conv gradients.
    """
    return (images.to(device).permute(0, 3, 1, 2).float() / 127.5 - 1.0).contiguous()
