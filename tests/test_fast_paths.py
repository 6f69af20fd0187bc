"""The fast paths (channels-last, bf16 autocast, torch.compile) must give what the plain fp32 path gives;
the CPU allocator tuning must keep step-sized buffers in the heap."""

import json
import os
import platform
import subprocess
import sys

import pytest
import torch

from cnnlab.device import resolve_precision
from cnnlab.models import create_model
from cnnlab.runfolder.checkpoint import load_checkpoint
from cnnlab.training import train

SAMPLE = dict(
    dataset="mnist-sample",
    recipe="none",
    optimizer="sgd",
    lr=0.05,
    momentum=0.9,
    batch_size=64,
    limit_train=512,
    limit_test=200,
    epochs=1,
    progress=False,
    seed=3,
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A fast-cnn (conv + BatchNorm) trained briefly, in eval mode, with a batch of real sample images."""
    result = train(
        model="fast-cnn",
        dataset="mnist-sample",
        epochs=1,
        limit_train=1024,
        progress=False,
        out=str(tmp_path_factory.mktemp("fast") / "run"),
        seed=0,
    )
    from cnnlab.data import load_dataset

    images = load_dataset("mnist-sample").test_images[:256].float().div(255)
    return result.model.cpu().eval(), (images - 0.1307) / 0.3081  # on a GPU machine the run trained there


def agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.argmax(1) == b.argmax(1)).float().mean().item()


@pytest.mark.slow
def test_channels_last_matches_plain(trained):
    model, x = trained
    with torch.inference_mode():
        plain = model(x)
        model = model.to(memory_format=torch.channels_last)
        fast = model(x.contiguous(memory_format=torch.channels_last))
        model.to(memory_format=torch.contiguous_format)
    torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-4)


def test_bf16_autocast_matches_plain(trained):
    model, x = trained
    with torch.inference_mode():
        plain = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fast = model(x).float()
    assert agreement(fast, plain) >= 0.97  # bf16 keeps 8 bits of mantissa: a few near-ties may flip
    assert (fast - plain).abs().max().item() < 0.1 * plain.abs().max().item()


@pytest.mark.slow
def test_compiled_matches_plain(trained):
    model, x = trained
    compiled = torch.compile(model)
    with torch.inference_mode():
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-3, atol=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("option", [{"channels_last": True}, {"precision": "bf16"}])
def test_training_on_a_fast_path_ends_near_the_plain_run(tmp_path, option):
    plain = train(model="convnet", out=str(tmp_path / "plain"), **SAMPLE)
    fast = train(model="convnet", out=str(tmp_path / "fast"), **SAMPLE, **option)
    tolerance = 1e-4 if "channels_last" in option else 0.05
    plain_weights, fast_weights = (load_checkpoint(tmp_path / run)["model"] for run in ("plain", "fast"))
    for name, weight in plain_weights.items():
        torch.testing.assert_close(fast_weights[name], weight, rtol=tolerance, atol=tolerance, msg=name)
    assert abs(fast.summary["final_test_acc"] - plain.summary["final_test_acc"]) <= 0.03


def test_every_zoo_model_predicts_alike_in_channels_last():
    torch.manual_seed(0)
    for name, size in [("lenet", 28), ("resnet-mini", 28), ("inception-mini", 28), ("nin-single", 67)]:
        model = create_model(name).eval()
        x = torch.randn(8, 1, size, size)
        with torch.inference_mode():
            plain = model(x)
            fast = model.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
        torch.testing.assert_close(fast, plain, rtol=1e-3, atol=1e-4, msg=name)


@pytest.mark.slow
def test_precision_auto_is_bf16_only_on_a_cpu_that_computes_it_natively(tmp_path):
    native = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert resolve_precision(torch.device("cpu"), "auto") == ("bf16" if native else "fp32")
    assert resolve_precision(torch.device("cuda"), "auto") == "fp32"  # measured slower for the small nets on a GPU
    assert resolve_precision(torch.device("cpu"), "fp32") == "fp32"
    # The fast recipe asks for auto; the run records what it resolved to.
    result = train(
        model="fast-cnn",
        dataset="mnist-sample",
        epochs=1,
        limit_train=256,
        progress=False,
        device="cpu",
        out=str(tmp_path / "run"),
    )
    assert result.config.precision == "auto"
    expected = "bf16" if native else "fp32"
    assert result.summary["precision"] == expected
    assert json.loads((tmp_path / "run" / "config.json").read_text())["precision"] == expected
    reference = train(
        model="fast-cnn",
        recipe="reference",
        dataset="mnist-sample",
        epochs=1,
        limit_train=256,
        progress=False,
        device="cpu",
        out=str(tmp_path / "reference"),
    )
    assert reference.summary["precision"] == "fp32"  # a reference recipe computes as published


GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# In a fresh interpreter: how many mmapped blocks a freed-and-reallocated 4 MB buffer leaves, before and
# after tune_cpu_allocator (glibc's mallinfo2().hblks counts the live mmapped blocks).
_HBLKS_SCRIPT = """
import ctypes, torch
from cnnlab.device import tune_cpu_allocator
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
def mapped_by_a_4mb_tensor():
    before = libc.mallinfo2().hblks
    x = torch.empty(2**20)
    during = libc.mallinfo2().hblks - before
    del x
    return during
untuned = mapped_by_a_4mb_tensor()
print(untuned, tune_cpu_allocator(), mapped_by_a_4mb_tensor())
"""


@pytest.mark.slow
@pytest.mark.skipif(not GLIBC, reason="the allocator tuning is glibc's")
def test_cpu_allocator_tuning_keeps_step_sized_buffers_in_the_heap():
    result = subprocess.run([sys.executable, "-c", _HBLKS_SCRIPT], capture_output=True, text=True, check=True)
    untuned, applied, tuned = result.stdout.split()
    assert (untuned, applied, tuned) == ("1", "True", "0")  # mapped afresh before; reused from the heap after


@pytest.mark.slow
def test_training_on_the_cpu_tunes_the_allocator(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr("cnnlab.training.loop.tune_cpu_allocator", lambda: calls.append(1) or True)
    train(
        model="mlp-tiny",
        dataset="mnist-sample",
        epochs=1,
        limit_train=64,
        progress=False,
        device="cpu",
        out=str(tmp_path / "run"),
    )
    assert calls == [1]


@pytest.mark.parametrize("idle, expected", [(0.0, 1), (0.4, 1), (1.2, 1), (1.6, 2), (None, 2)])
def test_cpu_threads_follow_the_idle_cores(monkeypatch, idle, expected):
    from cnnlab import device

    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr(device, "_DEFAULT_THREADS", 2)
    monkeypatch.setattr(device, "idle_cores", lambda: idle)
    try:
        torch.set_num_threads(2)
        assert device.tune_cpu_threads() == expected == torch.get_num_threads()
        torch.set_num_threads(3)  # the caller's own count is kept
        assert device.tune_cpu_threads() == 3
        torch.set_num_threads(2)
        monkeypatch.setenv("OMP_NUM_THREADS", "2")  # so is OMP_NUM_THREADS
        assert device.tune_cpu_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.slow
def test_a_run_gives_the_caller_its_thread_count_back_and_a_deterministic_one_keeps_it(monkeypatch, tmp_path):
    from cnnlab import device
    from cnnlab.training import train

    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(device, "_DEFAULT_THREADS", before)
    seen = []
    monkeypatch.setattr(device, "idle_cores", lambda: seen.append(torch.get_num_threads()) or 0.0)
    options = dict(
        model="mlp-tiny", dataset="mnist-sample", recipe="none", epochs=1, limit_train=64, limit_test=64, progress=False
    )
    train(out=str(tmp_path / "a"), **options)
    assert torch.get_num_threads() == before and seen  # tuned during the run, given back after
    seen.clear()
    train(out=str(tmp_path / "b"), deterministic=True, **options)
    assert not seen and torch.get_num_threads() == before


def test_idle_cores_is_a_core_count():
    from cnnlab.device import idle_cores

    idle = idle_cores(0.05)
    assert idle is None or 0 <= idle <= (os.cpu_count() or 1) + 0.01
