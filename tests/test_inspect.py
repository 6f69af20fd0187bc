"""`cnnlab inspect`: filters, feature maps, saliency / Grad-CAM and mistakes on tiny trained runs."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

from cnnlab.cli.main import main
from cnnlab.data.transforms import permute_pixels
from cnnlab.inspect import (
    attribute,
    confused_pairs,
    conv_layers,
    default_filter_layer,
    feature_maps,
    filter_tiles,
    inspect_features,
    inspect_filters,
    inspect_mistakes,
    inspect_saliency,
    most_confident_mistakes,
    report_figures,
)
from cnnlab.inspect.grid import grid_figure_pixels, grid_shape
from cnnlab.inspect.inputs import model_view, to_unpermuted, unpermuted_view
from cnnlab.inspect.layers import default_feature_layers
from cnnlab.models import create_model, list_models, model_info
from cnnlab.runs.load import load_run
from cnnlab.training import TrainConfig, train

HAS_CAPTUM = importlib.util.find_spec("captum") is not None


pytestmark = pytest.mark.usefixtures("one_thread")


def _train(tmp, model: str, **options) -> Path:
    config = TrainConfig(
        model=model,
        dataset="mnist-sample",
        epochs=1,
        batch_size=64,
        optimizer="adam",
        lr=0.005,
        limit_train=500,
        progress=False,
        out=str(tmp / model),
        **options,
    )
    return train(config).run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """One tiny run per case, trained once for the module (about a second each)."""
    tmp = tmp_path_factory.mktemp("inspect-runs")
    with pytest.MonkeyPatch.context() as patch:
        # The run's own figures are not under test here and take most of a tiny run's time.
        patch.setattr("cnnlab.figures.run.write_run_figures", lambda *args, **kwargs: [], raising=False)
        return {
            "convnet": _train(tmp, "convnet"),
            "lenet": _train(tmp, "lenet"),
            "mlp-permuted": _train(tmp, "mlp-tiny", permute_pixels=True),
            "cnn-permuted-resized": _train(tmp, "cnn-tiny", permute_pixels=True, resize=30),
        }


def png_size(path: Path) -> tuple[int, int]:
    assert path.is_file() and path.stat().st_size > 1000, path
    with Image.open(path) as image:
        return image.size


def run_cli(args, capsys) -> tuple[int, list[str], str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


# ---- filters ----------------------------------------------------------------------------


@pytest.mark.parametrize("case, filters", [("convnet", 8), ("lenet", 6)])
def test_first_layer_filters_grid(runs, tmp_path, capsys, case, filters):
    code, lines, _ = run_cli(["inspect", runs[case], "filters", "-o", tmp_path], capsys)
    assert code == 0 and lines == [str(tmp_path / "filters-features.0.png")]
    assert png_size(Path(lines[0])) == grid_figure_pixels(1, filters, colorbar=True)


def test_first_layer_tiles_are_each_filter_scaled_by_its_largest_weight(runs):
    trained = load_run(runs["convnet"])
    tiles = filter_tiles(trained.model, "features.0", (1, 28, 28))
    weight = trained.model.features[0].weight.detach()[:, 0]
    expected = weight / weight.abs().amax((1, 2), keepdim=True)
    assert (tiles.rows, tiles.cols, tiles.matrix) == (1, 8, False)
    torch.testing.assert_close(tiles.tiles, expected)
    assert tiles.tiles.abs().amax((1, 2)).tolist() == pytest.approx([1.0] * 8)


def test_deeper_layer_is_a_filter_by_input_channel_table(runs, tmp_path):
    trained = load_run(runs["convnet"])
    second = conv_layers(trained.model)[1]
    tiles = filter_tiles(trained.model, second, (1, 28, 28))
    assert (tiles.rows, tiles.cols, tiles.matrix) == (16, 8, True)
    weight = dict(trained.model.named_modules())[second].weight.detach()
    torch.testing.assert_close(tiles.tiles[8 + 3], weight[1, 3] / weight[1].abs().max())  # filter 1, channel 3
    [path] = inspect_filters(runs["convnet"], second, tmp_path, max_filters=4)
    assert path.name == f"filters-{second}.png"
    assert png_size(path) == grid_figure_pixels(4, 8, colorbar=True)


def test_permuted_mlp_shows_templates_and_unpermuted_templates(runs, tmp_path):
    paths = inspect_filters(runs["mlp-permuted"], out=tmp_path)
    assert [p.name for p in paths] == ["filters-features.fc1.png", "filters-features.fc1-unpermuted.png"]
    for path in paths:
        assert png_size(path) == grid_figure_pixels(1, 8, colorbar=True)  # 8 hidden units, 28x28 templates each


def test_unpermuting_restores_the_original_pixel_order(runs):
    trained = load_run(runs["mlp-permuted"])
    x = torch.rand(3, 1, 28, 28)
    scrambled = permute_pixels(x, trained.transform().permutation)
    assert not torch.equal(scrambled, x)
    torch.testing.assert_close(to_unpermuted(trained, scrambled), x)


def test_resized_permuted_run_maps_back_to_the_image(runs):
    trained = load_run(runs["cnn-permuted-resized"])
    digit = trained_test_image(trained, 0)
    seen = model_view(trained, digit)
    assert seen.shape == (1, 1, 30, 30)
    restored, plain = to_unpermuted(trained, seen).flatten(), unpermuted_view(trained, digit).flatten()
    correlation = torch.corrcoef(torch.stack([restored, plain]))[0, 1]
    # Resizing blends neighbouring (unrelated) permuted pixels, so the round trip is lossy; a wrong
    # pixel order would give a correlation of about 0.
    assert correlation > 0.6
    assert torch.corrcoef(torch.stack([seen.flatten(), plain]))[0, 1] < 0.5


# ---- feature maps -------------------------------------------------------------------------


def test_feature_maps_have_the_layers_channels(runs, tmp_path, capsys):
    code, lines, _ = run_cli(["inspect", runs["convnet"], "features", "--index", "3", "-o", tmp_path], capsys)
    trained = load_run(runs["convnet"])
    convs = conv_layers(trained.model)
    assert code == 0
    assert lines == [str(tmp_path / "features-test3-input.png")] + [
        str(tmp_path / f"features-test3-{c}.png") for c in convs
    ]
    x = trained.transform()(trained_test_image(trained, 3))
    _, maps = feature_maps(trained.model, x, convs)
    for layer, path in zip(maps, lines[1:]):
        module = dict(trained.model.named_modules())[layer.layer]
        assert layer.channels == module.out_channels and layer.maps.shape[0] == module.out_channels
        assert png_size(Path(path)) == grid_figure_pixels(*grid_shape(module.out_channels), colorbar=True)
    with torch.no_grad():
        torch.testing.assert_close(maps[0].maps, trained.model.features[0](x)[0])


def trained_test_image(trained, index: int) -> torch.Tensor:
    from cnnlab.data import load_dataset

    return load_dataset(trained.config.dataset).test_images[index : index + 1]


def test_features_of_an_image_file_and_chosen_layers(runs, tmp_path):
    trained = load_run(runs["lenet"])
    picture = trained_test_image(trained, 0)[0, 0].numpy()
    Image.fromarray(255 - picture).save(tmp_path / "digit.png")  # dark on light, as drawn on paper
    paths = inspect_features(
        runs["lenet"],
        image=tmp_path / "digit.png",
        layers=["features.1", "classifier.0"],
        out=tmp_path / "out",
        invert=True,
    )
    assert [p.name for p in paths] == [
        "features-digit-input.png",
        "features-digit-features.1.png",
        "features-digit-classifier.0.png",
    ]
    assert png_size(paths[1]) == grid_figure_pixels(*grid_shape(6), colorbar=True)  # sigmoid after conv(1->6)
    assert png_size(paths[2]) == grid_figure_pixels(1, 1, colorbar=True)  # 120 units as one square tile


def test_permuted_resized_run_features(runs, tmp_path):
    paths = inspect_features(runs["cnn-permuted-resized"], index=0, out=tmp_path)
    assert [p.name for p in paths] == [
        "features-test0-input.png",
        "features-test0-features.0.png",
        "features-test0-features.3.png",
    ]
    width, _ = png_size(paths[0])
    assert width > 1.6 * png_size(tmp_path / "features-test0-features.0.png")[1] / 2  # two panels: seen and un-permuted
    trained = load_run(runs["cnn-permuted-resized"])
    _, [first] = feature_maps(trained.model, trained.transform()(trained_test_image(trained, 0)), ["features.0"])
    assert first.shape == (1, 6, 26, 26)  # 30x30 input, 5x5 conv


def test_default_feature_layers_follow_execution_order_and_are_capped():
    model = create_model("googlenet")
    layers = default_feature_layers(model, torch.zeros(1, 1, 32, 32))
    assert len(layers) == 8 and layers[0] == "features.0.0"
    assert set(layers) <= set(conv_layers(model))


# ---- saliency -----------------------------------------------------------------------------


def quadrant_task(quadrant: int, n: int = 256, size: int = 16, seed: int = 0):
    """Faint noise everywhere; class 1 adds a bright 4x4 patch somewhere inside `quadrant` (0..3, row-major)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, size, size, generator=generator) * 0.3
    y = torch.randint(0, 2, (n,), generator=generator)
    half = size // 2
    r, c = (quadrant // 2) * half, (quadrant % 2) * half
    for i in y.nonzero().flatten().tolist():
        dr, dc = torch.randint(0, half - 3, (2,), generator=generator).tolist()
        x[i, 0, r + dr : r + dr + 4, c + dc : c + dc + 4] = 1.0
    return x, y


def quadrant_share(maps: torch.Tensor, quadrant: int) -> torch.Tensor:
    """Fraction of each map's positive mass that lies in `quadrant`."""
    maps = maps.clamp(min=0)
    half = maps.shape[-1] // 2
    r, c = (quadrant // 2) * half, (quadrant % 2) * half
    return maps[:, r : r + half, c : c + half].sum((1, 2)) / maps.sum((1, 2)).clamp(min=1e-12)


@pytest.mark.parametrize("quadrant", [1, 2])  # top-right and bottom-left: a transposed or flipped map fails
def test_gradcam_puts_the_attribution_in_the_deciding_quadrant(quadrant):
    pytest.importorskip("captum")
    torch.manual_seed(0)
    x, y = quadrant_task(quadrant)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 2),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(60):
        batch = torch.randint(0, len(x), (64,))
        loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        assert (model(x).argmax(1) == y).float().mean() > 0.95  # the model did learn the task
    positives = x[y == 1][:32]
    gradcam = attribute(model, positives, 1, "gradcam")  # default layer: the last conv, "2"
    assert gradcam.shape == (32, 16, 16) and (gradcam >= 0).all()
    share = quadrant_share(gradcam, quadrant)
    assert share.mean() > 0.6, share  # a uniform map would give 0.25
    for method in ("saliency", "integrated-gradients"):
        assert quadrant_share(attribute(model, positives, 1, method), quadrant).mean() > 0.6, method


def test_saliency_figures_for_predicted_and_target_class(runs, tmp_path, capsys):
    pytest.importorskip("captum")
    trained = load_run(runs["convnet"])
    code, lines, _ = run_cli(["inspect", runs["convnet"], "saliency", "--index", "0", "1", "-o", tmp_path], capsys)
    assert code == 0 and lines == [
        str(tmp_path / "saliency-gradcam-test0.png"),
        str(tmp_path / "saliency-gradcam-test1.png"),
    ]
    one_row = png_size(Path(lines[0]))
    with torch.no_grad():
        predicted = int(trained.model(trained.transform()(trained_test_image(trained, 0))).argmax())
    other = trained.classes[(predicted + 1) % 10]
    [path] = inspect_saliency(runs["convnet"], [0], target=other, out=tmp_path / "target")
    two_rows = png_size(path)
    assert two_rows[0] == pytest.approx(one_row[0], abs=20) and two_rows[1] > 1.7 * one_row[1]


@pytest.mark.parametrize(
    "case, method, name",
    [
        ("lenet", "integrated-gradients", "saliency-integrated-gradients-test2.png"),
        ("mlp-permuted", None, "saliency-integrated-gradients-test2.png"),  # no conv layer: IG by default
        ("cnn-permuted-resized", "gradcam", "saliency-gradcam-test2.png"),
        ("cnn-permuted-resized", "saliency", "saliency-saliency-test2.png"),
    ],
)
def test_saliency_works_for_every_kind_of_run(runs, tmp_path, case, method, name):
    pytest.importorskip("captum")
    [path] = inspect_saliency(runs[case], [2], method=method, target="3", out=tmp_path)
    assert path.name == name
    width, _ = png_size(path)
    permuted = case != "lenet"
    assert width > (1000 if permuted else 550)  # five columns (with un-permuted views) or three


def test_report_figures_has_filters_and_gradcam(runs, tmp_path):
    pytest.importorskip("captum")
    figures = report_figures(runs["convnet"], tmp_path, examples=3)
    assert [p.name for p in figures["filters"]] == ["filters-features.0.png"]
    assert len(figures["gradcam"]) == 3 and all(png_size(p) for p in figures["gradcam"])


# ---- mistakes -----------------------------------------------------------------------------


def test_confused_pairs_are_the_largest_off_diagonal_cells():
    confusion = torch.tensor([[50, 3, 0], [9, 40, 1], [0, 7, 30]])
    assert confused_pairs(confusion, 3) == [(1, 0, 9), (2, 1, 7), (0, 1, 3)]
    assert confused_pairs(torch.eye(3, dtype=torch.long) * 5) == []


def test_most_confident_mistakes_are_wrong_and_sorted():
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.05, 0.95]])
    labels = torch.tensor([0, 0, 1, 0])
    assert most_confident_mistakes(probs, labels, 5).tolist() == [3, 1, 2]
    assert most_confident_mistakes(probs, labels, 1).tolist() == [3]


def test_mistakes_grid_and_confused_pairs(runs, tmp_path, capsys):
    code, lines, _ = run_cli(["inspect", runs["convnet"], "mistakes", "--top", "8", "-o", tmp_path / "a"], capsys)
    assert code == 0 and "test images wrong" in lines[0]
    assert lines[-2:] == [str(tmp_path / "a" / "mistakes.png"), str(tmp_path / "a" / "confused-pairs.png")]
    mistakes, paths = inspect_mistakes(runs["convnet"], top=16, out=tmp_path / "b", device="cpu")
    trained = load_run(runs["convnet"])
    images = torch.stack([trained_test_image(trained, int(i))[0] for i in mistakes.indices])
    with torch.no_grad():
        probs = trained.model(trained.transform()(images)).softmax(1)
    assert len(mistakes.indices) == 16 and (mistakes.true != mistakes.predicted).all()
    torch.testing.assert_close(probs.argmax(1), mistakes.predicted)
    torch.testing.assert_close(probs.max(1).values, mistakes.confidence, atol=1e-5, rtol=1e-4)
    assert mistakes.confidence.tolist() == sorted(mistakes.confidence.tolist(), reverse=True)
    assert mistakes.confusion.sum() == mistakes.count == 500
    assert mistakes.wrong == mistakes.count - int(mistakes.confusion.trace())
    t, p, count = mistakes.pairs[0]
    assert count == int((mistakes.confusion - torch.diag(torch.diag(mistakes.confusion))).max())
    one_row, two_rows = png_size(tmp_path / "a" / "mistakes.png"), png_size(paths[0])
    assert two_rows[0] == pytest.approx(one_row[0], abs=40) and two_rows[1] > one_row[1] + 120  # a second row of 8


def test_permuted_run_mistakes_are_shown_unpermuted_too(runs, tmp_path):
    _, paths = inspect_mistakes(runs["mlp-permuted"], top=8, out=tmp_path)
    assert [p.name for p in paths] == ["mistakes.png", "mistakes-unpermuted.png", "confused-pairs.png"]
    assert all(png_size(p) for p in paths)


def test_default_output_is_the_runs_inspect_folder(runs, capsys):
    code, lines, _ = run_cli(["inspect", runs["lenet"] / "checkpoints" / "best.pt", "filters"], capsys)
    assert code == 0 and lines == [str(runs["lenet"] / "inspect" / "filters-features.0.png")]
    assert Path(lines[0]).is_file()


# ---- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (["filters", "--layer", "features.9"], "unknown --layer 'features.9'"),
        (["features", "--index", "0", "--layer", "conv1"], "unknown --layer 'conv1'"),
        (
            ["saliency", "--index", "0", "--layer", "feature.0"],
            "unknown --layer 'feature.0' (did you mean 'features.0'",
        ),
    ],
)
def test_unknown_layer_is_one_line_listing_the_conv_layers(runs, tmp_path, capsys, args, message):
    if args[0] == "saliency":
        pytest.importorskip("captum")
    trained = load_run(runs["convnet"])
    code, out, err = run_cli(["inspect", runs["convnet"], *args, "-o", tmp_path], capsys)
    assert code == 2 and out == []
    assert err.count("\n") == 1 and err.startswith("cnnlab: error: ") and message in err
    assert "conv layers of convnet: " + ", ".join(conv_layers(trained.model)) in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["filters", "--layer", "features.1"], "has no kernels to show; layers with filters in convnet: features.0,"),
        (
            ["features", "--index", "500"],
            "--index 500 is out of range: the mnist-sample test split has 500 images (0..499)",
        ),
        (["features", "--image", "missing.png"], "image 'missing.png' does not exist"),
        (["mistakes", "--top", "0"], "--top must be a positive integer, got 0"),
    ],
)
def test_bad_inputs_are_one_line_errors(runs, tmp_path, capsys, args, message):
    code, out, err = run_cli(["inspect", runs["convnet"], *args, "-o", tmp_path], capsys)
    assert code == 2 and err.count("\n") == 1 and message in err, err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--method", "gradcamm"], "unknown --method 'gradcamm' (did you mean 'gradcam'?); choose from: gradcam,"),
        (["--target", "eleven"], "unknown --target class 'eleven'"),
        (["--target", "12"], "--target 12 is out of range: the run has 10 classes (0..9)"),
        (["--method", "saliency", "--layer", "features.0"], "--layer chooses Grad-CAM's layer; --method saliency"),
        (["--layer", "head"], "--layer 'head' outputs (1, 10), not a (N, C, H, W) feature map"),
        (["--layer", "features.1"], None),  # any layer with a spatial output will do (a max-pool here): exit 0
    ],
)
def test_saliency_options_are_checked(runs, tmp_path, capsys, args, message):
    pytest.importorskip("captum")
    code, _, err = run_cli(["inspect", runs["convnet"], "saliency", "--index", "0", *args, "-o", tmp_path], capsys)
    if message is None:
        assert code == 0 and err == ""
    else:
        assert code == 2 and err.count("\n") == 1 and message in err, err


def test_gradcam_on_a_model_without_conv_layers_says_what_to_use(runs, tmp_path, capsys):
    pytest.importorskip("captum")
    code, _, err = run_cli(
        ["inspect", runs["mlp-permuted"], "saliency", "--index", "0", "--method", "gradcam", "-o", tmp_path], capsys
    )
    assert code == 2 and err.count("\n") == 1
    assert (
        "gradcam needs a conv layer and mlp-tiny has none; use --method saliency or --method integrated-gradients"
        in err
    )


def test_missing_captum_is_one_line_with_the_install_command(runs, tmp_path, capsys, monkeypatch):
    for name in [m for m in sys.modules if m == "captum" or m.startswith("captum.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "captum", None)  # makes `import captum...` raise ImportError
    code, out, err = run_cli(["inspect", runs["convnet"], "saliency", "--index", "0", "-o", tmp_path], capsys)
    assert code == 2 and out == [] and err.count("\n") == 1
    assert (
        err
        == 'cnnlab: error: saliency maps: the optional package captum is not installed; pip install "cnnlab[inspect]"\n'
    )
    assert report_figures(runs["convnet"], tmp_path)["gradcam"] == []  # the report just leaves Grad-CAM out


# ---- every model in the zoo ---------------------------------------------------------------


# The 224-pixel families cost a second each at their smallest size: the slow lane covers them.
LARGE = {"alexnet", "vgg11", "googlenet", "resnet18"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in LARGE else n for n in list_models()])
def test_every_zoo_model_can_be_inspected(name):
    """Untrained models at a small valid input size: kernels, feature maps and Grad-CAM all work."""
    torch.manual_seed(0)
    model = create_model(name).eval()
    size = max(model_info(name).min_input_size, 28)
    x = torch.randn(1, 1, size, size)
    layer = default_filter_layer(model, (1, size, size))
    tiles = filter_tiles(model, layer, (1, size, size))
    assert len(tiles.tiles) == (
        tiles.rows * tiles.cols if tiles.matrix else dict(model.named_modules())[layer].weight.shape[0]
    )
    layers = default_feature_layers(model, x)
    _, maps = feature_maps(model, x, layers)
    modules = dict(model.named_modules())
    for fm in maps:
        expected = getattr(modules[fm.layer], "out_channels", None)
        assert expected is None or fm.channels == expected
    if HAS_CAPTUM:
        method = "gradcam" if conv_layers(model) else "saliency"
        # One map per class: an untrained model's ReLU'd Grad-CAM can be all zero for some classes, not all.
        maps = attribute(model, x.repeat(10, 1, 1, 1), torch.arange(10), method)
        assert maps.shape == (10, size, size) and torch.isfinite(maps).all() and maps.abs().sum() > 0
