"""Per-batch image transforms as whole-tensor ops on the batch's device (airbench style).

Images stay uint8 in memory; each batch is converted, optionally permuted,
augmented, resized and normalized on the fly. Nothing here loops over samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def make_permutation(num_pixels: int, seed: int) -> torch.Tensor:
    """A fixed pixel permutation (int64, CPU) drawn from its own seeded generator."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(num_pixels, generator=generator)


def invert_permutation(permutation: torch.Tensor) -> torch.Tensor:
    """The permutation that undoes `permutation`: x[..., p][..., inverse] == x."""
    inverse = torch.empty_like(permutation)
    inverse[permutation] = torch.arange(permutation.numel(), device=permutation.device)
    return inverse


def permute_pixels(images: torch.Tensor, permutation: torch.Tensor) -> torch.Tensor:
    """Reorder the H*W pixels of every image (and every channel) by `permutation`."""
    n, c, h, w = images.shape
    flat = images.reshape(n, c, h * w)
    return flat[:, :, permutation.to(images.device)].reshape(n, c, h, w)


def random_crop_params(batch_size: int, pad: int, hflip: bool, generator: torch.Generator):
    """Random (dy, dx) crop offsets in [0, 2*pad] and flip flags for one batch, drawn on the CPU.

    Drawing on the CPU from a generator seeded per (epoch, step) keeps augmentation
    identical across devices, process counts and resumes.
    """
    offsets = torch.randint(0, 2 * pad + 1, (batch_size, 2), generator=generator)
    flips = torch.rand(batch_size, generator=generator) < 0.5 if hflip else None
    return offsets, flips


def crop_and_flip(images: torch.Tensor, pad: int, offsets: torch.Tensor, flips: torch.Tensor | None) -> torch.Tensor:
    """Zero-pad by `pad`, take an HxW window at each image's offset, flip where asked."""
    n, c, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad))
    offsets = offsets.to(images.device)
    rows = offsets[:, 0:1] + torch.arange(h, device=images.device)  # (N, H)
    cols = offsets[:, 1:2] + torch.arange(w, device=images.device)  # (N, W)
    if flips is not None:
        flips = flips.to(images.device)
        cols = torch.where(flips[:, None], cols.flip(1), cols)
    batch_index = torch.arange(n, device=images.device)[:, None, None, None]
    channel_index = torch.arange(c, device=images.device)[None, :, None, None]
    return padded[batch_index, channel_index, rows[:, None, :, None], cols[:, None, None, :]]


@dataclass
class BatchTransform:
    """uint8 (N, C, H, W) -> float (N, C, S, S), ready for the model."""

    mean: tuple[float, ...] | None = None  # per channel, on the [0, 1] scale; None: only scale to [0, 1]
    std: tuple[float, ...] | None = None
    resize: int | None = None  # output side length; None keeps the stored size
    permutation: torch.Tensor | None = None  # fixed pixel order over H*W, applied before resizing
    hflip: bool = False  # random horizontal flip when augmenting (only where it keeps the class)
    pad: int = 2  # translate by up to this many pixels

    def __call__(self, images: torch.Tensor, augment_params=None) -> torch.Tensor:
        x = images.float().div_(255)
        if self.permutation is not None:
            x = permute_pixels(x, self.permutation)
        if augment_params is not None:
            x = crop_and_flip(x, self.pad, *augment_params)
        if self.resize is not None and self.resize != x.shape[-1]:
            x = F.interpolate(x, size=(self.resize, self.resize), mode="bilinear", align_corners=False)
        mean, std = self.mean, self.std
        if mean is not None:
            if std is None:
                raise TypeError("BatchTransform: mean is given without std")
            if len(mean) == 1:  # in place, with scalars: no tensors made per batch
                x = x.sub_(mean[0]).div_(std[0])
            else:
                x = x.sub_(x.new_tensor(mean).view(1, -1, 1, 1)).div_(x.new_tensor(std).view(1, -1, 1, 1))
        return x

    def output_size(self, stored_size: int) -> int:
        return self.resize or stored_size
