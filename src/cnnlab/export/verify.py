"""Check an exported file against the PyTorch model it came from, on real test images.

Both models see the same batch, preprocessed with the run's own transform. The
export passes when every top-1 prediction agrees (a flip between two classes
whose reference scores are within the tolerance counts as a tie) and the
largest score difference is within `atol` scaled by the scores' magnitude.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from cnnlab.data import DATASETS, load_dataset
from cnnlab.errors import CnnlabError, DataError
from cnnlab.export.deps import ONNX_RUN, require
from cnnlab.export.runtime import ExportedModel, format_of, open_exported
from cnnlab.runfolder.own import run_data
from cnnlab.runs.load import LoadedRun

DEFAULT_COUNT = 32  # images per verification batch
DEFAULT_ATOL = 1e-4  # allowed |difference| per unit of the largest |score| (at least 1)


@dataclass
class Verification:
    passed: bool
    max_abs_diff: float
    tolerance: float
    agree: int  # images whose top-1 class matches exactly
    count: int
    source: str  # where the images came from, e.g. "32 test images of mnist-sample"
    reason: str = ""  # why it failed ("" when it passed)

    def summary(self) -> str:
        result = "passed" if self.passed else f"FAILED ({self.reason})"
        return (
            f"verification {result}: {self.source}; top-1 agrees on {self.agree}/{self.count}, "
            f"max abs diff {self.max_abs_diff:.3g} (tolerance {self.tolerance:.3g})"
        )

    def to_dict(self) -> dict:
        return {
            "passed": self.passed,
            "max_abs_diff": self.max_abs_diff,
            "tolerance": self.tolerance,
            "top1_agree": self.agree,
            "images": self.count,
            "source": self.source,
        }


def _spread(count: int, total: int) -> torch.Tensor:
    """`count` indices spread evenly over `total` (the test splits are not shuffled by class)."""
    return torch.linspace(0, total - 1, min(count, total)).round().long().unique()


def verification_images(trained: LoadedRun, count: int = DEFAULT_COUNT, seed: int = 0) -> tuple[torch.Tensor, str]:
    """uint8 test images of the run's dataset and where they came from.

    A dataset missing on this machine falls back to the embedded sample of the
    same family, then to a seeded random batch; the description says which.
    """
    name, spec = trained.config.dataset, trained.spec
    sample = next((s.name for s in DATASETS.values() if s.parent == name and s.format == "embedded"), None)
    tried = []
    for candidate in (name, sample):
        if candidate is None:
            continue
        try:
            data = (
                run_data(trained.config, download=False)
                if candidate == name
                else load_dataset(candidate, None, download=False)
            )
        except (DataError, CnnlabError):  # your own data moved away is as good as missing here
            tried.append(candidate)
            continue
        images = data.test_images[_spread(count, len(data.test_images))]
        missing = f" ({name} is not on this machine)" if tried else ""
        return images, f"{len(images)} test images of {candidate}{missing}"
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(
        0, 256, (count, spec.channels, spec.image_size, spec.image_size), generator=generator, dtype=torch.uint8
    )
    return images, f"{count} seeded random images ({name} is not on this machine and has no embedded sample)"


def compare(
    reference: torch.Tensor, exported: torch.Tensor, atol: float = DEFAULT_ATOL
) -> tuple[bool, float, float, str]:
    """(passed, max abs diff, tolerance, reason) for two (N, K) score tensors."""
    if exported.shape != reference.shape:
        return False, float("inf"), 0.0, f"output shape {tuple(exported.shape)} != {tuple(reference.shape)}"
    tolerance = atol * max(1.0, float(reference.abs().max()))
    if not torch.isfinite(exported).all():
        return False, float("inf"), tolerance, "non-finite scores"
    diff = float((exported - reference).abs().max())
    ref_top, exp_top = reference.argmax(1), exported.argmax(1)
    rows = torch.arange(len(reference))
    margins = reference[rows, ref_top] - reference[rows, exp_top]  # 0 where they agree
    flips = int((margins > tolerance).sum())
    if flips:
        return False, diff, tolerance, f"top-1 differs on {flips} image(s)"
    if diff > tolerance:
        return False, diff, tolerance, "scores differ beyond tolerance"
    return True, diff, tolerance, ""


@torch.inference_mode()
def verify_export(
    path: str | Path,
    trained: LoadedRun,
    *,
    format: str | None = None,
    images: torch.Tensor | None = None,
    count: int = DEFAULT_COUNT,
    atol: float = DEFAULT_ATOL,
) -> Verification:
    """Run the exported file and `trained.model` on the same preprocessed images and compare the scores.

    `images`: uint8 (N, C, H, W) at the dataset's stored size; default: `count` test images
    (see `verification_images`). A file that cannot be loaded or run fails verification.
    """
    if images is None:
        images, source = verification_images(trained, count)
    else:
        source = f"{len(images)} given images"
    format = format or format_of(path)
    if format == "onnx":
        require(ONNX_RUN, "verifying an ONNX export")  # a missing package is the user's to fix, not a failed export
    x = trained.transform()(images)
    reference = trained.model(x).float()
    n = len(images)
    try:
        exported: ExportedModel = open_exported(path, format)
        scores = exported(x)
        # A batch-agnostic file must also take a single image.
        if exported.batch is None and n > 1:
            reference = torch.cat([reference, reference[:1]])
            scores = torch.cat([scores, exported(x[:1])])
    except CnnlabError as err:
        return Verification(False, float("inf"), 0.0, 0, n, source, str(err))
    except Exception as err:  # noqa: BLE001 - a runtime that chokes on the file is a failed export
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        return Verification(False, float("inf"), 0.0, 0, n, source, f"running it failed: {first}")
    passed, diff, tolerance, reason = compare(reference, scores, atol)
    agree = int((reference[:n].argmax(1) == scores[:n].argmax(1)).sum()) if scores.shape == reference.shape else 0
    return Verification(passed, diff, tolerance, agree, n, source, reason)
