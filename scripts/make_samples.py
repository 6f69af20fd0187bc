"""Rebuild the embedded samples `src/cnnlab/data/samples/{mnist,fashion-mnist}-sample.npz`.

Each is a stratified draw from the real (checksum-verified) dataset: 200 train
and 50 test images per class, picked with a fixed seed and kept in their
original order, stored with `np.savez_compressed` as uint8 arrays.

    python scripts/make_samples.py --data-dir ../shared/datasets
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from cnnlab.data import get_spec, load_dataset

SEED = 0  # fixed, so a rebuild picks the same images
TRAIN_PER_CLASS = 200
TEST_PER_CLASS = 50
OUT_DIR = Path(__file__).resolve().parent.parent / "src" / "cnnlab" / "data" / "samples"


def stratified(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of `per_class` distinct samples of every class."""
    picks = [rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in np.unique(labels)]
    return np.sort(np.concatenate(picks))


def make_sample(parent: str, data_dir: str | None, out_dir: Path) -> Path:
    data = load_dataset(parent, data_dir=data_dir, download=False)
    rng = np.random.default_rng(SEED)
    train = stratified(data.train_labels.numpy(), TRAIN_PER_CLASS, rng)
    test = stratified(data.test_labels.numpy(), TEST_PER_CLASS, rng)
    out = out_dir / f"{parent}-sample.npz"
    np.savez_compressed(
        out,
        train_images=data.train_images.numpy()[train],
        train_labels=data.train_labels.numpy()[train].astype(np.uint8),
        test_images=data.test_images.numpy()[test],
        test_labels=data.test_labels.numpy()[test].astype(np.uint8),
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="folder holding mnist/ and fashion-mnist/ (default: the usual search)")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="where to write the .npz files")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name in ("mnist-sample", "fashion-mnist-sample"):
        out = make_sample(get_spec(name).parent, args.data_dir, args.out)
        print(f"{out}: {out.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
