"""A validation split held out of the training images: stratified by class, seeded."""

from __future__ import annotations

import torch

# Keeps the split's generator apart from the ones that seed the order and the augmentation of the same seed.
_SPLIT_SALT = 7_919


def stratified_split(labels: torch.Tensor, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, validation indices), both sorted: `count` images held out, each class in proportion.

    Each class gets its share of `count` rounded down, and the images left over go to the classes with the
    largest remainders, so the split has exactly `count` images and the class mix of the whole set.
    """
    labels = labels.cpu()
    if not 0 < count < len(labels):
        raise ValueError(f"cannot hold out {count} of {len(labels)} images")
    classes, sizes = torch.unique(labels, return_counts=True)
    exact = sizes.double() * count / len(labels)
    shares = exact.floor().long()
    extra = count - int(shares.sum())
    shares[torch.argsort(exact - shares, descending=True, stable=True)[:extra]] += 1
    generator = torch.Generator().manual_seed(seed * _SPLIT_SALT + count)
    held = []
    for cls, share in zip(classes.tolist(), shares.tolist()):
        members = (labels == cls).nonzero().flatten()
        held.append(members[torch.randperm(len(members), generator=generator)[:share]])
    val = torch.cat(held).sort().values
    keep = torch.ones(len(labels), dtype=torch.bool)
    keep[val] = False
    return keep.nonzero().flatten(), val
