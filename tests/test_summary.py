"""Model summaries (`summarize`, `count_macs`) and the `cnnlab models` / `cnnlab summary` commands."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from cnnlab.cli.main import main
from cnnlab.models import count_macs, create_model, list_models, model_info, render_summary, summarize
from cnnlab.models.summary import format_count

ALL = list_models()


def meta_model(name: str, in_channels: int = 1, num_classes: int = 10, **options) -> nn.Module:
    with torch.device("meta"):
        return create_model(name, in_channels, num_classes, **options)


@pytest.mark.parametrize("name", ALL)
def test_totals_match_the_parameters_and_flops_are_twice_macs(name):
    model = meta_model(name)
    size = model_info(name).default_input_size
    summary = summarize(model, size, 1)
    params = sum(p.numel() for p in model.parameters())
    assert summary.total_params == summary.trainable_params == params
    assert sum(layer.params for layer in summary.layers) == params  # every parameter sits in a traced layer
    assert summary.flops == 2 * summary.macs > 0
    assert sum(layer.macs for layer in summary.layers) == summary.macs
    assert count_macs(model, size, 1) == summary.macs
    assert summary.input_shape == (1, 1, size, size) and summary.output_shape == (1, 10)
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    assert summary.model_bytes == 4 * params + buffers


def test_alexnet_trace_at_224():
    summary = summarize(meta_model("alexnet"), 224, 1)
    first_conv = next(layer for layer in summary.layers if layer.type == "Conv2d")
    assert (first_conv.path, first_conv.output_shape) == ("features.0", (1, 96, 54, 54))
    first_linear = next(layer for layer in summary.layers if layer.type == "Linear")
    assert first_linear.path == "classifier.0"
    assert first_linear.input_shape == (1, 6400)
    last_pool = [layer for layer in summary.layers if layer.type == "MaxPool2d"][-1]
    assert last_pool.output_shape == (1, 256, 5, 5)
    # the first conv: 96 maps of 54x54, each output a dot product over an 11x11 window of one channel
    assert first_conv.macs == 96 * 54 * 54 * 11 * 11


def test_lenet_macs_by_hand():
    """Conv/linear MACs = outputs x inputs per output; the counter must agree layer by layer."""
    summary = summarize(create_model("lenet"), 28, 1)
    by_path = {layer.path: layer.macs for layer in summary.layers if layer.macs}
    assert by_path == {
        "features.0": 6 * 28 * 28 * 5 * 5,
        "features.3": 16 * 10 * 10 * 6 * 5 * 5,
        "classifier.0": 400 * 120,
        "classifier.2": 120 * 84,
        "classifier.4": 84 * 10,
    }
    assert summary.macs == 416_520


def test_activation_estimate_counts_input_and_layer_outputs_per_batch():
    one = summarize(create_model("mlp-tiny"), 28, 1)
    # input 784 + fc1 8 + relu 8 + fc2 8 + relu 8 + head 10 floats per image
    assert one.activation_bytes == (784 + 8 + 8 + 8 + 8 + 10) * 4
    assert summarize(create_model("mlp-tiny"), 28, 1, batch_size=32).activation_bytes == 32 * one.activation_bytes


def test_meta_and_cpu_models_give_the_same_summary():
    assert summarize(create_model("resnet-mini"), 28, 1) == summarize(meta_model("resnet-mini"), 28, 1)


def test_summarize_leaves_the_model_as_it_was():
    model = create_model("convnet", batch_norm=True).train()
    summarize(model, 28, 1)
    assert model.training
    assert all(not m._forward_hooks for m in model.modules())
    assert len(model._forward_pre_hooks) == 1  # only the input check


def test_summary_follows_input_size_channels_and_classes():
    summary = summarize(meta_model("googlenet", in_channels=3, num_classes=100), 64, 3)
    assert summary.input_shape == (1, 3, 64, 64) and summary.output_shape == (1, 100)
    assert summary.layers[0].output_shape == (1, 64, 32, 32)


def test_format_count():
    assert format_count(61_706) == "61.7 K"
    assert format_count(46_764_746) == "46.8 M"
    assert format_count(7_547_232_256) == "7.5 G"
    assert format_count(906) == "906"


def test_render_summary_shows_layers_and_labelled_totals():
    text = render_summary(summarize(meta_model("alexnet"), 224, 1), name="alexnet")
    assert "features.0    Conv2d" in text and "(1, 96, 54, 54)" in text
    assert "total params:     46,764,746 (46.8 M)" in text
    assert "MACs per image:   938,146,176" in text
    assert "FLOPs per image:  1,876,292,352" in text
    assert "model size:       187.06 MB" in text
    summary = summarize(meta_model("lenet"), 28, 1)
    assert str(summary) == render_summary(summary) and "model: LeNet" in str(summary)  # print() shows the table


# ---- CLI ----------------------------------------------------------------------------


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_models_table(capsys):
    code, out, _ = run_cli(capsys, "models")
    assert code == 0
    lines = {line.split()[0]: line for line in out.splitlines()[2:] if line.strip() and not line.startswith("params")}
    assert list(lines) == ALL
    assert "61.7 K" in lines["lenet"] and "28x28" in lines["lenet"] and "fashion-mnist" in lines["lenet"]
    assert "46.8 M" in lines["alexnet"] and "224x224" in lines["alexnet"] and "938.1 M" in lines["alexnet"]
    assert "97.97% test acc" in lines["convnet"]


def test_cli_models_json_and_pattern(capsys):
    code, out, _ = run_cli(capsys, "models", "--format", "json", "*net")
    assert code == 0
    rows = {row["name"]: row for row in json.loads(out)}
    assert list(rows) == list_models("*net")
    assert {"alexnet", "convnet", "googlenet", "lenet"} <= set(rows)
    assert rows["alexnet"]["params"] == 46_764_746 and rows["alexnet"]["macs"] == 938_146_176
    assert all(row["params"] == model_info(name).num_params for name, row in rows.items())
    assert rows["lenet"]["macs"] == 416_520 and rows["lenet"]["max_input_size"] == 31
    assert rows["googlenet"]["default_input_size"] == 96 and rows["googlenet"]["options"]


def test_cli_models_without_a_match(capsys):
    code, _, err = run_cli(capsys, "models", "resnt*")
    assert code == 2 and "cnnlab: error: no model matches 'resnt*'" in err


def test_cli_summary_table(capsys):
    code, out, _ = run_cli(capsys, "summary", "alexnet")
    assert code == 0
    assert "(1, 96, 54, 54)" in out and "classifier.0" in out and "46,764,746" in out


def test_cli_summary_json_with_options(capsys):
    code, out, _ = run_cli(
        capsys,
        "summary",
        "vgg11",
        "--model-options",
        '{"width": 4}',
        "--input-size",
        "64",
        "--in-channels",
        "3",
        "--num-classes",
        "100",
        "--batch-size",
        "8",
        "--format",
        "json",
    )
    assert code == 0
    data = json.loads(out)
    assert data["name"] == "vgg11" and data["input_shape"] == [1, 3, 64, 64] and data["output_shape"] == [1, 100]
    assert data["total_params"] == sum(layer["params"] for layer in data["layers"])
    assert data["flops"] == 2 * data["macs"] and data["batch_size"] == 8
    assert data["layers"][0]["output_shape"] == [1, 16, 64, 64]


def test_cli_summary_of_a_run_is_its_model_as_trained(capsys, trained_run):
    from cnnlab.models.summary import _is_leaf
    from cnnlab.runs import load_run

    code, out, _ = run_cli(capsys, "summary", str(trained_run), "--format", "json")
    assert code == 0
    data = json.loads(out)
    model = load_run(trained_run).model
    leaves = [path for path, module in model.named_modules() if path and _is_leaf(module)]
    # The recipe's BatchNorm layers included: the names `cnnlab inspect RUN --layer` takes, not the bare model's.
    assert [layer["path"] for layer in data["layers"]] == leaves
    assert "BatchNorm2d" in {layer["type"] for layer in data["layers"]}
    assert data["total_params"] == sum(p.numel() for p in model.parameters())
    code, out, _ = run_cli(capsys, "summary", str(trained_run))
    assert code == 0 and f"model: convnet ({trained_run})" in out and "input (1, 1, 28, 28)" in out
    code, out, err = run_cli(capsys, "summary", str(trained_run), "--input-size", "32", "--model-options", "{}")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "--input-size cannot change a run's model" in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["summary", "alexnt"], "unknown model 'alexnt' (did you mean 'alexnet'"),
        (
            ["summary", "alexnet", "--input-size", "28"],
            "alexnet takes inputs of 65x65 pixels or larger, got 28x28; pass resize=224",
        ),
        (["summary", "lenet", "--input-size", "32"], "lenet takes inputs of 28x28 to 31x31 pixels, got 32x32"),
        (["summary", "vgg11", "--model-options", "{width: 4}"], "--model-options must be a JSON object"),
        (["summary", "vgg11", "--model-options", '{"widht": 4}'], "unknown option 'widht' for model 'vgg11'"),
        (["summary", "lenet", "--batch-size", "0"], "--batch-size must be a positive integer, got 0"),
    ],
)
def test_cli_summary_errors_are_one_line(capsys, argv, message):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("cnnlab: error: ") and message in err and err.count("\n") == 1
