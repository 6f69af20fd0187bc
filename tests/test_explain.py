"""`cnnlab.inspect.explain` and the saliency fallback: recomputed values equal the layers' real outputs, and
every model of the zoo gets an attribution map that shows something (LeNet's empty Grad-CAM falls back)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.cli.main import main
from cnnlab.data import load_dataset
from cnnlab.errors import CnnlabError
from cnnlab.inspect.explain import MAX_FULL_CHANNELS, explain_pixel
from cnnlab.inspect.saliency import attribute_checked, degenerate
from cnnlab.models import create_model, list_models, model_info
from cnnlab.runs.load import load_run
from cnnlab.training import TrainConfig, train

pytest.importorskip("captum")


pytestmark = pytest.mark.usefixtures("one_thread")


def _digit(size: int = 28, index: int = 0) -> torch.Tensor:
    """A test digit of the embedded sample, normalized like MNIST runs, at `size` x `size`: (1, 1, size, size)."""
    pixels = load_dataset("mnist-sample").test_images[index : index + 1].float() / 255
    if size != pixels.shape[-1]:
        pixels = F.interpolate(pixels, size=(size, size), mode="bilinear", align_corners=False)
    return (pixels - 0.1307) / 0.3081


def _model(name: str, **options) -> nn.Module:
    torch.manual_seed(0)
    return create_model(name, **options).eval()


def _real(model: nn.Module, x: torch.Tensor, layer: str) -> torch.Tensor:
    """The layer's output for image 0, copied when it is made (an in-place ReLU after it must not change it)."""
    found = []
    handle = dict(model.named_modules())[layer].register_forward_hook(lambda m, a, out: found.append(out[0].clone()))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    return found[0]


def _close(value: float, real: float) -> bool:
    return abs(value - real) <= 1e-4 * max(abs(real), 1e-3)


def _check(explanation: dict) -> None:
    """The recomputed value and every step after it against what the model itself computed, all the way down."""
    assert _close(explanation["output"], explanation["actual"]), explanation["layer"]
    for step in explanation["after"]:
        assert _close(step["output"], step["actual"]), step["layer"]
    for key in ("explained",):
        if key in explanation:
            _check(explanation[key])
    for part in ("branch", "shortcut"):
        if isinstance(explanation.get(part), dict) and "explained" in explanation[part]:
            _check(explanation[part]["explained"])


# ---- explanations equal the real outputs -------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, size, layer, kind, options",
    [
        ("convnet", 28, "features.0", "conv", {}),  # 3x3, padding 1: a border pixel reads the padding
        ("convnet", 28, "features.3", "conv", {}),
        ("lenet", 28, "features.3", "conv", {}),  # 5x5 over 6 channels, then sigmoid and average pooling
        ("lenet", 28, "features.4", "conv", {"batch_norm": True}),  # then BatchNorm, sigmoid, average pooling
        ("nin", 67, "features.0.2", "conv", {}),  # a 1x1 convolution
        ("alexnet", 65, "features.0", "conv", {}),  # 11x11 stride 4
        ("convnet", 28, "features.1", "pool", {}),  # max-pool 2x2
        ("lenet", 28, "features.3", "pool", {"batch_norm": True}),  # average pool 2x2
        ("nin", 67, "global_pool", "pool", {}),  # adaptive average pool to 1x1
        ("resnet18", 32, "stem.3", "pool", {}),  # max-pool 3/2 with padding
        ("fast-cnn", 28, "features.2", "batchnorm", {}),
        ("convnet", 28, "features.2", "activation", {}),
        ("resnet-mini", 28, "features.3", "residual", {}),  # out = relu(x + conv2(relu(conv1(x))))
        ("resnet18", 32, "stages.1.0", "residual", {}),  # BatchNorm'd branch, 1x1 conv shortcut
        ("inception-mini", 28, "features.3", "concat", {}),
        ("googlenet", 32, "features.0", "sequence", {}),  # conv + ReLU in a Sequential
    ],
)
def test_explanation_equals_the_layers_real_output(name, size, layer, kind, options):
    model, x = _model(name, **options), _digit(size)
    real = _real(model, x, layer)
    channels, height, width = real.shape
    # The corner (padding, if any), the middle, and the strongest value of a middle channel.
    strongest = int(real[channels // 2].argmax())
    for c, y, x_ in [(0, 0, 0), (channels - 1, height // 2, width // 2), (channels // 2, *divmod(strongest, width))]:
        explanation = explain_pixel(model, x, layer, c, y, x_)
        assert explanation["type"] == kind
        assert explanation["actual"] == pytest.approx(float(real[c, y, x_]), abs=0)
        assert _close(explanation["output"], float(real[c, y, x_])), (layer, c, y, x_)
        _check(explanation)


def test_conv_explanation_adds_up():
    model, x = _model("convnet"), _digit()
    e = explain_pixel(model, x, "features.3", 5, 0, 13)  # top right: the kernel's top row and right column are padding
    assert e["kernel_size"] == [3, 3] and e["input_channels"] == 8 and len(e["channels"]) == 8
    assert e["outside"][0] == [True, True, True] and [row[2] for row in e["outside"]] == [True, True, True]
    weight = model.features[3].weight.detach()[5]
    for part in e["channels"]:
        k = part["in_channel"]
        torch.testing.assert_close(torch.tensor(part["kernel"]), weight[k], rtol=1e-5, atol=1e-9)
        assert part["patch"][0] == [0.0, 0.0, 0.0]  # zero padding
        products = torch.tensor(part["patch"], dtype=torch.float64) * torch.tensor(part["kernel"], dtype=torch.float64)
        torch.testing.assert_close(torch.tensor(part["products"], dtype=torch.float64), products, rtol=1e-4, atol=1e-9)
        assert part["sum"] == pytest.approx(float(products.sum()), rel=1e-4, abs=1e-7)
    assert e["sum"] == pytest.approx(sum(p["sum"] for p in e["channels"]), rel=1e-9, abs=1e-12)
    assert e["output"] == pytest.approx(e["sum"] + e["bias"])
    # The pixel followed to what the next conv sees: max-pool 2x2 (its window holds this pixel), then ReLU.
    pool, relu = e["after"]
    assert (pool["kind"], pool["op"], pool["at"]) == ("MaxPool2d", "max", [5, 0, 6])
    assert relu["kind"] == "ReLU" and relu["output"] == max(pool["output"], 0.0) == e["activation"]


def test_wide_conv_sends_the_strongest_channels_and_sums_the_rest():
    model, x = _model("vgg11"), _digit(32)
    e = explain_pixel(model, x, "features.6", 7, 3, 3)  # a 3x3 conv over 128 channels
    assert e["input_channels"] == 128 and len(e["channels"]) == MAX_FULL_CHANNELS
    sums = [abs(p["sum"]) for p in e["channels"]]
    assert sums == sorted(sums, reverse=True)
    assert e["other_channels"]["count"] == 128 - MAX_FULL_CHANNELS
    assert "the other 112 as one sum" in e["note"]
    assert e["sum"] == pytest.approx(sum(p["sum"] for p in e["channels"]) + e["other_channels"]["sum"])
    assert _close(e["output"], e["actual"])


def test_inception_names_the_branch_of_each_channel():
    model, x = _model("inception-mini"), _digit()
    # InceptionA: 1x1 (16) | 1x1 -> 5x5 (24) | 1x1 -> 3x3 -> 3x3 (24) | avgpool -> 1x1 (24)
    expected = {0: ("branch1x1", 0), 20: ("branch5x5", 4), 50: ("branch3x3", 10), 87: ("branch_pool", 23)}
    for channel, (branch, inner) in expected.items():
        e = explain_pixel(model, x, "features.3", channel, 4, 5)
        assert e["branch"] == f"features.3.{branch}" and e["branch_channel"] == inner
        assert [b["channels"] for b in e["branches"]] == [[0, 16], [16, 40], [40, 64], [64, 88]]
        last = e["explained"] if e["explained"]["type"] == "conv" else e["explained"]["explained"]
        assert last["kind"] == "Conv2d"  # that branch's last conv
        assert _close(e["output"], e["actual"])
    assert (
        explain_pixel(model, x, "features.3", 20, 4, 5)["explained"]["explained"]["layer"] == "features.3.branch5x5.1"
    )


def test_residual_shows_both_summands():
    model, x = _model("resnet-mini"), _digit()
    real = _real(model, x, "features.7")
    c, y, x_ = 3, 2, 1
    e = explain_pixel(model, x, "features.7", c, y, x_)
    block_input = _real(model, x, "features.6")[c, y, x_]
    branch = _real(model, x, "features.7.conv2")[c, y, x_]
    assert e["shortcut"] == {"type": "identity", "value": pytest.approx(float(block_input))}
    assert e["branch"]["value"] == pytest.approx(float(branch), rel=1e-5, abs=1e-7)
    assert e["sum"] == pytest.approx(e["branch"]["value"] + e["shortcut"]["value"])
    assert e["output"] == max(e["sum"], 0.0) and _close(e["output"], float(real[c, y, x_]))
    assert e["branch"]["explained"]["layer"] == "features.7.conv2"


def test_explain_takes_a_run_and_its_pixels(lenet_run):
    trained = load_run(lenet_run)
    pixels = load_dataset("mnist-sample").test_images[:1]
    e = explain_pixel(trained, pixels, "features.0", 1, 10, 12)  # uint8 pixels: the run's preprocessing first
    x = trained.transform()(pixels)
    assert e == explain_pixel(trained.model, x, "features.0", 1, 10, 12)
    assert _close(e["output"], float(_real(trained.model, x, "features.0")[1, 10, 12]))


@pytest.mark.parametrize(
    "layer, position, message",
    [
        ("head", (0, 0, 0), "head (Linear) does not output a feature map"),
        ("features.0", (8, 0, 0), "(8, 0, 0) is outside features.0's output of 8 channels of 28x28"),
        ("features.0", (0, 28, 0), "y 0..27"),
        ("feature.0", (0, 0, 0), "unknown --layer 'feature.0'"),
    ],
)
def test_what_cannot_be_explained_is_a_one_line_error(layer, position, message):
    with pytest.raises(CnnlabError, match=None) as caught:
        explain_pixel(_model("convnet"), _digit(), layer, *position)
    assert message in str(caught.value) and "\n" not in str(caught.value)


# ---- saliency for every model --------------------------------------------------------------------------------

SLOW_SALIENCY = {"alexnet", "vgg11"}  # 224-pixel nets of tens of millions of weights: seconds each


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_SALIENCY else n for n in list_models()]
)
def test_every_zoo_model_gets_a_saliency_map_that_shows_something(name):
    model = _model(name)
    size = model_info(name).default_input_size
    x = _digit(size, index=3)
    started = time.perf_counter()
    with torch.no_grad():
        predicted = int(model(x).argmax())
    result = attribute_checked(model, x, predicted, None)  # the default: Grad-CAM, or for an MLP integrated gradients
    assert result.maps.shape == (1, size, size)
    assert torch.isfinite(result.maps).all() and result.maps.abs().sum() > 0 and degenerate(result.maps) is None
    assert (result.reason is None) == (result.method == result.requested)
    if name not in SLOW_SALIENCY:
        assert time.perf_counter() - started < 20  # generous for a shared machine; typically well under 2 s


def _dead_gradcam_lenet() -> nn.Module:
    """A LeNet whose Grad-CAM is provably all zero: its last conv's maps are negative everywhere (negative
    weights on sigmoid outputs, negative bias) and the classifier only adds (positive weights), so every
    channel's Grad-CAM weight is positive and their weighted sum negative, which Grad-CAM's ReLU zeroes."""
    model = _model("lenet")
    with torch.no_grad():
        conv = model.features[3]
        conv.weight.copy_(-conv.weight.abs())
        conv.bias.fill_(-1.0)
        for layer in model.classifier:
            if isinstance(layer, nn.Linear):
                layer.weight.copy_(layer.weight.abs())
    return model


def test_lenet_gradcam_is_degenerate_and_falls_back_with_the_reason():
    model, x = _dead_gradcam_lenet(), _digit()
    result = attribute_checked(model, x, 3, "gradcam")
    assert result.requested == "gradcam" and result.method == "gradient-x-input" and result.layer is None
    assert result.reason.startswith("Grad-CAM at features.3 is all zero for this input")
    assert "showing gradient × input (gradient-x-input) instead" in result.note
    assert degenerate(result.maps) is None and result.signed


@pytest.mark.parametrize(
    "maps, problem",
    [
        (torch.zeros(1, 4, 4), "all zero"),
        (torch.full((1, 4, 4), 0.3), "constant over the image"),
        (torch.tensor([[[0.0, float("nan")], [1.0, 2.0]]]), "not finite (NaN or infinity)"),
        (torch.tensor([[[0.0, 1.0], [1.0, 2.0]]]), None),
        (torch.cat([torch.rand(1, 4, 4), torch.zeros(1, 4, 4)]), "all zero"),  # any one map of a batch
    ],
)
def test_degenerate_maps(maps, problem):
    assert degenerate(maps) == problem


@pytest.fixture(scope="module")
def lenet_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("explain-runs")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("cnnlab.figures.run.write_run_figures", lambda *args, **kwargs: [], raising=False)
        return train(
            TrainConfig(
                model="lenet",
                dataset="mnist-sample",
                epochs=1,
                batch_size=64,
                limit_train=256,
                limit_test=64,
                progress=False,
                model_options={"batch_norm": False},
                out=str(tmp / "lenet"),
            )
        ).run_dir


def test_cli_saliency_on_lenet_prints_the_fallback(lenet_run, tmp_path, capsys):
    # The run's LeNet, its weights set as in _dead_gradcam_lenet: a sigmoid net whose Grad-CAM shows nothing.
    for name in ("best.pt", "last.pt"):
        path = lenet_run / "checkpoints" / name
        if path.exists():
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
            state = checkpoint["model"]
            state["features.3.weight"] = -state["features.3.weight"].abs()
            state["features.3.bias"] = torch.full_like(state["features.3.bias"], -1.0)
            for key in ("classifier.0.weight", "classifier.2.weight", "classifier.4.weight"):
                state[key] = state[key].abs()
            torch.save(checkpoint, path)
    code = main(
        ["inspect", str(lenet_run), "saliency", "--index", "0", "1", "--method", "gradcam", "-o", str(tmp_path)]
    )
    out, err = capsys.readouterr()
    assert code == 0
    assert out.splitlines() == [
        str(tmp_path / "saliency-gradcam-test0.png"),
        str(tmp_path / "saliency-gradcam-test1.png"),
    ]
    notes = err.splitlines()
    assert len(notes) == 2 and all(line.startswith("cnnlab: note: test #") for line in notes)
    assert "Grad-CAM at features.3 is all zero for this input" in notes[0]
    assert "showing gradient × input (gradient-x-input) instead" in notes[0]
