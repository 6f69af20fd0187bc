"""The in-memory batch iterator and per-batch transforms."""

import pytest
import torch

from cnnlab.data.batches import Batches
from cnnlab.data.transforms import BatchTransform, invert_permutation, make_permutation, permute_pixels


def fake_images(n=50, c=1, size=28):
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, c, size, size), dtype=torch.uint8, generator=generator)
    return images, torch.arange(n) % 10


def collect(batches, epoch=0, start=0):
    return [(step, x, y) for step, x, y in batches.iterate(epoch, start)]


def test_same_seed_same_order_and_every_sample_once():
    images, labels = fake_images()
    labels = torch.arange(50)  # label = sample id
    a = Batches(images, labels, 16, BatchTransform(), seed=3)
    b = Batches(images, labels, 16, BatchTransform(), seed=3)
    ids_a = torch.cat([y for _, _, y in collect(a)])
    ids_b = torch.cat([y for _, _, y in collect(b)])
    assert torch.equal(ids_a, ids_b)
    assert sorted(ids_a.tolist()) == list(range(50))
    other_epoch = torch.cat([y for _, _, y in collect(a, epoch=1)])
    assert not torch.equal(ids_a, other_epoch)
    other_seed = torch.cat([y for _, _, y in collect(Batches(images, labels, 16, BatchTransform(), seed=4))])
    assert not torch.equal(ids_a, other_seed)


def test_partial_batch_kept_or_dropped():
    images, labels = fake_images(50)
    kept = Batches(images, labels, 16, BatchTransform())
    assert len(kept) == 4 and [len(y) for _, _, y in collect(kept)] == [16, 16, 16, 2]
    dropped = Batches(images, labels, 16, BatchTransform(), drop_last=True)
    assert len(dropped) == 3 and [len(y) for _, _, y in collect(dropped)] == [16, 16, 16]


def test_resume_mid_epoch_continues_exactly():
    images, labels = fake_images()
    batches = Batches(images, labels, 8, BatchTransform(), seed=1, augment=True)
    full = collect(batches, epoch=2)
    resumed = collect(batches, epoch=2, start=3)
    assert [s for s, _, _ in resumed] == [3, 4, 5, 6]
    for (_, x1, y1), (_, x2, y2) in zip(full[3:], resumed):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)


def test_shards_of_ranks_make_up_the_global_batch():
    images, labels = fake_images()
    single = collect(Batches(images, labels, 16, BatchTransform(), seed=5, augment=True))
    ranks = [
        collect(Batches(images, labels, 16, BatchTransform(), seed=5, augment=True, rank=r, world_size=2))
        for r in (0, 1)
    ]
    for step, (_, x, y) in enumerate(single):
        x_parts = torch.cat([ranks[0][step][1], ranks[1][step][1]])
        y_parts = torch.cat([ranks[0][step][2], ranks[1][step][2]])
        assert torch.equal(x, x_parts) and torch.equal(y, y_parts)


def test_scale_and_normalize_values():
    images = torch.full((2, 1, 4, 4), 255, dtype=torch.uint8)
    images[1] = 0
    x = BatchTransform()(images)
    assert x.dtype == torch.float32 and x[0].eq(1).all() and x[1].eq(0).all()
    x = BatchTransform(mean=(0.5,), std=(0.25,))(images)
    assert torch.allclose(x[0], torch.full_like(x[0], 2.0)) and torch.allclose(x[1], torch.full_like(x[1], -2.0))


def test_resize_shape_and_constant_image_stays_constant():
    images = torch.full((3, 1, 28, 28), 128, dtype=torch.uint8)
    x = BatchTransform(resize=64)(images)
    assert x.shape == (3, 1, 64, 64)
    assert torch.allclose(x, torch.full_like(x, 128 / 255))


def test_permutation_is_fixed_by_seed_and_invertible():
    p1, p2 = make_permutation(784, seed=7), make_permutation(784, seed=7)
    assert torch.equal(p1, p2) and not torch.equal(p1, make_permutation(784, seed=8))
    assert sorted(p1.tolist()) == list(range(784))
    images, _ = fake_images(4, c=3)
    permuted = permute_pixels(images, p1)
    assert not torch.equal(permuted, images)
    assert torch.equal(permute_pixels(permuted, invert_permutation(p1)), images)
    # The same transform gives the same pixel order to train and test images.
    transform = BatchTransform(permutation=p1)
    assert torch.equal(transform(images[:2]), transform(images)[:2])


def test_augment_translates_within_padding():
    images = torch.zeros((64, 1, 8, 8), dtype=torch.uint8)
    images[:, :, 3:5, 3:5] = 255  # a bright 2x2 square in the middle
    batches = Batches(images, torch.zeros(64, dtype=torch.long), 64, BatchTransform(pad=2), augment=True)
    ((_, x, _),) = collect(batches)
    assert x.shape == images.shape
    assert torch.allclose(x.sum((1, 2, 3)), torch.full((64,), 4.0))  # square never leaves the frame
    positions = {tuple(torch.nonzero(img[0])[0].tolist()) for img in x}
    assert len(positions) > 5  # it really moved, in several ways
    assert all(1 <= r <= 5 and 1 <= c <= 5 for r, c in positions)


def test_flip_only_when_allowed():
    images = torch.zeros((32, 1, 4, 4), dtype=torch.uint8)
    images[:, :, :, 0] = 255  # left column lit
    no_flip = Batches(images, torch.zeros(32, dtype=torch.long), 32, BatchTransform(pad=0), augment=True)
    ((_, x, _),) = collect(no_flip)
    assert x[:, :, :, 0].eq(1).all()
    flip = Batches(images, torch.zeros(32, dtype=torch.long), 32, BatchTransform(pad=0, hflip=True), augment=True)
    ((_, x, _),) = collect(flip)
    flipped = x[:, 0, 0, 3].eq(1)
    assert 0 < int(flipped.sum()) < 32


def test_rejects_non_uint8_images():
    with pytest.raises(ValueError, match="uint8"):
        Batches(torch.zeros(2, 1, 4, 4), torch.zeros(2), 1, BatchTransform())


def test_prepared_inputs_equal_per_batch_transform():
    images, labels = fake_images(40)
    transform = BatchTransform(mean=(0.1307,), std=(0.3081,), resize=32, permutation=make_permutation(784, 1))
    lazy = Batches(images, labels, 16, transform, seed=2, prepare=False)
    ready = Batches(images, labels, 16, transform, seed=2, prepare=True)
    assert lazy.prepared is None and ready.prepared is not None
    for (_, x1, y1), (_, x2, y2) in zip(collect(lazy, 1), collect(ready, 1)):
        assert torch.equal(y1, y2) and torch.allclose(x1, x2, atol=1e-6)
    # augmentation draws per batch, so it is never prepared
    assert Batches(images, labels, 16, BatchTransform(), augment=True).prepared is None


@pytest.mark.parametrize("prepare", [False, True])
def test_each_batch_pairs_its_images_with_their_labels(prepare):
    images, _ = fake_images(50)
    labels = torch.arange(50)  # label = sample id
    transform = BatchTransform(mean=(0.1307,), std=(0.3081,))
    batches = Batches(images, labels, 16, transform, seed=1, prepare=prepare)
    for _, x, y in collect(batches):
        assert torch.equal(x, transform(images[y]))


def test_normalize_is_per_channel_and_exact():
    images, _ = fake_images(4, c=3, size=8)
    mean, std = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
    x = BatchTransform(mean=mean, std=std)(images)
    scaled = images.float() / 255
    expected = (scaled - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.equal(x, expected)
    for c in range(3):  # the one-channel path (scalars) gives the same values as the tensor path
        assert torch.equal(
            BatchTransform(mean=mean[c : c + 1], std=std[c : c + 1])(images[:, c : c + 1]), expected[:, c : c + 1]
        )
