"""The user's own datasets as tables (.npz, .csv), Hugging Face folders and parquet, and names for them.

Every file is made here in tmp_path; nothing is downloaded. The config and cache folders point into
tmp_path too, so no test sees the user's names.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlab.cli.main import main
from cnnlab.data import hf, names, tables
from cnnlab.data.hf import read_hf
from cnnlab.data.tables import read_csv, read_npz
from cnnlab.errors import CnnlabError, DataError

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def own_config(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_CONFIG", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "config"


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def pixels(*shape: int) -> np.ndarray:
    return RNG.integers(0, 256, size=shape, dtype=np.uint8)


# --------------------------------------------------------------------------------------------------- npz


def test_npz_keras_layout(tmp_path):
    x_train, y_train = pixels(12, 28, 28), RNG.integers(0, 10, 12).astype(np.uint8)
    x_test, y_test = pixels(5, 28, 28), np.array([0, 1, 2, 3, 9], dtype=np.uint8)
    path = tmp_path / "mnist.npz"
    np.savez_compressed(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    table = read_npz(path)
    assert table.train_images.shape == (12, 1, 28, 28) and table.train_images.dtype == np.uint8
    assert np.array_equal(table.train_images[:, 0], x_train) and np.array_equal(table.test_images[:, 0], x_test)
    assert table.train_labels.dtype == np.int64 and np.array_equal(table.train_labels, y_train)
    assert np.array_equal(table.test_labels, y_test)
    assert table.classes == tuple(str(k) for k in range(10))
    assert "x_train (12, 28, 28) uint8" in table.notes
    assert table.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert table.train_images.flags.writeable and table.train_images.flags.c_contiguous


def test_npz_channels_last_and_first(tmp_path):
    x = pixels(4, 8, 8, 3)
    np.savez(tmp_path / "last.npz", x_train=x, y_train=np.arange(4))
    table = read_npz(tmp_path / "last.npz")
    assert table.train_images.shape == (4, 3, 8, 8)
    assert np.array_equal(table.train_images, x.transpose(0, 3, 1, 2))
    assert any("channels last" in n for n in table.notes)
    first = pixels(4, 1, 8, 8)
    np.savez(tmp_path / "first.npz", x_train=first, y_train=np.arange(4))
    assert np.array_equal(read_npz(tmp_path / "first.npz").train_images, first)


def test_npz_floats_are_scaled_and_noted(tmp_path):
    x = pixels(6, 10, 10)
    np.savez(tmp_path / "unit.npz", x_train=x.astype(np.float32) / 255, y_train=np.zeros(6, int))
    table = read_npz(tmp_path / "unit.npz")
    assert np.array_equal(table.train_images[:, 0], x)
    assert any("in [0, 1]" in n and "scaled by 255" in n for n in table.notes)
    np.savez(tmp_path / "bytes.npz", x_train=x.astype(np.float64), y_train=np.zeros(6, int))
    table = read_npz(tmp_path / "bytes.npz")
    assert np.array_equal(table.train_images[:, 0], x) and any("in [0, 255]" in n for n in table.notes)
    np.savez(tmp_path / "normalised.npz", x_train=x.astype(np.float32) / 255 - 0.5, y_train=np.zeros(6, int))
    with pytest.raises(DataError, match="undo any normalisation") as err:
        read_npz(tmp_path / "normalised.npz")
    one_line(err)


def test_npz_one_hot_and_column_labels(tmp_path):
    y = np.array([2, 0, 1, 2])
    np.savez(tmp_path / "onehot.npz", x_train=pixels(4, 6, 6), y_train=np.eye(3, dtype=np.float32)[y])
    table = read_npz(tmp_path / "onehot.npz")
    assert np.array_equal(table.train_labels, y) and any("one-hot" in n for n in table.notes)
    np.savez(tmp_path / "column.npz", x_train=pixels(4, 6, 6), y_train=y[:, None])  # Keras's CIFAR-10 (N, 1)
    assert np.array_equal(read_npz(tmp_path / "column.npz").train_labels, y)
    np.savez(tmp_path / "soft.npz", x_train=pixels(4, 6, 6), y_train=np.full((4, 3), 1 / 3))
    with pytest.raises(DataError, match="one-hot"):
        read_npz(tmp_path / "soft.npz")


def test_npz_train_only_and_class_names(tmp_path):
    np.savez(
        tmp_path / "mine.npz",
        x_train=pixels(3, 5, 5),
        y_train=np.array([0, 1, 1]),
        class_names=np.array(["cat", "dog"]),
    )
    table = read_npz(tmp_path / "mine.npz")
    assert table.test_images is None and table.test_labels is None
    assert table.classes == ("cat", "dog")
    np.savez(tmp_path / "few.npz", x_train=pixels(3, 5, 5), y_train=np.array([0, 1, 2]), class_names=np.array(["a"]))
    with pytest.raises(DataError, match="class names") as err:
        read_npz(tmp_path / "few.npz")
    one_line(err)
    np.savez(tmp_path / "half.npz", x_train=pixels(3, 5, 5), y_train=np.arange(3), x_test=pixels(1, 5, 5))
    with pytest.raises(DataError, match="no y_test"):
        read_npz(tmp_path / "half.npz")


class _Tripwire:
    """Unpickling this creates a file: proof that pickle ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_npz_pickled_objects_are_refused_unread(tmp_path):
    marker = tmp_path / "unpickled"
    objects = np.empty(2, dtype=object)
    objects[:] = [_Tripwire(marker), _Tripwire(marker)]
    np.savez(tmp_path / "evil.npz", x_train=pixels(2, 4, 4), y_train=objects)
    with pytest.raises(DataError, match="never unpickles") as err:
        read_npz(tmp_path / "evil.npz")
    one_line(err)
    assert not marker.exists()


def test_npz_bad_values_and_shapes(tmp_path):
    x = pixels(3, 4, 4).astype(np.float32)
    x[1, 2, 2] = np.nan
    np.savez(tmp_path / "nan.npz", x_train=x, y_train=np.arange(3))
    with pytest.raises(DataError, match=r"x_train\[1\] holds NaN") as err:
        read_npz(tmp_path / "nan.npz")
    one_line(err)
    np.savez(tmp_path / "wide.npz", x_train=pixels(3, 28, 32), y_train=np.arange(3))
    with pytest.raises(DataError, match="28x32 pixels; cnnlab trains on square images: resize") as err:
        read_npz(tmp_path / "wide.npz")
    one_line(err)
    np.savez(tmp_path / "short.npz", x_train=pixels(3, 4, 4), y_train=np.arange(2))
    with pytest.raises(DataError, match="3 images but y_train 2 labels"):
        read_npz(tmp_path / "short.npz")
    np.savez(tmp_path / "negative.npz", x_train=pixels(3, 4, 4), y_train=np.array([0, -1, 2]))
    with pytest.raises(DataError, match=r"y_train\[1\] is -1"):
        read_npz(tmp_path / "negative.npz")
    np.savez(tmp_path / "other.npz", images=pixels(3, 4, 4))
    with pytest.raises(DataError, match="expected arrays x_train and y_train.*found images"):
        read_npz(tmp_path / "other.npz")
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(DataError, match="not an .npz archive"):
        read_npz(tmp_path / "text.npz")


def test_npz_member_size_is_checked_from_its_header(tmp_path):
    """A header claiming a terabyte is refused before any data is read (or memory taken)."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": (10**6, 10**6)})
    with zipfile.ZipFile(tmp_path / "huge.npz", "w") as archive:
        archive.writestr("x_train.npy", header.getvalue() + b"\0" * 100)
        archive.writestr("y_train.npy", header.getvalue())
    with pytest.raises(DataError, match="more than cnnlab reads") as err:
        read_npz(tmp_path / "huge.npz")
    one_line(err)


def test_npz_symlink_is_refused(tmp_path):
    np.savez(tmp_path / "real.npz", x_train=pixels(2, 4, 4), y_train=np.arange(2))
    (tmp_path / "link.npz").symlink_to(tmp_path / "real.npz")
    with pytest.raises(DataError, match="symbolic link"):
        read_npz(tmp_path / "link.npz")


# --------------------------------------------------------------------------------------------------- CSV


def write_csv(path: Path, labels, images: np.ndarray, header: str | None = None, label_last: bool = False) -> Path:
    flat = images.reshape(len(images), -1)
    names = [f"pixel{i}" for i in range(flat.shape[1])]
    header = header or ",".join(names + ["label"] if label_last else ["label"] + names)
    rows = [
        ",".join([*map(str, row), str(y)] if label_last else [str(y), *map(str, row)])
        for y, row in zip(labels, flat.tolist())
    ]
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def test_csv_numeric_labels_with_a_labelled_test_file(tmp_path):
    x, y = pixels(20, 28, 28), RNG.integers(0, 10, 20)
    train = write_csv(tmp_path / "mnist_train.csv", y, x)
    x_test, y_test = pixels(4, 28, 28), np.array([9, 0, 1, 2])
    test = write_csv(tmp_path / "mnist_test.csv", y_test, x_test)
    table = read_csv(train)
    assert table.train_images.shape == (20, 1, 28, 28) and np.array_equal(table.train_images[:, 0], x)
    assert np.array_equal(table.train_labels, y) and table.train_labels.dtype == np.int64
    assert np.array_equal(table.test_images[:, 0], x_test) and np.array_equal(table.test_labels, y_test)
    assert table.classes == tuple(str(k) for k in range(10))
    assert "test split from mnist_test.csv" in table.notes
    assert table.sha256 == hashlib.sha256(train.read_bytes() + test.read_bytes()).hexdigest()


def test_csv_many_blocks_and_other_spellings(tmp_path, monkeypatch):
    monkeypatch.setattr(tables, "_CSV_BLOCK", 1000)  # many blocks of a few rows: the seams are exercised
    x, y = pixels(50, 6, 6), RNG.integers(0, 3, 50)
    path = write_csv(tmp_path / "digits.csv", y, x, label_last=True)
    text = path.read_text().replace("\n", "\r\n")  # Windows line ends
    path.write_text(text.replace(",0,", ",0.0,").replace(",1,", ", 1 ,") + "\r\n\r\n", newline="")
    table = read_csv(path)
    assert np.array_equal(table.train_images[:, 0], x) and np.array_equal(table.train_labels, y)
    assert table.test_images is None


def test_csv_string_labels_and_first_column_label(tmp_path):
    x = pixels(4, 3, 3)
    path = write_csv(tmp_path / "pets.csv", ["dog", "cat", "dog", "bird"], x, header="kind," + ",".join("p" * 9))
    table = read_csv(path)
    assert table.classes == ("bird", "cat", "dog")
    assert table.train_labels.tolist() == [2, 1, 2, 0]
    assert any("the first column, 'kind', is the label" in n for n in table.notes)


def test_csv_classes_sidecar(tmp_path):
    path = write_csv(tmp_path / "two.csv", [0, 1, 1], pixels(3, 2, 2))
    (tmp_path / "classes.txt").write_text("zero\none\n")
    assert read_csv(path).classes == ("zero", "one")
    write_csv(path, [0, 2, 1], pixels(3, 2, 2))
    with pytest.raises(DataError, match="line 3 has the label '2'.*classes.txt"):
        read_csv(path)


@pytest.mark.parametrize(
    ("row", "match"),
    [
        ("x,1,2,3,4", "line 4 has the label 'x'"),
        ("-1,1,2,3,4", "line 4 has the label '-1'"),
        ("10001,1,2,3,4", "line 4 has the label '10001'.*at most 10,000"),
        ("1,1,2,3", "line 4 has 4 fields where the header has 5"),
        ("1,1,2,3,4,5", "line 4 has 6 fields"),
        ("1,1,2.5,3,4", "line 4 has the pixel value 2.5"),
        ("1,1,256,3,4", "line 4 has the pixel value 256"),
        ("1,1,,3,4", "line 4 holds the pixel '', not a number"),
    ],
)
def test_csv_bad_rows_are_named(tmp_path, row, match):
    path = tmp_path / "bad.csv"
    path.write_text("label,a,b,c,d\n0,0,0,0,0\n1,255,255,255,255\n" + row + "\n2,1,1,1,1\n")
    with pytest.raises(DataError, match=match) as err:
        read_csv(path)
    one_line(err)


def test_csv_integral_floats_pass_and_header_is_required(tmp_path):
    path = tmp_path / "floats.csv"
    path.write_text("label,a,b,c,d\n1,0.0,12.00,255.,3\n")
    assert read_csv(path).train_images.reshape(-1).tolist() == [0, 12, 255, 3]
    path.write_text("1,0,0,0,0\n2,0,0,0,0\n")
    with pytest.raises(DataError, match="add a header line"):
        read_csv(path)
    path.write_text("label,a,b,c,d,e\n1,0,0,0,0,0\n")
    with pytest.raises(DataError, match="5 pixel columns make no square image"):
        read_csv(path)


def test_csv_colour_planes(tmp_path):
    x = pixels(3, 3, 32, 32)  # (N, C, H, W): a row holds every red value, then green, then blue
    path = write_csv(tmp_path / "cifar.csv", [0, 1, 2], x)
    table = read_csv(path)
    assert table.train_images.shape == (3, 3, 32, 32) and np.array_equal(table.train_images, x)
    assert any("3x32x32: three colour planes" in n for n in table.notes)


def test_csv_kaggle_test_file_without_labels_is_ignored(tmp_path):
    path = write_csv(tmp_path / "train.csv", [0, 1], pixels(2, 2, 2))
    (tmp_path / "test.csv").write_text("pixel0,pixel1,pixel2,pixel3\n1,2,3,4\n")
    table = read_csv(path)
    assert table.test_images is None and table.test_labels is None
    assert any("test.csv has no label column" in n for n in table.notes)


# --------------------------------------------------------------------------------------------------- Hugging Face


def png(value: int, size: int = 6) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((size, size), value, np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def hf_data():
    datasets = pytest.importorskip("datasets")
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b", "c"])})

    def make(images: list, labels: list[int]):
        return datasets.Dataset.from_dict({"image": images, "label": labels}, features=features)

    return datasets, make


def test_hf_save_to_disk_with_class_labels(tmp_path, hf_data):
    datasets, make = hf_data
    train = [png(v) for v in (0, 50, 100, 150)]
    test = [png(v) for v in (200, 250)]
    folder = tmp_path / "saved"
    splits = {"train": make([{"bytes": b, "path": None} for b in train], [0, 1, 2, 1])}
    splits["validation"] = make([{"bytes": b, "path": None} for b in test], [2, 0])
    datasets.DatasetDict(splits).save_to_disk(str(folder))
    offline = os.environ.get("HF_DATASETS_OFFLINE")
    data = read_hf(folder)
    assert os.environ.get("HF_DATASETS_OFFLINE") == offline  # set only while reading
    assert data.train == train and data.test == test
    assert data.train_labels.tolist() == [0, 1, 2, 1] and data.test_labels.tolist() == [2, 0]
    assert data.train_labels.dtype == np.int64 and data.classes == ("a", "b", "c")
    assert any("'validation' split is the test split" in n for n in data.notes)
    assert len(data.sha256) == 64 and not list((tmp_path / "cache" / "cnnlab").glob(".hf-*"))


def test_hf_parquet_folder_and_file(tmp_path, hf_data):
    _, make = hf_data
    (tmp_path / "hub" / "data").mkdir(parents=True)
    train, test = [png(1), png(2), png(3)], [png(4)]
    make([{"bytes": b, "path": None} for b in train], [0, 1, 2]).to_parquet(
        str(tmp_path / "hub" / "data" / "train-00000-of-00001.parquet")
    )
    make([{"bytes": b, "path": None} for b in test], [1]).to_parquet(
        str(tmp_path / "hub" / "data" / "test-00000-of-00001.parquet")
    )
    data = read_hf(tmp_path / "hub")
    assert data.train == train and data.test == test and data.test_labels.tolist() == [1]
    assert data.classes == ("a", "b", "c")
    single = read_hf(tmp_path / "hub" / "data" / "test-00000-of-00001.parquet")  # a file alone is the train split
    assert single.train == test and single.test is None


def test_hf_image_paths_stay_inside_the_folder(tmp_path, hf_data, monkeypatch):
    """Parquet keeps an image stored by path as the path: it is read only from inside the dataset's folder."""
    _, make = hf_data
    folder = tmp_path / "byname"
    (folder / "pics").mkdir(parents=True)
    (folder / "pics" / "one.png").write_bytes(png(7))
    (tmp_path / "secret.png").write_bytes(png(9))
    monkeypatch.chdir(folder)
    make([{"bytes": None, "path": "pics/one.png"}], [0]).to_parquet(str(folder / "train.parquet"))
    assert read_hf(folder).train == [png(7)]
    for name in (str(tmp_path / "secret.png"), "../secret.png"):
        make([{"bytes": None, "path": name}], [0]).to_parquet(str(folder / "train.parquet"))
        with pytest.raises(DataError, match="is the file .*secret.png', outside the dataset's folder") as err:
            read_hf(folder)
        one_line(err)


def test_hf_columns_are_named_when_missing(tmp_path, hf_data):
    datasets, _ = hf_data
    plain = datasets.Dataset.from_dict({"picture": [[1, 2]], "target": [0]})
    plain.save_to_disk(str(tmp_path / "plain"))
    with pytest.raises(DataError, match=r"no image column .* the columns are picture \(List\b.*target") as err:
        read_hf(tmp_path / "plain")
    one_line(err)


def test_hf_needs_the_extra(tmp_path, monkeypatch):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "state.json").write_text("{}")
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets now raises ImportError
    with pytest.raises(CnnlabError, match=r'reading a Hugging Face dataset.*pip install "cnnlab\[hf\]"') as err:
        hf.read_hf(tmp_path / "d")
    one_line(err)


# --------------------------------------------------------------------------------------------------- names


def test_names_add_resolve_list_remove(tmp_path, own_config):
    data = tmp_path / "mine.npz"
    np.savez(data, x_train=pixels(1, 2, 2), y_train=np.zeros(1, int))
    assert names.list_names() == {} and names.resolve_name("mine") is None
    assert names.add_name("mine", data) == data.resolve()
    assert names.add_name("folder_2", tmp_path) == tmp_path.resolve()
    assert names.resolve_name("mine") == data.resolve()
    assert names.list_names() == {"folder_2": str(tmp_path.resolve()), "mine": str(data.resolve())}
    stored = json.loads((own_config / "datasets.json").read_text())
    assert stored == {"datasets": names.list_names()}
    names.remove_name("mine")
    assert names.resolve_name("mine") is None and list(names.list_names()) == ["folder_2"]
    with pytest.raises(CnnlabError, match="no dataset is named 'mine'.*folder_2"):
        names.remove_name("mine")


def test_names_default_to_the_xdg_config_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("CNNLAB_CONFIG")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    names.add_name("here", tmp_path)
    assert (tmp_path / "xdg" / "cnnlab" / "datasets.json").is_file()


@pytest.mark.parametrize("bad", ["", "Mine", "-x", "a b", "x" * 65, "../up", "café"])
def test_bad_names_are_refused(tmp_path, bad):
    with pytest.raises(CnnlabError, match="is not allowed") as err:
        names.add_name(bad, tmp_path)
    one_line(err)


def test_names_refuse_catalog_names_and_bad_paths(tmp_path):
    with pytest.raises(CnnlabError, match="one of cnnlab's own datasets"):
        names.add_name("mnist", tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        names.add_name("gone", tmp_path / "nothing.csv")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(DataError, match="not a dataset file"):
        names.add_name("notes", tmp_path / "notes.txt")
    assert names.resolve_name("mnist") is None


@pytest.mark.parametrize(
    "content", ["{not json", '{"datasets": ["x"]}', '{"datasets": {"x": "relative/path"}}', "[1]", "x" * (2 << 20)]
)
def test_damaged_names_file_is_one_line(tmp_path, own_config, content):
    own_config.mkdir()
    (own_config / "datasets.json").write_text(content)
    with pytest.raises(DataError, match="datasets.json") as err:
        names.list_names()
    one_line(err)
    assert names.resolve_name("mnist") is None  # a catalog name never reads the file


def test_cli_add_list_remove(tmp_path, capsys):
    data = tmp_path / "digits.csv"
    write_csv(data, [0], pixels(1, 2, 2))
    assert main(["datasets", "add", "digits", str(data)]) == 0
    out = capsys.readouterr().out
    assert f"registered digits -> {data}" in out and "cnnlab train --dataset digits" in out
    gone = tmp_path / "gone.npz"
    gone.write_bytes(b"")
    assert main(["datasets", "add", "gone", str(gone)]) == 0
    gone.unlink()
    capsys.readouterr()
    assert main(["datasets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[0] == "NAME" and "--data-dir DIR" in lines[-1]
    assert f"  digits -> {data}" in lines and f"  gone   -> {gone} (missing)" in lines
    assert main(["datasets", "--format", "json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["digits"]["path"] == str(data) and rows["digits"]["registered"] is True
    assert rows["gone"]["found"] == "missing" and rows["mnist"]["registered"] is False
    assert main(["datasets", "remove", "gone"]) == 0
    assert "removed the name gone" in capsys.readouterr().out
    assert main(["datasets", "remove", "gone"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cnnlab: error: no dataset is named 'gone'") and err.count("\n") == 1
    assert main(["datasets", "add", "mnist", str(data)]) == 2
    assert "one of cnnlab's own datasets" in capsys.readouterr().err


def test_cli_listing_survives_a_damaged_names_file(own_config, capsys):
    own_config.mkdir()
    (own_config / "datasets.json").write_text("{oops")
    assert main(["datasets"]) == 2
    captured = capsys.readouterr()
    assert captured.out.startswith("NAME") and "mnist-sample" in captured.out
    assert captured.err.startswith("cnnlab: error: ") and "datasets.json" in captured.err
    assert captured.err.count("\n") == 1
