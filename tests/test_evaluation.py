"""Test-time augmentation: the views it averages, the logits it reports, and the option end to end."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.cli.main import main as cli
from cnnlab.data.batches import Batches
from cnnlab.data.catalog import get_spec
from cnnlab.data.transforms import BatchTransform
from cnnlab.runs.evaluate import evaluate, tta_kind, tta_views


def test_views_are_the_image_its_flip_or_its_one_pixel_shifts():
    x = torch.arange(2 * 16, dtype=torch.float32).view(2, 1, 4, 4)
    same, flipped = tta_views(x, "flip")
    assert torch.equal(same, x) and torch.equal(flipped, x.flip(3))
    views = tta_views(x, "shift")
    assert len(views) == 5 and torch.equal(views[0], x)
    down, up, right, left = views[1:]
    assert torch.equal(down[..., 1:, :], x[..., :-1, :]) and torch.equal(down[..., 0, :], x[..., 0, :])  # edge kept
    assert torch.equal(up[..., :-1, :], x[..., 1:, :])
    assert torch.equal(right[..., :, 1:], x[..., :, :-1]) and torch.equal(left[..., :, :-1], x[..., :, 1:])
    with pytest.raises(ValueError, match="unknown test-time augmentation 'rotate'"):
        tta_views(x, "rotate")


def test_the_kind_follows_what_keeps_the_dataset_classes():
    assert tta_kind(get_spec("fashion-mnist")) == "flip"
    assert tta_kind(get_spec("mnist")) == "shift"


@pytest.mark.parametrize("kind", ["flip", "shift"])
def test_evaluate_averages_the_logits_over_the_views(kind):
    torch.manual_seed(0)
    images = torch.randint(0, 256, (40, 1, 8, 8), dtype=torch.uint8)
    labels = torch.randint(0, 3, (40,))
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))  # sees pixel positions: a flip or shift changes its output
    batches = Batches(images, labels, 16, BatchTransform(), shuffle=False)
    result = evaluate(model, batches, 3, tta=kind)
    with torch.no_grad():
        x = images.float() / 255
        logits = torch.stack([model(v) for v in tta_views(x, kind)]).mean(0)
    assert result.loss == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-5)
    assert result.accuracy == pytest.approx((logits.argmax(1) == labels).float().mean().item())
    assert result.loss != pytest.approx(evaluate(model, batches, 3).loss, rel=1e-5)  # the views did count


@pytest.mark.slow
def test_tta_end_to_end_in_train_and_eval(tmp_path, capsys):
    from cnnlab.training import train

    run = tmp_path / "run"
    result = train(
        model="cnn-tiny",
        dataset="fashion-mnist-sample",
        epochs=1,
        tta=True,
        limit_train=256,
        progress=False,
        out=str(run),
        seed=1,
    )
    assert json.loads((run / "config.json").read_text())["config"]["tta"] is True
    trained_acc = result.summary["final_test_acc"]
    capsys.readouterr()
    assert cli(["eval", str(run), "--checkpoint", "last", "--format", "json"]) == 0  # as trained: with TTA
    with_tta = json.loads(capsys.readouterr().out)
    assert with_tta["tta"] == "flip" and with_tta["accuracy"] == pytest.approx(trained_acc)
    assert (
        cli(
            [
                "eval",
                str(run),
                "--checkpoint",
                "last",
                "--no-tta",
                "--format",
                "json",
                "-o",
                str(tmp_path / "plain.png"),
            ]
        )
        == 0
    )
    plain = json.loads(capsys.readouterr().out)
    assert plain["tta"] is None and plain["count"] == with_tta["count"]
    assert plain["loss"] != pytest.approx(with_tta["loss"])
    assert cli(["eval", str(run), "--checkpoint", "last", "--tta"]) == 0
    assert "test-time augmentation: flip" in capsys.readouterr().out


def test_fast_cnn_width_scales_the_channels_and_is_bounded():
    from cnnlab.errors import CnnlabError
    from cnnlab.models import create_model

    wide = create_model("fast-cnn", width=2)
    assert [m.out_channels for m in wide.modules() if isinstance(m, nn.Conv2d)] == [32, 64, 128]
    assert wide(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(CnnlabError, match="width"):
        create_model("fast-cnn", width=17)
