"""Your own network as a model: `path/to/file.py:Name` and `package.module:Name` (cnnlab.models.custom).

Every model file is written into tmp_path, so each test's names are its own. A file that writes a
marker when imported proves when user code did (and did not) run.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from cnnlab.cli.main import main
from cnnlab.errors import CnnlabError
from cnnlab.models import check_input_size, create_model, custom, input_sizes, list_models, model_info, summarize
from cnnlab.models.custom import (
    TrustRequired,
    is_custom,
    load_from_copy,
    load_user_model,
    name_for,
    probe_input_sizes,
    register_instance,
    source_of,
)

# Two 3x3 convs, each followed by a 2x2 max-pool, then a global average pool: any size from 4 up.
NET = """
from torch import nn

class Net(nn.Module):
    def __init__(self, in_channels=1, num_classes=10, width=8):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))

    def forward(self, x):
        return self.head(self.features(x))

def make_net(in_channels, num_classes):
    return Net(in_channels=in_channels, num_classes=num_classes, width=4)
"""

# A linear layer right after the flatten: exactly 28x28.
FLAT = """
from torch import nn

class Flat(nn.Module):
    def __init__(self, in_channels, num_classes):
        super().__init__()
        self.fc = nn.Linear(in_channels * 28 * 28, num_classes)

    def forward(self, x):
        return self.fc(x.flatten(1))

class Pooled(nn.Module):  # a 2x2 pool before the fixed linear: 28x28 and 29x29 both pool to 14x14
    def __init__(self, in_channels, num_classes):
        super().__init__()
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(in_channels * 14 * 14, num_classes)

    def forward(self, x):
        return self.fc(self.pool(x).flatten(1))
"""


def write(folder: Path, name: str, code: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(code))
    return path


def marker_net(folder: Path, name: str = "spy.py") -> tuple[Path, Path]:
    """A model file that writes a marker file when it is imported."""
    marker = folder / "imported.marker"
    code = f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n" + textwrap.dedent(NET)
    return write(folder, name, code), marker


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text and "Traceback" not in text
    return text


# ---- names -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, expected",
    [
        ("net.py:Net", True),
        ("path/to/net.py:make_net", True),
        ("pkg.mod:Net", True),
        ("C:\\models\\net.py:Net", True),
        ("instance:Net-1f2e3d4c", True),
        ("lenet", False),
        ("C:\\models", False),
        ("net.py:", False),
        (":Net", False),
        ("net.py:Outer.Inner", False),
    ],
)
def test_is_custom(name, expected):
    assert is_custom(name) is expected


# ---- loading a file ------------------------------------------------------------------------
def test_a_class_in_a_file(tmp_path):
    path = write(tmp_path, "net.py", NET)
    name = load_user_model(f"{path}:Net")
    assert name == f"{path.resolve()}:Net" and load_user_model(f"{path}:Net") == name  # idempotent
    model = create_model(name, in_channels=3, num_classes=5)
    assert model(torch.zeros(2, 3, 28, 28)).shape == (2, 5)
    info = model_info(name)
    assert (info.family, info.paper) == ("custom", str(path.resolve()))
    assert (info.min_input_size, info.max_input_size, info.default_input_size) == (4, None, 28)
    assert info.num_params == sum(p.numel() for p in create_model(name).parameters())
    assert info.options == {"width": "default 8"} and info.fast_recipe == info.reference_recipe == {}
    assert name not in list_models()
    assert source_of(name) == (path.resolve(), sha(path))
    assert type(model).__module__.startswith("cnnlab_user_models.net_")
    assert str(tmp_path) not in sys.path  # its folder was on sys.path only while it ran


def test_a_relative_name_is_made_absolute(tmp_path, monkeypatch):
    write(tmp_path, "net.py", NET)
    monkeypatch.chdir(tmp_path)
    assert load_user_model("net.py:Net") == f"{tmp_path / 'net.py'}:Net"
    assert model_info("net.py:Net").name == f"{tmp_path / 'net.py'}:Net"  # found under either spelling


def test_a_factory_function(tmp_path):
    name = load_user_model(f"{write(tmp_path, 'net.py', NET)}:make_net")
    model = create_model(name, 1, 10)
    assert model.head[-1].in_features == 4 and model(torch.zeros(1, 1, 28, 28)).shape == (1, 10)


def test_a_model_taking_image_size_is_built_for_it(tmp_path):
    code = """
    from torch import nn

    def mlp(in_channels, num_classes, image_size=28, hidden=16):
        return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size**2, hidden), nn.ReLU(),
                             nn.Linear(hidden, num_classes))
    """
    name = load_user_model(f"{write(tmp_path, 'mlp.py', code)}:mlp")
    assert input_sizes(name) == (1, None, 28)  # it is rebuilt for every size tried
    model = create_model(name, image_size=20)
    assert model[1].in_features == 400 and model(torch.zeros(2, 1, 20, 20)).shape == (2, 10)
    assert create_model(name)[1].in_features == 28 * 28  # the default size
    assert model_info(name).options == {"hidden": "default 16"}


def test_model_options_pass_through_and_a_bad_one_is_one_line(tmp_path):
    name = load_user_model(f"{write(tmp_path, 'net.py', NET)}:Net")
    assert create_model(name, width=3).head[-1].in_features == 3
    with pytest.raises(CnnlabError) as err:
        create_model(name, widht=3)
    assert one_line(err) == f"unknown option 'widht' for model {name!r} (did you mean 'width'?); valid options: width"
    with pytest.raises(CnnlabError, match="it takes no options"):
        create_model(load_user_model(f"{tmp_path / 'net.py'}:make_net"), width=3)


def test_a_name_that_is_missing_or_no_model(tmp_path):
    path = write(tmp_path, "net.py", NET + "\nnot_a_model = 3\nclass Plain:\n    pass\nnet = Net()\n")
    with pytest.raises(CnnlabError) as err:
        load_user_model(f"{path}:Nett")
    assert "defines no 'Nett' (did you mean 'Net'?)" in one_line(err) and "it defines Net, make_net" in str(err.value)
    with pytest.raises(CnnlabError, match="'int', not an nn.Module subclass or a function returning one"):
        load_user_model(f"{path}:not_a_model")
    with pytest.raises(CnnlabError, match="Plain .* is a class but not an nn.Module subclass"):
        load_user_model(f"{path}:Plain")
    with pytest.raises(CnnlabError, match="net .* is an nn.Module instance, not a class or function"):
        load_user_model(f"{path}:net")


def test_a_model_that_builds_no_module_or_raises_is_one_line(tmp_path):
    code = """
    def numbers(in_channels, num_classes):
        return 42

    def broken(in_channels, num_classes):
        raise ValueError("no good\\nsecond line")

    def no_channels(num_classes):
        return None
    """
    path = write(tmp_path, "odd.py", code)
    with pytest.raises(CnnlabError) as err:
        create_model(load_user_model(f"{path}:numbers"))
    assert one_line(err).endswith("numbers(in_channels=1, num_classes=10) returned int, not an nn.Module")
    with pytest.raises(CnnlabError) as err:
        create_model(load_user_model(f"{path}:broken"))
    assert str(path) in one_line(err) and "raised ValueError: no good (line 6)" in str(err.value)
    with pytest.raises(CnnlabError, match=r"must take the keyword arguments in_channels and num_classes"):
        load_user_model(f"{path}:no_channels")


def test_a_model_with_the_wrong_output_is_one_line(tmp_path):
    code = """
    from torch import nn

    def features(in_channels, num_classes):
        return nn.Conv2d(in_channels, num_classes, 3)
    """
    name = load_user_model(f"{write(tmp_path, 'feat.py', code)}:features")
    with pytest.raises(CnnlabError) as err:
        model_info(name)
    assert "returns (2, 10, 26, 26) for a batch of 2 images of 28x28" in one_line(err)


def test_a_forward_with_a_bug_is_reported_at_once(tmp_path):
    code = """
    from torch import nn

    class Buggy(nn.Module):
        def __init__(self, in_channels, num_classes):
            super().__init__()

        def forward(self, x):
            return undefined_name(x)
    """
    path = write(tmp_path, "buggy.py", code)
    with pytest.raises(CnnlabError) as err:
        model_info(load_user_model(f"{path}:Buggy"))
    assert f"{path}:9: NameError: name 'undefined_name' is not defined" in one_line(err)


@pytest.mark.parametrize(
    "code, line, error",
    [
        ("from torch import nn\n\nclass Net(nn.Module)\n    pass\n", 3, "SyntaxError: expected ':'"),
        ("import torch\nraise RuntimeError('kaput')\n", 2, "RuntimeError: kaput"),
        ("import no_such_module_for_cnnlab\n", 1, "ModuleNotFoundError: No module named 'no_such_module_for_cnnlab'"),
    ],
)
def test_a_file_that_fails_to_import_is_one_line_with_its_line(tmp_path, code, line, error):
    path = write(tmp_path, "bad.py", code)
    with pytest.raises(CnnlabError) as err:
        load_user_model(f"{path}:Net")
    assert one_line(err) == f"{path}:{line}: {error}"
    assert not any(m.startswith("cnnlab_user_models.bad_") for m in sys.modules)


def test_what_is_not_a_python_file(tmp_path):
    write(tmp_path, "net.txt", NET)
    with pytest.raises(CnnlabError, match="is not a Python file: a model file's name ends in .py"):
        load_user_model(f"{tmp_path / 'net.txt'}:Net")
    with pytest.raises(CnnlabError, match="no such file"):
        load_user_model(f"{tmp_path / 'absent.py'}:Net")
    (tmp_path / "folder.py").mkdir()
    with pytest.raises(CnnlabError, match="is a folder, not a regular file"):
        load_user_model(f"{tmp_path / 'folder.py'}:Net")
    os.mkfifo(tmp_path / "fifo.py")
    with pytest.raises(CnnlabError, match="is a FIFO, not a regular file"):  # refused without blocking
        load_user_model(f"{tmp_path / 'fifo.py'}:Net")
    write(tmp_path, "big.py", "#" * (custom.MAX_SOURCE_BYTES + 1))
    with pytest.raises(CnnlabError, match="the limit is 1,048,576"):
        load_user_model(f"{tmp_path / 'big.py'}:Net")


def test_a_symlink_the_user_names_is_followed(tmp_path):
    real = write(tmp_path / "elsewhere", "model_code.py", NET)
    (tmp_path / "net.py").symlink_to(real)
    name = load_user_model(f"{tmp_path / 'net.py'}:Net")
    assert name == f"{tmp_path / 'net.py'}:Net"  # the name the user gave
    assert source_of(name) == (real, sha(real))  # the file that ran


def test_a_changed_file_is_loaded_again(tmp_path):
    path = write(tmp_path, "net.py", NET)
    name = load_user_model(f"{path}:Net")
    first = model_info(name).num_params
    path.write_text(textwrap.dedent(NET).replace("width=8", "width=16"))
    assert load_user_model(f"{path}:Net") == name
    assert model_info(name).num_params > first and source_of(name)[1] == sha(path)


# ---- module form ----------------------------------------------------------------------------
def test_a_module_path(tmp_path, monkeypatch):
    package = f"userpkg_{os.getpid()}_{tmp_path.name}".replace("-", "_")
    write(tmp_path, f"{package}/__init__.py", "")
    module = write(tmp_path, f"{package}/nets.py", NET)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    try:
        name = load_user_model(f"{package}.nets:Net")
        assert name == f"{package}.nets:Net"
        assert create_model(name)(torch.zeros(1, 1, 8, 8)).shape == (1, 10)
        assert source_of(name) == (module.resolve(), sha(module))
        assert model_info(name).paper == f"{package}.nets"
        assert os.getcwd() not in sys.path[:1]  # the current folder was first only for the import
        assert name_for(sys.modules[f"{package}.nets"].Net) == name
    finally:
        for key in [k for k in sys.modules if k.split(".")[0] == package]:
            del sys.modules[key]
    with pytest.raises(CnnlabError, match="no module named 'no_such_pkg_cnnlab' in the current folder"):
        load_user_model("no_such_pkg_cnnlab.nets:Net")


# ---- input sizes found by trying -----------------------------------------------------------
def test_sizes_found_by_trying(tmp_path):
    path = write(tmp_path, "flat.py", FLAT)
    flat = load_user_model(f"{path}:Flat")
    assert input_sizes(flat) == (28, 28, 28)
    pooled = load_user_model(f"{path}:Pooled")
    assert input_sizes(pooled) == (28, 29, 28)
    net = load_user_model(f"{write(tmp_path, 'net.py', NET)}:Net")
    assert probe_input_sizes(net, 1, 10) == (4, None, 28) == probe_input_sizes(net, 3, 7)


def test_check_input_size_wording_for_a_custom_model(tmp_path):
    name = load_user_model(f"{write(tmp_path, 'flat.py', FLAT)}:Flat")
    with pytest.raises(CnnlabError) as err:
        check_input_size(name, 32)
    assert one_line(err) == f"{name} takes inputs of exactly 28x28 pixels, got 32x32; pass resize=28"
    model = create_model(name)
    with pytest.raises(CnnlabError) as forward:  # the model's own check, before any layer runs
        model(torch.zeros(1, 1, 32, 32))
    assert str(forward.value) == str(err.value)
    with pytest.raises(CnnlabError, match="built for 1 input channel"):
        model(torch.zeros(1, 3, 28, 28))
    with pytest.raises(CnnlabError, match="exactly 28x28 pixels, got 30x30"):
        create_model(name, image_size=30)
    net = load_user_model(f"{write(tmp_path, 'net.py', NET)}:Net")
    with pytest.raises(CnnlabError, match=r"takes inputs of 4x4 pixels or larger, got 3x3; pass resize=28"):
        check_input_size(net, 3)


def test_declared_sizes_skip_the_search(tmp_path):
    code = textwrap.dedent(NET) + "\nNet.min_input_size = 16\nNet.default_input_size = 32\n"
    name = load_user_model(f"{write(tmp_path, 'net.py', code)}:Net")
    assert input_sizes(name) == (16, None, 32)


def test_a_slow_search_stops_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(custom, "PROBE_SECONDS", 0.0)
    name = load_user_model(f"{write(tmp_path, 'flat.py', FLAT)}:Pooled")
    with pytest.raises(CnnlabError) as err:
        model_info(name)
    assert "finding the input sizes Pooled takes stopped after" in one_line(err)
    assert "give Pooled the attributes min_input_size" in str(err.value)


def test_the_search_leaves_the_random_state_alone(tmp_path):
    name = load_user_model(f"{write(tmp_path, 'net.py', NET)}:Net")
    torch.manual_seed(0)
    model_info(name)
    after = torch.rand(3)
    torch.manual_seed(0)
    assert torch.equal(torch.rand(3), after)


# ---- never importing what a name merely mentions ---------------------------------------------
def test_an_unloaded_custom_model_is_refused_without_running_it(tmp_path):
    path, marker = marker_net(tmp_path)
    name = f"{path}:Net"
    for call in (lambda: model_info(name), lambda: create_model(name), lambda: check_input_size(name, 28)):
        with pytest.raises(CnnlabError) as err:
            call()
        assert one_line(err).startswith(f"model {name!r} is your own code and is not loaded: ")
    assert not marker.exists()
    load_user_model(name)
    assert marker.exists()


def test_reopening_from_the_runs_copy_needs_trust(tmp_path):
    original, marker = marker_net(tmp_path / "mine")
    name = f"{original}:Net"
    copy = tmp_path / "run" / "model" / "spy.py"
    copy.parent.mkdir(parents=True)
    copy.write_bytes(original.read_bytes())
    original.unlink()  # reopening runs the copy, never the original path
    with pytest.raises(TrustRequired) as err:
        load_from_copy(name, copy, sha(copy), trust_code=False)
    assert one_line(err) == (
        f"{copy} is Python code the run's model needs; reopening the run executes it: pass --trust-code "
        "(load_run(..., trust_code=True)) only if you trust where this run came from"
    )
    assert not marker.exists()
    with pytest.raises(CnnlabError, match="is your own code and is not loaded"):
        model_info(name)
    load_from_copy(name, copy, sha(copy), trust_code=True)
    assert marker.exists()
    assert create_model(name)(torch.zeros(1, 1, 28, 28)).shape == (1, 10)
    assert source_of(name) == (copy, sha(copy))
    load_from_copy(name, copy, sha(copy), trust_code=False)  # this very code is loaded already: nothing to run


def test_a_tampered_or_linked_copy_is_refused_before_running(tmp_path):
    original, marker = marker_net(tmp_path / "mine")
    name = f"{original}:Net"
    recorded = sha(original)
    copy = tmp_path / "run" / "spy.py"
    copy.parent.mkdir()
    copy.write_bytes(original.read_bytes() + b"\nprint('extra')\n")
    with pytest.raises(CnnlabError) as err:
        load_from_copy(name, copy, recorded, trust_code=True)
    assert "does not match the sha256 recorded in config.json; the run was altered" in one_line(err)
    linked = tmp_path / "run" / "linked.py"
    linked.symlink_to(original)
    with pytest.raises(CnnlabError, match="is a symbolic link"):
        load_from_copy(name, linked, recorded, trust_code=True)
    assert not marker.exists()


def test_an_instance_cannot_be_reopened_in_another_process(tmp_path):
    with pytest.raises(CnnlabError) as err:
        load_from_copy("instance:Net-00000000", tmp_path / "none.py", "0" * 64, trust_code=True)
    assert "cannot be reopened" in one_line(err)
    with pytest.raises(CnnlabError, match="was an nn.Module instance in another Python process"):
        model_info("instance:Net-00000000")


# ---- objects: classes, functions, instances ---------------------------------------------------
def test_name_for_a_class_or_function_from_a_file(tmp_path):
    path = write(tmp_path, "net.py", NET)
    name = load_user_model(f"{path}:Net")
    module = sys.modules[type(create_model(name)).__module__]
    assert name_for(module.Net) == name
    assert name_for(module.make_net) == f"{path}:make_net"
    assert load_user_model(name_for(module.make_net)) == f"{path}:make_net"


def test_name_for_refuses_what_cannot_be_imported_again():
    class Local(nn.Module):
        pass

    with pytest.raises(CnnlabError, match="not defined at the top level"):
        name_for(Local)
    Local.__module__ = "__main__"
    with pytest.raises(CnnlabError) as err:
        name_for(Local)
    assert "__main__" in one_line(err) and "pass an instance instead" in str(err.value)
    assert "save Local in a file and pass 'file.py:Local'" in str(err.value)
    with pytest.raises(CnnlabError, match="nn.Module instance"):
        name_for(nn.Linear(2, 2))


def test_an_instance_is_registered_with_a_warning():
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))
    with pytest.warns(UserWarning, match="cannot be reopened"):
        name = register_instance(net)
    assert name.startswith("instance:Sequential-") and is_custom(name)
    model = create_model(name)
    assert model is not net and torch.equal(model[0].weight, net[0].weight)
    assert model_info(name).min_input_size == 1
    with pytest.raises(CnnlabError, match="was built for 1 input channel.* and 10 classes, but the data has 3 and 10"):
        create_model(name, in_channels=3)
    with pytest.raises(CnnlabError, match="no source file"):
        source_of(name)


# ---- pickling, summary ----------------------------------------------------------------------
def test_a_file_model_pickles(tmp_path):
    name = load_user_model(f"{write(tmp_path, 'net.py', NET)}:Net")
    model = create_model(name)
    clone = pickle.loads(pickle.dumps(model))
    assert torch.equal(clone(torch.ones(1, 1, 28, 28)), model(torch.ones(1, 1, 28, 28)))


def test_summarize_a_custom_model(tmp_path):
    name = load_user_model(f"{write(tmp_path, 'net.py', NET)}:Net")
    summary = summarize(create_model(name), 28, 1)
    assert summary.model == "Net" and summary.output_shape == (1, 10)
    assert summary.total_params == model_info(name).num_params and summary.macs > 0


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_summary_of_a_model_file(tmp_path, capsys):
    path = write(tmp_path, "net.py", NET)
    code, out, _ = run_cli(capsys, "summary", f"{path}:Net")
    assert code == 0
    assert re.search(r"features.0 +Conv2d +\(1, 8, 28, 28\)", out) and "head.2" in out
    assert f"model: {path}:Net, input (1, 1, 28, 28), output (1, 10)" in out
    code, out, _ = run_cli(
        capsys, "summary", f"{path}:Net", "--in-channels", "3", "--input-size", "8", "--model-options",
        '{"width": 2}', "--format", "json",
    )  # fmt: skip
    data = json.loads(out)
    assert code == 0 and data["name"] == f"{path}:Net" and data["input_shape"] == [1, 3, 8, 8]
    assert data["layers"][0]["output_shape"] == [1, 2, 8, 8]


def test_cli_summary_errors_of_a_model_file_are_one_line(tmp_path, capsys):
    flat = write(tmp_path, "flat.py", FLAT)
    bad = write(tmp_path, "bad.py", "def Net(:\n")
    for argv, message in [
        (["summary", f"{flat}:Flat", "--input-size", "32"], "takes inputs of exactly 28x28 pixels, got 32x32"),
        (["summary", f"{bad}:Net"], f"{bad}:1: SyntaxError: "),
        (["summary", f"{flat}:Flat", "--model-options", '{"width": 2}'], "unknown option 'width'"),
        (["summary", f"{tmp_path / 'absent.py'}:Net"], "no such file"),
    ]:
        code, out, err = run_cli(capsys, *argv)
        assert code == 2 and out == "" and err.startswith("cnnlab: error: ") and err.count("\n") == 1
        assert message in err


def test_nothing_warns_when_loading_a_file(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        name = load_user_model(f"{write(tmp_path, 'net.py', NET)}:Net")
        create_model(name)
