"""Hostile config files, checkpoints, arrays and exports, and bad arguments to the Python API.

Through the command line each case ends with its exit code and exactly one stderr line `cnnlab: ...`,
no traceback; through the Python API, with the exception type and message. Cases that used to hang or
fill memory run in a child process under a timeout and an address-space limit, so a regression fails
the test instead of the test run.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlab.cli.main import main
from cnnlab.errors import CnnlabError


def one_line(err: str) -> str:
    """The single line of `err`, after asserting that it is one line in cnnlab's form."""
    assert "Traceback" not in err, err
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("cnnlab: "), err
    return lines[0]


def call(capsys, argv: list[str]) -> tuple[int, str]:
    """main(argv) in this process: (exit code, the one stderr line)."""
    code = main([str(a) for a in argv])
    return code, one_line(capsys.readouterr().err)


def _address_space_bound() -> int:
    """This process's address space (torch loaded) plus 2 GiB, at least 4 GiB: room for a child that imports
    torch as this one did (a CUDA build maps more), too little for a read without end to reach the machine's."""
    try:
        with open("/proc/self/status") as f:
            size = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    except (OSError, StopIteration, ValueError):
        size = 0
    return max(4 << 30, size + (2 << 30))


def run_cli(*args, timeout: float = 60) -> subprocess.CompletedProcess:
    """`python -m cnnlab ARGS` with a bounded address space, killed after `timeout` seconds."""
    bound = _address_space_bound()

    def limit() -> None:
        try:
            resource.setrlimit(resource.RLIMIT_AS, (bound, bound))
        except (ValueError, OSError):  # a platform without RLIMIT_AS: the timeout alone
            pass

    return subprocess.run(
        [sys.executable, "-m", "cnnlab", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=limit,
        check=False,
    )


@pytest.fixture
def npy_image(tmp_path) -> Path:
    path = tmp_path / "digit.npy"
    np.save(path, np.zeros((28, 28), np.uint8))
    return path


# ---- 1. config files --------------------------------------------------------------------------

BILLION_LAUGHS = """\
model: convnet
dataset: mnist-sample
model_options:
  a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
  b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
  c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
  d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
  e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
  f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
  g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
  h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
  batch_norm: [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""


@pytest.mark.slow
def test_config_yaml_alias_bomb_is_refused_at_once(tmp_path):
    config = tmp_path / "laughs.yaml"
    config.write_text(BILLION_LAUGHS)
    assert config.stat().st_size < 1024
    start = time.perf_counter()
    done = run_cli("train", "--config", config, "--out", tmp_path / "run")
    assert done.returncode == 2
    assert one_line(done.stderr) == (
        f"cnnlab: error: config file {str(config)!r} uses a YAML alias (line 5); cnnlab "
        "config files take plain values only: write the value out"
    )
    assert time.perf_counter() - start < 30 and not (tmp_path / "run").exists()


def deep_config(tmp_path: Path, suffix: str, depth: int = 700) -> Path:
    path = tmp_path / f"deep{suffix}"
    if suffix == ".json":
        path.write_text('{"model": "convnet", "model_options": ' + '{"a": ' * depth + "1" + "}" * depth + "}")
    else:
        path.write_text("model: convnet\nmodel_options: " + "{a: " * depth + "1" + "}" * depth + "\n")
    return path


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_config_nested_too_deep_is_one_line(tmp_path, capsys, suffix):
    config = deep_config(tmp_path, suffix)
    code, line = call(capsys, ["train", "--config", config, "--out", tmp_path / "run"])
    assert code == 2
    assert line == f"cnnlab: error: config file {str(config)!r} is nested more than 32 levels deep"


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_config_nested_within_the_bound_reaches_the_option_checks(tmp_path, capsys, suffix):
    config = deep_config(tmp_path, suffix, depth=31)  # the top mapping and 31 nested ones: 32 levels
    code, line = call(capsys, ["train", "--config", config, "--out", tmp_path / "run"])
    assert code == 2 and "unknown option 'a' for model 'convnet'" in line, line


def test_config_with_too_many_values_is_one_line(tmp_path, capsys):
    config = tmp_path / "many.json"
    config.write_text('{"model": "convnet", "model_options": {"batch_norm": [' + ", ".join(["0"] * 20_000) + "]}}")
    code, line = call(capsys, ["train", "--config", config, "--out", tmp_path / "run"])
    assert code == 2
    assert line == f"cnnlab: error: config file {str(config)!r} holds more than 10,000 values; is it a config file?"


def test_config_that_is_not_utf8_is_one_line(tmp_path, capsys):
    config = tmp_path / "latin1.yaml"
    config.write_bytes("model: convnet\ndataset: mnist-sample  # caf\u00e9\n".encode("latin-1"))
    code, line = call(capsys, ["train", "--config", config, "--out", tmp_path / "run"])
    assert code == 2 and line == f"cnnlab: error: config file {str(config)!r} is not UTF-8 text (byte 43)"


def test_config_larger_than_a_mebibyte_is_refused_before_reading(tmp_path, capsys):
    config = tmp_path / "big.yaml"
    with open(config, "wb") as f:
        f.truncate(1 << 30)  # sparse
    code, line = call(capsys, ["train", "--config", config, "--out", tmp_path / "run"])
    assert code == 2
    assert line == f"cnnlab: error: config file {str(config)!r} is 1,073,741,824 bytes; the limit is 1,048,576"


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["fifo", "link to /dev/zero"])
def test_config_fifo_or_device_fails_at_once(tmp_path, kind):
    config = tmp_path / "config.yaml"
    if kind == "fifo":
        os.mkfifo(config)
        expected = f"cnnlab: error: config file {str(config)!r} is a FIFO, not a regular file"
    else:
        config.symlink_to("/dev/zero")
        expected = f"cnnlab: error: config file {str(config)!r} (a link to '/dev/zero') is a device, not a regular file"
    done = run_cli("train", "--config", config, "--out", tmp_path / "run", timeout=60)
    assert done.returncode == 2 and one_line(done.stderr) == expected


@pytest.mark.slow
def test_run_config_json_that_is_a_fifo_fails_at_once(tmp_path):
    """`cnnlab train --config RUN/config.json` repeats a run: a run folder from elsewhere may hold anything there."""
    run = tmp_path / "copied-run"
    run.mkdir()
    os.mkfifo(run / "config.json")
    done = run_cli("train", "--config", run / "config.json", "--out", tmp_path / "again", timeout=60)
    assert done.returncode == 2
    assert (
        one_line(done.stderr)
        == f"cnnlab: error: config file {str(run / 'config.json')!r} is a FIFO, not a regular file"
    )


def test_config_through_a_link_to_a_regular_file_still_works(tmp_path):
    from cnnlab.runfolder.config_file import load_config_file

    real = tmp_path / "real.yaml"
    real.write_text("model: convnet\nepochs: 2\n")
    link = tmp_path / "link.yaml"
    link.symlink_to(real)
    assert load_config_file(link) == {"model": "convnet", "epochs": 2}


def test_deep_model_options_through_the_python_api(tmp_path):
    from cnnlab.runfolder.config import TrainConfig

    deep: dict = {}
    for _ in range(700):
        deep = {"a": deep}
    with pytest.raises(CnnlabError, match=r"^model_options is nested more than 32 levels deep$"):
        TrainConfig(model="convnet", dataset="mnist-sample", model_options=deep).validate()


# ---- 2. a checkpoint's config is validated like a requested one --------------------------------


def tampered_checkpoint(run: Path, folder: Path, **config) -> Path:
    """A copy of the run's best.pt whose saved config has `config` changed (weights and the rest untouched)."""
    checkpoint = torch.load(run / "checkpoints" / "best.pt", map_location="cpu", weights_only=True)
    checkpoint["config"].update(config)
    path = folder / "best.pt"
    torch.save(checkpoint, path)
    return path


CONFIG_CASES = {
    "resize -28": ({"resize": -28}, "resize must be a positive integer, got -28"),
    "resize 10**6": ({"resize": 10**6}, "resize=1000000 is more than 2048 pixels a side"),
    # Passes the bound on resize: the model's own input sizes refuse it, before 8 GB of 2048-pixel batches.
    "resize 2048": ({"resize": 2048}, "convnet takes inputs of 28x28 to 31x31 pixels, got 2048x2048; pass resize=28"),
    "permutation_seed 2**80": (
        {"permute_pixels": True, "permutation_seed": 2**80},
        f"permutation_seed must be an integer from 0 to 4,294,967,295, got {2**80}",
    ),
    "unknown device": ({"device": "tpu"}, "unknown device 'tpu'"),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_checkpoint_config_is_validated_by_load_run(trained_run, tmp_path, case):
    from cnnlab.runs import load_run

    changes, expected = CONFIG_CASES[case]
    file = tampered_checkpoint(trained_run, tmp_path, **changes)
    with pytest.raises(CnnlabError) as caught:
        load_run(file)
    assert str(caught.value).startswith(f"{str(file)!r} holds a config cnnlab cannot use: {expected}"), caught.value


@pytest.mark.parametrize("command", ["eval", "predict", "export", "inspect"])
def test_checkpoint_config_is_one_line_in_every_command(trained_run, tmp_path, capsys, npy_image, command):
    file = tampered_checkpoint(trained_run, tmp_path, resize=-28)
    argv = {
        "eval": ["eval", file, "--device", "cpu"],
        "predict": ["predict", file, npy_image],
        "export": ["export", file, "--format", "torchscript", "-o", tmp_path / "model.pt"],
        "inspect": ["inspect", file, "filters", "-o", tmp_path / "figures"],
    }[command]
    code, line = call(capsys, argv)
    assert code == 2
    assert line == (
        f"cnnlab: error: {str(file)!r} holds a config cnnlab cannot use: resize must be a positive integer, got -28"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "digit.npy"]


def test_seed_out_of_range_is_one_line_in_train(tmp_path, capsys):
    code, line = call(
        capsys, ["train", "convnet", "--dataset", "mnist-sample", "--seed", str(2**80), "--out", tmp_path / "run"]
    )
    assert code == 2 and line == f"cnnlab: error: --seed must be an integer from 0 to 4,294,967,295, got {2**80}"


def test_seed_too_large_for_augmentation_is_one_line_in_train(tmp_path, capsys):
    code, line = call(
        capsys,
        [
            "train",
            "convnet",
            "--dataset",
            "mnist-sample",
            "--augment",
            "--seed",
            "123456789",
            "--out",
            tmp_path / "run",
        ],
    )
    assert code == 2 and line == (
        "cnnlab: error: --seed must be at most 16,777,215 with augment (each step's "
        "augmentation is seeded with seed * 1,000,003^2 + step, which torch takes only below "
        "2^64), got 123456789"
    )
    assert not (tmp_path / "run").exists()


def test_the_real_checkpoint_config_still_loads(trained_run):
    from cnnlab.runs import load_run

    assert load_run(trained_run).config.resize is None


# ---- 3. devices: one check, the one train uses ----------------------------------------------------


def test_unknown_device_is_the_same_line_in_eval_and_train(trained_run, tmp_path, capsys):
    code, line = call(capsys, ["eval", trained_run, "--device", "tpu"])
    expected = "cnnlab: error: unknown device 'tpu' (did you mean 'cpu'?); choose from: auto, cpu, cuda, cuda:N, mps"
    assert code == 2 and line == expected
    code, line = call(
        capsys, ["train", "convnet", "--dataset", "mnist-sample", "--device", "tpu", "--out", tmp_path / "run"]
    )
    assert code == 2 and line == expected.replace("unknown device", "unknown --device")


def test_cuda_device_without_cuda_is_one_line(trained_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, line = call(capsys, ["inspect", trained_run, "mistakes", "--device", "cuda:7", "-o", tmp_path / "figures"])
    assert code == 2
    assert (
        line == "cnnlab: error: --device cuda:7 was asked for but CUDA is not available here; use --device cpu or auto"
    )
    assert not (tmp_path / "figures").exists()


def test_cuda_index_beyond_the_machines_gpus_is_one_line(trained_run, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    code, line = call(capsys, ["eval", trained_run, "--device", "cuda:7"])
    assert code == 2
    assert line == (
        "cnnlab: error: --device cuda:7 was asked for but this machine has 1 CUDA device (cuda:0); "
        "use --device cuda or one of those"
    )


@pytest.mark.parametrize("device", ["tpu", "cuda:x", 7])
def test_load_run_checks_its_device(trained_run, device):
    from cnnlab.runs import load_run

    with pytest.raises(CnnlabError, match=r"^(unknown device|device must be a name)"):
        load_run(trained_run, device=device)


# ---- 4. LoadedRun.predict and load_run's arguments ---------------------------------------------------


@pytest.fixture(scope="module")
def loaded(trained_run):
    from cnnlab.data import load_dataset
    from cnnlab.runs import load_run

    return load_run(trained_run), load_dataset("mnist-sample").test_images[:8]


def test_predict_takes_floats_in_0_1_as_already_scaled(loaded):
    run, images = loaded
    expected = run.predict(images)
    assert torch.allclose(run.predict(images.float() / 255), expected)
    assert torch.allclose(run.predict(images.double() / 255), expected)


def test_predict_takes_numpy_arrays_and_n_h_w_for_one_channel(loaded):
    run, images = loaded
    expected = run.predict(images)
    assert torch.allclose(run.predict(images.numpy()), expected)
    assert torch.allclose(run.predict(images[:, 0]), expected)
    assert torch.allclose(run.predict(images.numpy()[:, 0].astype(np.float32) / 255), expected)


PREDICT_REFUSALS = {
    "bool": (
        lambda x: x > 127,
        TypeError,
        "images must be uint8 pixels 0..255 or floats in [0, 1], shaped (N, 1, 28, 28) or (N, 28, 28); got bool",
    ),
    "int64": (
        lambda x: x.long(),
        TypeError,
        "images must be uint8 pixels 0..255 or floats in [0, 1], shaped (N, 1, 28, 28) or (N, 28, 28); got int64",
    ),
    "numpy int64": (lambda x: x.numpy().astype(np.int64), TypeError, "got a numpy array of int64"),
    "a list": (lambda x: x.tolist(), TypeError, "images must be a torch.Tensor or numpy array of uint8 pixels"),
    "floats 0..255": (
        lambda x: x.float(),
        ValueError,
        "float images must be in [0, 1] (ToTensor's scale), got values in [0, ",
    ),
    "NaN": (lambda x: torch.full(x.shape, float("nan")), ValueError, "images hold NaN or infinite values"),
    "three channels": (
        lambda x: x.expand(-1, 3, -1, -1),
        ValueError,
        "images must be shaped (N, 1, 28, 28) or (N, 28, 28) for this run's dataset; got (8, 3, 28, 28)",
    ),
    "32 pixels": (lambda x: torch.zeros(8, 1, 32, 32, dtype=torch.uint8), ValueError, "got (8, 1, 32, 32)"),
    "5-d": (lambda x: x[None], ValueError, "got (1, 8, 1, 28, 28)"),
    "2-d": (lambda x: x[0, 0], ValueError, "got (28, 28)"),
}


@pytest.mark.parametrize("case", list(PREDICT_REFUSALS))
def test_predict_refuses_what_it_would_misread(loaded, case):
    run, images = loaded
    make, kind, message = PREDICT_REFUSALS[case]
    with pytest.raises(kind) as caught:
        run.predict(make(images))
    assert message in str(caught.value), caught.value


def test_load_run_refuses_an_unknown_checkpoint_choice(trained_run):
    from cnnlab.runs import load_run

    with pytest.raises(CnnlabError, match=r"^which must be 'best' or 'last', got 'worst'$"):
        load_run(trained_run, which="worst")


# ---- 5. load_dataset's arguments ------------------------------------------------------------------------


@pytest.mark.parametrize("name", [123, None, ["mnist"]])
def test_load_dataset_with_a_name_that_is_not_a_string(name):
    from cnnlab.data import load_dataset

    with pytest.raises(CnnlabError, match=r"^dataset must be a name such as 'mnist' \(see list_datasets\(\)\), got "):
        load_dataset(name)


# ---- 6. .npy inputs to predict ------------------------------------------------------------------------


def npy_of_shape(path: Path, shape: tuple, descr: str = "<f8") -> Path:
    """A .npy whose header claims `shape`, its data a sparse hole of the full size (no disk, no time)."""
    from numpy.lib import format as npy_format

    with open(path, "wb") as f:
        npy_format.write_array_header_1_0(f, {"descr": descr, "fortran_order": False, "shape": shape})
        f.truncate(f.tell() + int(np.prod(shape)) * np.dtype(descr).itemsize)
    return path


@pytest.mark.parametrize("shape", [(64, 4096, 4096), (3, 4096, 4096)], ids=["8 GiB", "384 MiB"])
def test_npy_larger_than_the_byte_bound_is_refused_from_its_header(trained_run, tmp_path, capsys, shape):
    path = npy_of_shape(tmp_path / "big.npy", shape)
    start = time.perf_counter()
    code, line = call(capsys, ["predict", trained_run, path])
    size = int(np.prod(shape)) * 8
    assert code == 2 and line == (
        f"cnnlab: error: {str(path)!r}: an array of shape {shape} and dtype float64 is "
        f"{size:,} bytes, more than cnnlab reads (268,435,456); split it or store uint8 pixels"
    )
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_npy_of_non_finite_values_is_one_line(trained_run, tmp_path, capsys, value):
    path = tmp_path / "nan.npy"
    np.save(path, np.full((28, 28), value))
    code, line = call(capsys, ["predict", trained_run, path])
    assert code == 2
    assert line == (
        f"cnnlab: error: {str(path)!r} holds NaN or infinite values; give uint8 pixels 0..255 or floats in [0, 1]"
    )


def test_npy_of_booleans_is_one_line(trained_run, tmp_path, capsys):
    path = tmp_path / "mask.npy"
    np.save(path, np.ones((28, 28), bool))
    code, line = call(capsys, ["predict", trained_run, path])
    assert code == 2 and line.startswith(f"cnnlab: error: {str(path)!r} holds bool values; give uint8 pixels")


def test_npy_and_png_through_a_link_still_predict(trained_run, tmp_path, capsys, npy_image):
    from PIL import Image

    png = tmp_path / "digit.png"
    Image.new("L", (28, 28), 0).save(png)
    for real in (npy_image, png):
        link = tmp_path / f"link{real.suffix}"
        link.symlink_to(real)
        assert main(["predict", str(trained_run), str(link)]) == 0
    assert capsys.readouterr().err == ""


# ---- 7. an exported model whose sidecar names another number of classes -------------------------------


def tiny_onnx(path: Path, classes: int, weight: float = 0.0) -> Path:
    """An ONNX classifier of 28x28 grey images into `classes` scores (Flatten + Linear), batch 1."""
    import warnings

    pytest.importorskip("onnx")
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, classes)).eval()
    torch.nn.init.constant_(model[1].weight, weight)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.zeros(1, 1, 28, 28),),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["input"],
            output_names=["logits"],
        )
    return path


@pytest.fixture
def sidecar_of(trained_run):
    """Write the run's real 10-class sidecar beside a model file."""
    from cnnlab.export.sidecar import build_metadata, write_sidecar
    from cnnlab.runs import load_run

    def write(model_path: Path) -> Path:
        return write_sidecar(model_path, build_metadata(load_run(trained_run), "onnx", model_path.name, 1))

    return write


def test_onnx_with_fewer_classes_than_its_sidecar_is_one_line(tmp_path, capsys, npy_image, sidecar_of):
    pytest.importorskip("onnxruntime")
    model = tiny_onnx(tmp_path / "three.onnx", classes=3)
    sidecar_of(model)
    code, line = call(capsys, ["predict", model, npy_image])
    assert code == 2
    assert line == (
        f"cnnlab: error: {str(model)!r} gives 3 scores per image but its metadata names 10 classes; the "
        "model file and its sidecar do not belong together: re-export with `cnnlab export`"
    )


def test_onnx_giving_nan_scores_is_one_line(tmp_path, capsys, npy_image, sidecar_of):
    pytest.importorskip("onnxruntime")
    model = tiny_onnx(tmp_path / "nan.onnx", classes=10, weight=float("nan"))
    sidecar_of(model)
    code, line = call(capsys, ["predict", model, npy_image])
    assert code == 2
    assert line == (
        f"cnnlab: error: {str(model)!r} gave NaN or infinite scores, so it names no class; check the "
        "model file (re-export with `cnnlab export`)"
    )


def test_onnx_matching_its_sidecar_still_predicts(tmp_path, capsys, npy_image, sidecar_of):
    pytest.importorskip("onnxruntime")
    model = tiny_onnx(tmp_path / "ten.onnx", classes=10)
    sidecar_of(model)
    assert main(["predict", str(model), str(npy_image)]) == 0
    assert capsys.readouterr().err == ""
