"""Batched tensor augmentation (the paper's App. F): per-channel normalization, reflect-pad crop +
flip (CIFAR), random-resized crop + flip (Tiny-ImageNet), on whole (N, C, H, W) batches."""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _mix(*xs: int) -> int:
    """A 63-bit seed from several integers (stable across runs and platforms)."""
    h = hashlib.sha256(json.dumps(list(xs)).encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


@dataclass
class Normalize:
    """uint8 (or float) batch -> float32, per-channel (x/255 - mean) / std. ``scale=None``: no /255."""

    mean: torch.Tensor
    std: torch.Tensor
    scale: float | None = 255.0

    def __call__(self, x: torch.Tensor, g: torch.Generator | None = None) -> torch.Tensor:
        # (x/s - mean)/std = x * 1/(s*std) + (-mean/std): one fused pass
        shape = (1, -1) + (1,) * (x.dim() - 2)
        mul = (1.0 / ((self.scale or 1.0) * self.std)).to(x.device).view(shape)
        add = (-self.mean / self.std).to(x.device).view(shape)
        return torch.addcmul(add, x.float(), mul)


@dataclass
class CropFlip:
    """Random crop with reflect padding + horizontal flip, on a whole (N, C, H, W) batch."""

    norm: Normalize
    pad: int = 4
    flip: bool = True

    def __call__(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        # one gather per batch: the crop offsets and the flip are folded into a flat index into
        # the reflect-padded images (normalization is per-channel affine, so it commutes; applied last)
        n, c, h, w = x.shape
        dev, p = x.device, self.pad
        xf = x.float()
        if p:
            xf = F.pad(xf, (p,) * 4, mode="reflect")
        oy = torch.randint(0, 2 * p + 1, (n,), generator=g, device=g.device).to(dev)
        ox = torch.randint(0, 2 * p + 1, (n,), generator=g, device=g.device).to(dev)
        cols = torch.arange(w, device=dev).expand(n, w)
        if self.flip:
            f = (torch.rand(n, generator=g, device=g.device) < 0.5).to(dev)
            cols = torch.where(f[:, None], w - 1 - cols, cols)
        rows = oy[:, None] + torch.arange(h, device=dev)
        idx = (rows[:, :, None] * (w + 2 * p) + (ox[:, None] + cols)[:, None, :]).view(n, 1, h * w)
        out = xf.view(n, c, -1).gather(2, idx.expand(n, c, h * w)).view(n, c, h, w)
        return self.norm(out)


@dataclass
class RandomResizedCropFlip:
    """Random-resized crop (scale, log-uniform aspect ratio) to ``size`` + flip, batched with
    ``affine_grid``/``grid_sample`` (bilinear)."""

    norm: Normalize
    size: int
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True

    def __call__(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        n, _, h, w = x.shape
        dev = x.device
        r = lambda: torch.rand(n, generator=g, device=g.device).to(dev)  # noqa: E731
        area = self.scale[0] + (self.scale[1] - self.scale[0]) * r()
        logr = math.log(self.ratio[0]) + (math.log(self.ratio[1]) - math.log(self.ratio[0])) * r()
        ar = torch.exp(logr)
        cw = torch.sqrt(area * ar).clamp(max=1.0)  # crop width / image width
        ch = torch.sqrt(area / ar).clamp(max=1.0)
        cx = (1 - cw) * (2 * r() - 1)  # crop centre in [-1, 1] coordinates, crop stays inside
        cy = (1 - ch) * (2 * r() - 1)
        sx = cw * torch.where(r() < 0.5, -1.0, 1.0) if self.flip else cw
        theta = torch.zeros(n, 2, 3, device=dev)
        theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sx, cx, ch, cy
        grid = F.affine_grid(theta, (n, x.shape[1], self.size, self.size), align_corners=False)
        return F.grid_sample(self.norm(x), grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _stats(x: torch.Tensor, uint8: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean/std of a training tensor (on [0, 1] for uint8 images)."""
    xf = x.float() / (255.0 if uint8 else 1.0)
    dims = [0] + list(range(2, x.dim()))
    if x.dim() == 2:  # (N, L) signals: one channel
        return xf.mean().view(1), xf.std().clamp_min(1e-8).view(1)
    return xf.mean(dims), xf.std(dims).clamp_min(1e-8)
