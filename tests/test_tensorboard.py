"""`TensorBoardLogger`: event files hold the logged scalars, confusion figure and image grids."""

import sys

import pytest
import torch

from cnnlab.errors import CnnlabError
from cnnlab.training.tensorboard import SCALARS, TensorBoardLogger, require_tensorboard

CLASSES = [str(i) for i in range(10)]


def row(epoch: int, test_acc: float | None = 0.5) -> dict:
    return {
        "epoch": epoch,
        "step": 10 * epoch,
        "train_loss": 2.0 / epoch,
        "train_acc": 0.3 + 0.1 * epoch,
        "test_loss": None if test_acc is None else 1.5 / epoch,
        "test_acc": test_acc,
        "lr": 0.1 / epoch,
        "epoch_seconds": 1.25,
        "images_per_s": 800.0,
    }


def read_events(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    return events


def scalars(events, tag) -> list[tuple[int, float]]:
    return [(e.step, round(e.value, 6)) for e in events.Scalars(tag)]


@pytest.mark.slow
def test_scalars_figures_and_images_are_in_the_event_file(tmp_path):
    pytest.importorskip("tensorboard")
    confusion = torch.diag(torch.full((10,), 5)) + 1
    images = torch.randint(0, 256, (16, 1, 28, 28), dtype=torch.uint8)
    with TensorBoardLogger(tmp_path, config={"model": "convnet", "lr": 0.1}) as logger:
        logger.log_epoch(1, row(1, test_acc=None))  # an epoch without evaluation: no test scalars
        logger.log_epoch(2, row(2, test_acc=0.75), confusion, CLASSES, images)
        logger.log_epoch(
            3,
            row(3, test_acc=0.8),
            confusion,
            CLASSES,
            images[:8],
            labels=torch.arange(8),
            predicted=torch.tensor([0, 1, 2, 3, 4, 5, 6, 0]),
            probs=torch.full((8,), 0.9),
        )
    events = read_events(tmp_path / "tensorboard")
    tags = events.Tags()
    assert set(SCALARS.values()) <= set(tags["scalars"])
    assert scalars(events, "loss/train") == [(1, 2.0), (2, 1.0), (3, round(2 / 3, 6))]
    assert scalars(events, "accuracy/train") == [(1, 0.4), (2, 0.5), (3, 0.6)]
    assert scalars(events, "accuracy/test") == [(2, 0.75), (3, 0.8)]
    assert scalars(events, "loss/test") == [(2, 0.75), (3, 0.5)]
    assert scalars(events, "lr") == [(1, 0.1), (2, 0.05), (3, round(0.1 / 3, 6))]
    assert scalars(events, "time/images_per_s") == [(1, 800.0), (2, 800.0), (3, 800.0)]
    assert {"confusion_matrix", "samples"} <= set(tags["images"])
    assert [e.step for e in events.Images("confusion_matrix")] == [2, 3]
    grid, annotated = events.Images("samples")
    # 16 images of 28 px in rows of 8 with 2 px padding: 8 * 30 + 2 wide, 2 * 30 + 2 high
    assert (grid.step, grid.width, grid.height) == (2, 242, 62)
    assert annotated.step == 3 and annotated.width > 300  # the "pred (true)" figure, rendered
    assert "config" in {t.split("/")[0] for t in tags["tensors"]}


def test_resume_purges_the_epochs_logged_again(tmp_path):
    pytest.importorskip("tensorboard")
    with TensorBoardLogger(tmp_path) as logger:
        for epoch in (1, 2, 3):
            logger.log_epoch(epoch, row(epoch))
    # Interrupted during epoch 3, resumed from the end of epoch 2: epoch 3 is logged again.
    with TensorBoardLogger(tmp_path, purge_step=3) as logger:
        logger.log_epoch(3, {**row(3), "train_loss": 0.125})
    events = read_events(tmp_path / "tensorboard")
    assert scalars(events, "loss/train") == [(1, 2.0), (2, 1.0), (3, 0.125)]


def test_missing_tensorboard_is_one_line_with_the_install_command(tmp_path, monkeypatch):
    monkeypatch.delitem(sys.modules, "torch.utils.tensorboard", raising=False)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # makes the import raise ImportError
    message = '--tensorboard: the optional package tensorboard is not installed; pip install "cnnlab[tensorboard]"'
    with pytest.raises(CnnlabError) as error:
        TensorBoardLogger(tmp_path)
    assert str(error.value) == message
    with pytest.raises(CnnlabError, match="pip install"):
        require_tensorboard()
    assert not (tmp_path / "tensorboard").exists()
