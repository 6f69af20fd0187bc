"""`cnnlab export`: ONNX and TorchScript files verified against PyTorch, sidecars, predict through ONNX."""

import dataclasses
import json
import os
import sys

import numpy as np
import pytest
import torch

from cnnlab.cli.main import main
from cnnlab.data import get_spec, load_dataset
from cnnlab.data.transforms import make_permutation
from cnnlab.export import export_model, open_exported, read_metadata, verification_images, verify_export
from cnnlab.export.sidecar import EXTRA_FILE
from cnnlab.runs.load import load_run
from cnnlab.training import train

# The tests load and save TorchScript themselves; torch.jit's deprecation notice is not news here.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")

SAMPLE = dict(
    dataset="mnist-sample",
    progress=False,
    epochs=2,
    batch_size=64,
    optimizer="adam",
    lr=0.01,
    schedule="constant",
    limit_train=1000,
    limit_test=100,
)


def needs_onnx():
    for name in ("onnx", "onnxscript", "onnxruntime"):
        pytest.importorskip(name)


@pytest.fixture(scope="module")
def convnet_run(tmp_path_factory):
    return train(model="convnet", out=str(tmp_path_factory.mktemp("convnet") / "run"), **SAMPLE).run_dir


@pytest.fixture(scope="module")
def mlp_permuted_run(tmp_path_factory):
    """mlp-tiny on permuted pixels: the sidecar must carry the permutation."""
    out = tmp_path_factory.mktemp("mlp") / "run"
    return train(model="mlp-tiny", permute_pixels=True, permutation_seed=3, out=str(out), **SAMPLE).run_dir


@pytest.fixture(scope="module")
def nin_resized_run(tmp_path_factory):
    """nin-single at its smallest input (67) resized from 28, trained channels-last on 128 images."""
    out = tmp_path_factory.mktemp("nin") / "run"
    options = {**SAMPLE, "epochs": 1, "limit_train": 128, "limit_test": 50, "lr": 0.001}
    return train(
        model="nin-single", resize=67, channels_last=True, normalize="0.5,0.5", out=str(out), **options
    ).run_dir


def error_of(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.slow
def test_onnx_export_cli_verifies_and_writes_sidecar(convnet_run, capsys):
    needs_onnx()
    import onnx

    assert main(["export", str(convnet_run), "--format", "onnx"]) == 0
    out = capsys.readouterr().out
    path = convnet_run / "export" / "model.onnx"
    assert f"wrote {path}" in out and "verification passed" in out and "max abs diff" in out
    sidecar = json.loads((convnet_run / "export" / "model.onnx.json").read_text())
    assert sidecar["format"] == "onnx" and sidecar["model"] == "convnet"
    assert sidecar["input"]["shape"] == [1, 1, 28, 28] and sidecar["output"]["shape"] == [1, 10]
    assert sidecar["classes"][3] == "3 - three"
    pre = sidecar["preprocessing"]
    assert pre["mean"] == [0.1307] and pre["std"] == [0.3081] and pre["resize"] is None and pre["permutation"] is None
    check = sidecar["verification"]
    assert check["passed"] and check["images"] == 32 and check["top1_agree"] == 32
    assert check["max_abs_diff"] < 1e-4 and "mnist-sample" in check["source"]
    assert sidecar["opset"] >= 18
    # The file carries the same description inside, for when it travels without its sidecar.
    model = onnx.load(str(path))
    embedded = json.loads({p.key: p.value for p in model.metadata_props}["cnnlab"])
    assert embedded["preprocessing"] == pre and embedded["opset"] == sidecar["opset"]
    # Independently of verify_export: onnxruntime agrees with the checkpoint's model on real test images.
    trained = load_run(convnet_run)
    images = load_dataset("mnist-sample").test_images[:5]
    x = trained.transform()(images)
    with torch.inference_mode():
        expected = trained.model(x)
    got = open_exported(path)(x)
    assert open_exported(path).batch == 1
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    assert not list(path.parent.glob(".*tmp"))  # no temp file left behind
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # a deployable file, not a private temp file


@pytest.mark.slow
def test_torchscript_dynamic_batch_carries_the_permutation(mlp_permuted_run, tmp_path):
    result = export_model(mlp_permuted_run, "torchscript", tmp_path / "mlp.pt", dynamic_batch=True)
    assert result.verification.passed and result.verification.max_abs_diff < 1e-4
    meta = json.loads((tmp_path / "mlp.pt.json").read_text())
    assert meta["input"]["shape"] == ["batch", 1, 28, 28]
    assert meta["preprocessing"]["permutation"] == make_permutation(784, 3).tolist()
    assert meta["preprocessing"]["permutation_seed"] == 3
    extra = {EXTRA_FILE: ""}
    module = torch.jit.load(str(tmp_path / "mlp.pt"), _extra_files=extra)
    assert json.loads(extra[EXTRA_FILE])["preprocessing"] == meta["preprocessing"]
    trained = load_run(mlp_permuted_run)
    x = trained.transform()(load_dataset("mnist-sample").test_images[:7])
    with torch.inference_mode():
        torch.testing.assert_close(module(x), trained.model(x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(module(x[:1]), trained.model(x[:1]), atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_onnx_dynamic_batch_at_an_old_opset(mlp_permuted_run, tmp_path):
    """Opsets below 18 go through torch's legacy exporter; the file takes any batch size."""
    needs_onnx()
    result = export_model(mlp_permuted_run, "onnx", tmp_path / "mlp.onnx", dynamic_batch=True, opset=13)
    assert result.verification.passed and result.metadata["opset"] == 13
    exported = open_exported(tmp_path / "mlp.onnx")
    assert exported.batch is None and exported.metadata["opset"] == 13
    assert exported(torch.zeros(5, 1, 28, 28)).shape == (5, 10)


@pytest.mark.slow
def test_resized_channels_last_run_exports_in_both_formats(nin_resized_run, tmp_path):
    formats = ["torchscript"]
    if all(_importable(n) for n in ("onnx", "onnxscript", "onnxruntime")):
        formats.append("onnx")
    for format in formats:
        result = export_model(
            nin_resized_run, format, tmp_path / f"nin.{'onnx' if format == 'onnx' else 'pt'}", verify_count=8
        )
        assert result.verification.passed and result.verification.count == 8, result.verification.summary()
        assert result.metadata["input"]["shape"] == [1, 1, 67, 67]
        pre = result.metadata["preprocessing"]
        assert pre["resize"] == 67 and pre["stored_size"] == 28 and pre["mean"] == [0.5] and pre["std"] == [0.5]
        assert open_exported(result.path)(torch.zeros(3, 1, 67, 67)).shape == (3, 10)


def _importable(name):
    try:
        __import__(name)
        return True
    except ImportError:
        return False


@pytest.mark.slow
def test_corrupted_onnx_fails_verification(convnet_run, tmp_path):
    needs_onnx()
    import onnx
    from onnx import numpy_helper

    result = export_model(convnet_run, "onnx", tmp_path / "model.onnx")
    trained = load_run(convnet_run)
    assert verify_export(result.path, trained).passed
    model = onnx.load(str(result.path))
    weights = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))  # the classifier's weight
    array = numpy_helper.to_array(weights).copy()
    array.flat[::7] += 0.5
    weights.CopyFrom(numpy_helper.from_array(array, weights.name))
    onnx.save(model, str(result.path))
    check = verify_export(result.path, trained)
    assert not check.passed and check.max_abs_diff > check.tolerance
    assert "FAILED" in check.summary() and "max abs diff" in check.summary()


def test_corrupted_torchscript_fails_verification(convnet_run, tmp_path):
    result = export_model(convnet_run, "torchscript", tmp_path / "model.pt")
    trained = load_run(convnet_run)
    module = torch.jit.load(str(result.path))
    with torch.no_grad():
        next(module.parameters()).add_(0.5)  # the first conv's weights
    torch.jit.save(module, str(result.path))
    check = verify_export(result.path, trained)
    assert not check.passed and check.max_abs_diff > check.tolerance
    assert check.reason == "scores differ beyond tolerance" or check.reason.startswith("top-1 differs")


def test_failed_verification_leaves_no_file_and_exits_nonzero(convnet_run, tmp_path, monkeypatch, capsys):
    from cnnlab.export import exporter

    original = exporter._write

    def write_then_corrupt(trained, format, path, metadata, dynamic_batch, opset):
        original(trained, format, path, metadata, dynamic_batch, opset)
        module = torch.jit.load(str(path))
        with torch.no_grad():
            for p in module.parameters():
                p.mul_(-1)
        torch.jit.save(module, str(path))

    monkeypatch.setattr(exporter, "_write", write_then_corrupt)
    code, err = error_of(capsys, ["export", str(convnet_run), "--format", "torchscript", "-o", str(tmp_path / "m.pt")])
    assert code == 1
    assert err.startswith("cnnlab: error: the exported torchscript model does not match") and "\n" not in err
    assert "max abs diff" in err and "was not written" in err
    assert list(tmp_path.iterdir()) == []  # neither the file, nor its sidecar, nor a temp file


def test_missing_optional_dependency_says_what_to_install(convnet_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    code, err = error_of(capsys, ["export", str(convnet_run), "--format", "onnx", "-o", str(tmp_path / "m.onnx")])
    assert code == 2 and "\n" not in err
    assert err.startswith("cnnlab: error: ONNX export: the optional package")
    assert "onnxruntime" in err and 'pip install "cnnlab[export]"' in err
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "m.onnx").write_bytes(b"not used")
    (tmp_path / "digit.npy").write_bytes(b"")
    code, err = error_of(capsys, ["predict", str(tmp_path / "m.onnx"), str(tmp_path / "digit.npy")])
    assert code == 2 and 'pip install "cnnlab[export]"' in err and "\n" not in err


@pytest.mark.slow
def test_predict_through_onnx_equals_predict_through_the_checkpoint(mlp_permuted_run, tmp_path, capsys):
    needs_onnx()
    export_model(mlp_permuted_run, "onnx", tmp_path / "mlp.onnx")
    test = load_dataset("mnist-sample").test_images
    np.save(tmp_path / "digits.npy", test[::50, 0].numpy())  # 10 digits spread over the classes

    def predict(model_path):
        assert main(["predict", str(model_path), str(tmp_path / "digits.npy"), "--format", "json", "-k", "3"]) == 0
        return json.loads(capsys.readouterr().out)

    from_checkpoint = predict(mlp_permuted_run)
    from_onnx = predict(tmp_path / "mlp.onnx")
    assert len(from_onnx) == 10
    for a, b in zip(from_checkpoint, from_onnx):
        assert a["image"] == b["image"]
        assert [t["class"] for t in a["top"]] == [t["class"] for t in b["top"]]
        assert [t["probability"] for t in a["top"]] == pytest.approx([t["probability"] for t in b["top"]], abs=1e-5)
    # The model learned something, so this compares real predictions, not a constant class.
    assert len({item["top"][0]["class"] for item in from_onnx}) >= 3
    # Without the sidecar, the metadata embedded in the file does the same job.
    (tmp_path / "mlp.onnx.json").unlink()
    assert read_metadata(tmp_path / "mlp.onnx")["preprocessing"]["permutation_seed"] == 3
    assert predict(tmp_path / "mlp.onnx") == from_onnx


def test_bad_options_are_one_line_errors(convnet_run, tmp_path, capsys):
    code, err = error_of(capsys, ["export", str(convnet_run), "--format", "onnx", "-o", str(tmp_path / "m.pt")])
    assert code == 2 and "looks like a torchscript file but --format is onnx" in err
    code, err = error_of(capsys, ["export", str(convnet_run), "--format", "torchscript", "--opset", "17"])
    assert code == 2 and "--opset applies to --format onnx only" in err
    code, err = error_of(capsys, ["export", str(tmp_path / "nowhere"), "--format", "torchscript"])
    assert code == 2 and "no such run folder or checkpoint" in err
    code, err = error_of(capsys, ["export", str(convnet_run), "--verify-images", "0"])
    assert code == 2 and "--verify-images must be a positive integer, got 0" in err
    if _importable("onnx") and _importable("onnxscript") and _importable("onnxruntime"):
        code, err = error_of(capsys, ["export", str(convnet_run), "--opset", "3", "-o", str(tmp_path / "m.onnx")])
        assert code == 2 and "--opset must be between 7 and" in err and "got 3" in err
    assert list(tmp_path.iterdir()) == []


def test_verification_images_fall_back_when_the_dataset_is_missing(convnet_run):
    trained = load_run(convnet_run)
    images, source = verification_images(trained, 16)
    assert images.shape == (16, 1, 28, 28) and source == "16 test images of mnist-sample"
    # Full MNIST is not on this (isolated, offline) machine: its embedded sample stands in.
    mnist = dataclasses.replace(trained, config=trained.config.replace(dataset="mnist"), spec=get_spec("mnist"))
    images, source = verification_images(mnist, 16)
    assert images.shape == (16, 1, 28, 28) and source == "16 test images of mnist-sample (mnist is not on this machine)"
    assert torch.equal(images, load_dataset("mnist-sample").test_images[images_index(16, 500)])
    # CIFAR-10 has no embedded sample: a seeded random batch of its shape, the same every time.
    cifar = dataclasses.replace(trained, config=trained.config.replace(dataset="cifar10"), spec=get_spec("cifar10"))
    images, source = verification_images(cifar, 4)
    assert images.shape == (4, 3, 32, 32) and images.dtype == torch.uint8 and "seeded random images" in source
    assert torch.equal(images, verification_images(cifar, 4)[0])


def images_index(count, total):
    return torch.linspace(0, total - 1, count).round().long()
