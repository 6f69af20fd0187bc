"""Your own images: ImageFolder layouts, bad input as one line, the content-keyed cache, mmap and the split."""

from __future__ import annotations

import io
import os
import shutil
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.data import decode, imported, load_dataset
from cnnlab.data.imported import ImportOptions, check_source, is_own_dataset, load_own, spec_from_record
from cnnlab.errors import CnnlabError, DataError


def image(path: Path, size: tuple[int, int] = (8, 8), mode: str = "L", seed: int = 0, fmt: str | None = None) -> Path:
    """A small random image file (PNG unless the suffix or `fmt` says otherwise)."""
    rng = np.random.default_rng(seed)
    bands = {"L": 1, "RGB": 3, "RGBA": 4, "LA": 2}[mode]
    pixels = rng.integers(0, 256, (size[1], size[0], bands), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels[..., 0] if bands == 1 else pixels, mode).save(path, fmt)
    return path


def folder(root: Path, counts: dict[str, int], mode: str = "L", size: tuple[int, int] = (8, 8), seed: int = 0) -> Path:
    for c, (name, count) in enumerate(counts.items()):
        for i in range(count):
            image(root / name / f"{i:03d}.png", size, mode, seed=seed * 1000 + c * 100 + i)
    return root


def load(path: Path | str, **options) -> imported.Dataset:
    mmap = options.pop("mmap", None)
    return load_own(str(path), ImportOptions(**options), progress=False, mmap=mmap)


def one_line_error(path: Path | str, match: str, **options) -> str:
    with pytest.raises(DataError) as info:
        load(path, **options)
    message = str(info.value)
    assert "\n" not in message and match in message, message
    return message


@pytest.fixture
def calls(monkeypatch):
    """How often the probe (read and hash) and decode passes ran."""
    counts = {"probe": 0, "decode": 0}
    probe, decode_into = decode.probe, decode.decode_into

    def counted_probe(*args, **kwargs):
        counts["probe"] += 1
        return probe(*args, **kwargs)

    def counted_decode(*args, **kwargs):
        counts["decode"] += 1
        return decode_into(*args, **kwargs)

    monkeypatch.setattr(decode, "probe", counted_probe)
    monkeypatch.setattr(decode, "decode_into", counted_decode)
    return counts


# ------------------------------------------------------------------------------------------------ layouts


def test_flat_classes_gray_with_a_stratified_split(tmp_path):
    root = folder(tmp_path / "shapes", {"dog": 5, "cat": 5, "bird": 10})
    data = load(root)
    assert data.classes == ("bird", "cat", "dog")  # sorted: labels 0..K-1 as ImageFolder gives them
    assert (data.channels, data.image_size, data.name, data.source) == (1, 8, "shapes", str(root))
    assert data.spec.format == "own" and data.spec.hflip is False
    assert data.train_images.shape == (16, 1, 8, 8) and data.test_images.shape == (4, 1, 8, 8)
    assert data.train_images.dtype == torch.uint8 and data.train_labels.dtype == torch.int64
    assert torch.bincount(data.test_labels).tolist() == [2, 1, 1]  # 20% of each class
    origin = data.origin
    assert origin is not None
    assert origin["kind"] == "folder" and origin["path"] == str(root) and origin["name"] == "shapes"
    assert origin["split"] == "stratified 20% test, seed 0" and origin["sizes_seen"] == {"8x8": 20}
    assert (origin["train_size"], origin["test_size"], origin["skipped"]) == (16, 4, [])
    assert len(origin["sha256"]) == 64 and origin["options"]["test_fraction"] == 0.2
    # The pixels are the files' own, and mean/std are the train split's.
    first = np.asarray(Image.open(root / "bird" / "000.png"))
    assert any(np.array_equal(first, img[0].numpy()) for img in data.train_images)
    assert data.mean == pytest.approx((data.train_images.double().mean().item() / 255,), abs=1e-5)
    assert data.std == pytest.approx((data.train_images.double().std(unbiased=False).item() / 255,), abs=1e-5)


@pytest.mark.parametrize("test_name", ["test", "val", "valid", "validation"])
def test_train_and_test_folders(tmp_path, test_name):
    root = tmp_path / "data"
    folder(root / "train", {"a": 3, "b": 4})
    folder(root / test_name, {"b": 2}, seed=1)  # test classes: a subset of train's
    data = load(root)
    assert data.classes == ("a", "b")
    assert data.train_labels.tolist() == [0, 0, 0, 1, 1, 1, 1] and data.test_labels.tolist() == [1, 1]
    assert data.origin["split"] == f"folders: train/{test_name}"


def test_train_folder_alone_is_split_and_a_class_named_train_is_a_class(tmp_path):
    only_train = folder(tmp_path / "one" / "train", {"a": 5, "b": 5}).parent
    assert load(only_train).origin["split"] == "stratified 20% test, seed 0"
    classes = folder(tmp_path / "vehicles", {"bus": 3, "train": 3})  # train/ holds images: it is a class
    assert load(classes).classes == ("bus", "train")


def test_test_classes_must_be_train_classes(tmp_path):
    root = tmp_path / "data"
    folder(root / "train", {"a": 2, "b": 2})
    folder(root / "test", {"a": 1, "zebra": 1})
    one_line_error(root, "class folder(s) zebra are not in")


def test_nested_folders_inside_a_class_are_searched(tmp_path):
    root = folder(tmp_path / "d", {"a": 2, "b": 2})
    image(root / "a" / "2024" / "june" / "x.png")
    assert load(root).origin["train_size"] + load(root).origin["test_size"] == 5


def test_rgb_inferred_when_one_image_has_colour_and_gray_is_repeated(tmp_path):
    root = folder(tmp_path / "d", {"a": 3, "b": 3})
    image(root / "b" / "colour.png", mode="RGB")
    data = load(root, test_fraction=0.0)
    assert data.channels == 3 and data.origin["channels"] == 3 and len(data.mean) == 3
    gray = np.asarray(Image.open(root / "a" / "000.png"))
    row = data.train_images[0].numpy()
    assert all(np.array_equal(row[c], gray) for c in range(3))


def test_forced_channels_and_size(tmp_path):
    root = folder(tmp_path / "d", {"a": 3, "b": 3}, mode="RGB", size=(16, 16))
    gray = load(root, channels=1, image_size=4)
    assert gray.train_images.shape[1:] == (1, 4, 4) and gray.origin["options"]["channels"] == 1
    colour = load(folder(tmp_path / "g", {"a": 2, "b": 2}), channels=3)
    assert colour.train_images.shape[1:] == (3, 8, 8)


def test_mixed_sizes_are_resized_and_reported(tmp_path, capsys):
    root = folder(tmp_path / "d", {"a": 3, "b": 3})
    image(root / "a" / "big.png", (32, 32))
    image(root / "b" / "wide.jpg", (20, 10), mode="RGB")  # a JPEG (drafted smaller), not square
    data = load_own(str(root), ImportOptions(channels=1), progress=True)
    assert data.image_size == 8 and data.origin["sizes_seen"] == {"8x8": 6, "32x32": 1, "20x10": 1}
    report = capsys.readouterr().err
    assert "2 resized to 8x8" in report and "imported" in report and "images/s" in report
    assert "cache: " in report


def test_hidden_system_and_other_files_are_ignored_and_counted(tmp_path, capsys):
    root = folder(tmp_path / "d", {"a": 2, "b": 2})
    (root / ".DS_Store").write_bytes(b"x")
    (root / "a" / "._000.png").write_bytes(b"resource fork")
    image(root / "a" / ".ipynb_checkpoints" / "c.png")
    (root / "b" / "Thumbs.db").write_bytes(b"x")
    (root / "b" / "desktop.ini").write_text("x")
    (root / "b" / "notes.txt").write_text("x")
    (root / "README.md").write_text("x")
    data = load_own(str(root), ImportOptions(test_fraction=0.0), progress=True)
    assert len(data.train_labels) == 4
    assert any("7 file(s) that are not images ignored" in note for note in data.origin["notes"])
    assert "7 file(s) that are not images ignored" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ bad input


def test_empty_and_imageless_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    one_line_error(
        tmp_path / "empty", f"no images in {tmp_path / 'empty'}: expected {tmp_path / 'empty'}/<class>/*.png"
    )
    root = folder(tmp_path / "d", {"a": 2})
    (root / "b").mkdir()
    (root / "b" / "readme.txt").write_text("x")
    one_line_error(root, f"class folder {root / 'b'} has no images")
    one_line_error(folder(tmp_path / "one", {"a": 2}), "needs at least 2 classes, found only 'a'")
    loose = tmp_path / "loose"
    image(loose / "x.png")
    one_line_error(loose, "no class folders in")


def test_paths_that_are_not_a_dataset(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    one_line_error(tmp_path / "notes.txt", "is a .txt file, not a folder of images")
    image(tmp_path / "one.png")
    one_line_error(tmp_path / "one.png", "is a .png file")
    one_line_error(tmp_path / "missing", "does not exist")
    os.mkfifo(tmp_path / "pipe")
    one_line_error(tmp_path / "pipe", "is a FIFO")  # refused from its stat, never opened


def test_bad_images_fail_with_the_count_unless_skipped(tmp_path, capsys):
    root = folder(tmp_path / "d", {"a": 4, "b": 4})
    good = (root / "a" / "000.png").read_bytes()
    (root / "a" / "000.png").write_bytes(good[: len(good) // 2])  # truncated: found by the decoder
    (root / "b" / "junk.png").write_bytes(b"not an image at all")  # found by the probe
    message = one_line_error(root, f"{root / 'b' / 'junk.png'}: cannot decode (not a PNG")
    assert "pass --skip-bad-images to leave them out" in message
    (root / "b" / "junk.png").unlink()
    one_line_error(root, f"{root / 'a' / '000.png'}: cannot decode (truncated); pass --skip-bad-images")
    (root / "b" / "junk.png").write_bytes(b"not an image at all")
    data = load_own(str(root), ImportOptions(skip_bad=True), progress=True)
    assert sorted(data.origin["skipped"]) == ["a/000.png", "b/junk.png"] and data.origin["skipped_count"] == 2
    assert len(data.train_labels) + len(data.test_labels) == 7
    assert "skipped 2 bad image(s)" in capsys.readouterr().err


def test_truncated_rows_are_compacted(tmp_path):
    root = folder(tmp_path / "d", {"a": 4, "b": 4})
    data = load(root, skip_bad=True, test_fraction=0.0)
    good = (root / "a" / "001.png").read_bytes()
    (root / "a" / "001.png").write_bytes(good[:-30])
    skipped = load(root, skip_bad=True, test_fraction=0.0)
    assert skipped.origin["skipped"] == ["a/001.png"]
    kept = [0, 2, 3, 4, 5, 6, 7]
    assert torch.equal(skipped.train_images, data.train_images[kept])
    assert skipped.train_labels.tolist() == data.train_labels[kept].tolist()


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\0" * 10))
    )


def test_decompression_bomb_is_refused_from_its_header(tmp_path):
    root = folder(tmp_path / "d", {"a": 2, "b": 2})
    (root / "a" / "bomb.png").write_bytes(_png_header_only(20_000, 20_000))
    one_line_error(root, "bomb.png: too large (20000x20000 pixels, over 50 megapixels)")
    assert load(root, skip_bad=True).origin["skipped"] == ["a/bomb.png"]


def test_symlinks_leading_outside_are_refused_and_inside_followed(tmp_path, capsys):
    outside = image(tmp_path / "elsewhere" / "secret.png", seed=9)
    folder(tmp_path / "elsewhere" / "extra", {"x": 1})
    root = folder(tmp_path / "d", {"a": 2, "b": 2})
    (root / "a" / "leak.png").symlink_to(outside)
    (root / "c").symlink_to(tmp_path / "elsewhere" / "extra")  # a class folder that leads out
    (root / "b" / "again.png").symlink_to(root / "a" / "000.png")  # inside: followed
    (root / "b" / "loop").symlink_to(root)  # back up: refused, not walked forever
    data = load_own(str(root), ImportOptions(test_fraction=0.0), progress=True)
    assert data.classes == ("a", "b") and len(data.train_labels) == 5
    notes = " ".join(data.origin["notes"])
    assert "a/leak.png (a symbolic link leading outside the folder)" in notes
    assert "c (a symbolic link leading outside the folder)" in notes


def test_a_fifo_among_the_images_is_not_opened(tmp_path):
    root = folder(tmp_path / "d", {"a": 2, "b": 2})
    os.mkfifo(root / "a" / "pipe.png")  # opening it for reading would block forever
    data = load(root, test_fraction=0.0)
    assert len(data.train_labels) == 4
    assert any("a/pipe.png (not a regular file)" in note for note in data.origin["notes"])


def test_bad_options_are_one_line(tmp_path):
    root = folder(tmp_path / "d", {"a": 2, "b": 2})
    for options, match in (
        ({"channels": 2}, "channels must be 1 or 3"),
        ({"image_size": 0}, "image_size must be"),
        ({"test_fraction": 1.0}, "test_fraction must be"),
    ):
        with pytest.raises(CnnlabError, match=match):
            load(root, **options)


def test_alpha_is_composited_over_black_and_16_bit_keeps_its_top_byte(tmp_path):
    root = folder(tmp_path / "d", {"a": 2, "b": 2})
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., :3], rgba[..., 3] = 200, 0  # fully transparent white-ish: black after compositing
    rgba[0, 0, 3] = 255
    Image.fromarray(rgba, "RGBA").save(root / "a" / "alpha.png")
    Image.fromarray(np.full((8, 8), 0xAB00, np.uint16)).save(root / "b" / "deep.png")
    data = load(root, test_fraction=0.0, channels=1)
    names = sorted(["a/000.png", "a/001.png", "a/alpha.png", "b/000.png", "b/001.png", "b/deep.png"])
    pixels = {name: data.train_images[i, 0] for i, name in enumerate(names)}
    assert pixels["a/alpha.png"][0, 0] == 200 and pixels["a/alpha.png"].sum() == 200
    assert (pixels["b/deep.png"] == 0xAB).all()
    assert any("transparency composited over black" in note for note in data.origin["notes"])


# ------------------------------------------------------------------------------------------------ the cache


def test_second_load_reads_no_image(tmp_path, calls):
    root = folder(tmp_path / "d", {"a": 3, "b": 3})
    first = load(root)
    assert calls == {"probe": 1, "decode": 1}
    again = load(root)
    assert calls == {"probe": 1, "decode": 1}  # the stat manifest matched: nothing read, nothing decoded
    assert torch.equal(first.train_images, again.train_images) and first.origin == again.origin
    load(root, image_size=4)  # options that change decoding are part of the key
    assert calls == {"probe": 2, "decode": 2}


def test_changed_file_is_imported_again(tmp_path, calls):
    root = folder(tmp_path / "d", {"a": 3, "b": 3})
    first = load(root)
    image(root / "a" / "001.png", seed=77)
    changed = load(root)
    assert calls == {"probe": 2, "decode": 2} and changed.origin["sha256"] != first.origin["sha256"]
    os.utime(root / "b" / "000.png", ns=(1, 1))  # touched, same bytes: hashed again, not decoded
    touched = load(root)
    assert calls == {"probe": 3, "decode": 2} and touched.origin["sha256"] == changed.origin["sha256"]


def test_copied_identical_folder_reuses_the_decoded_data(tmp_path, calls):
    root = folder(tmp_path / "d", {"a": 3, "b": 3})
    first = load(root)
    copy = Path(shutil.copytree(root, tmp_path / "copy"))
    second = load(copy)
    assert calls == {"probe": 2, "decode": 1}
    assert second.name == "copy" and second.origin["path"] == str(copy)
    assert second.origin["sha256"] == first.origin["sha256"]
    assert torch.equal(first.train_images, second.train_images)


def test_damaged_or_unwritable_cache_is_a_miss(tmp_path, monkeypatch, calls):
    root = folder(tmp_path / "d", {"a": 3, "b": 3})
    first = load(root)
    (cache_file,) = imported.cache_folder().glob("*.bin")
    data = bytearray(cache_file.read_bytes())
    data[100] ^= 0xFF  # a flipped pixel: the payload's sha256 no longer matches
    cache_file.write_bytes(bytes(data))
    assert torch.equal(load(root).train_images, first.train_images) and calls["decode"] == 2
    cache_file.write_bytes(b"cnnlab imported images v1\n" + b"\xff" * 60)  # a header that points nowhere
    assert torch.equal(load(root).train_images, first.train_images) and calls["decode"] == 3
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("x")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))  # nothing can be written under a file
    assert torch.equal(load(root).train_images, first.train_images)
    assert torch.equal(load(root, mmap=True).train_images, first.train_images)  # in memory after all


def test_data_too_large_for_memory_without_a_cache_is_one_line(tmp_path, monkeypatch):
    root = folder(tmp_path / "d", {"a": 3, "b": 3})
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("x")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    monkeypatch.setattr(imported, "memory_available", lambda: 100)
    one_line_error(root, "the decoded images need 0.0 GiB, more than the memory available")


def test_mmap_maps_the_cache_file_copy_on_write(tmp_path):
    root = folder(tmp_path / "d", {"a": 3, "b": 3}, mode="RGB")
    in_memory = load(root)
    mapped = load(root, mmap=True)
    (cache_file,) = imported.cache_folder().glob("*.bin")
    assert torch.equal(in_memory.train_images, mapped.train_images)
    assert torch.equal(in_memory.test_labels, mapped.test_labels)
    if Path("/proc/self/maps").exists():
        assert str(cache_file) in Path("/proc/self/maps").read_text()
    mapped.train_images.zero_()  # private: the file keeps its pixels
    assert torch.equal(load(root, mmap=True).train_images, in_memory.train_images)


def test_mmap_chosen_when_the_data_exceeds_half_the_memory(tmp_path, monkeypatch):
    root = folder(tmp_path / "d", {"a": 3, "b": 3})
    monkeypatch.setattr(imported, "memory_available", lambda: 100)
    fresh = load(root)  # imported straight into the cache file, then mapped
    again = load(root)
    if Path("/proc/self/maps").exists():
        (cache_file,) = imported.cache_folder().glob("*.bin")
        assert str(cache_file) in Path("/proc/self/maps").read_text()
    assert torch.equal(fresh.train_images, again.train_images)
    monkeypatch.undo()
    assert torch.equal(load(root).train_images, fresh.train_images)
    assert imported.memory_available() > 0


def test_check_source_finds_moved_and_changed_folders(tmp_path):
    root = folder(tmp_path / "d", {"a": 3, "b": 3})
    record = load(root).origin
    assert check_source(record, ImportOptions()).origin["sha256"] == record["sha256"]
    image(root / "a" / "000.png", seed=5)
    with pytest.raises(DataError, match="changed since the run was trained: "):
        check_source(record, ImportOptions())
    shutil.rmtree(root)
    with pytest.raises(DataError, match="was moved or deleted"):
        check_source(record, ImportOptions())


def test_spec_from_record_matches_the_loaded_spec(tmp_path):
    data = load(folder(tmp_path / "d", {"a": 3, "b": 3}))
    assert spec_from_record(data.origin) == data.spec
    with pytest.raises(DataError, match="incomplete or damaged"):
        spec_from_record({"name": "x"})


# ------------------------------------------------------------------------------------------------ the split


def test_stratified_split_is_deterministic_and_stratified(tmp_path, monkeypatch):
    root = folder(tmp_path / "d", {"a": 10, "b": 20, "c": 1, "d": 2})
    first = load(root, test_fraction=0.3)
    assert torch.bincount(first.test_labels, minlength=4).tolist() == [3, 6, 0, 1]  # at least 1 of 2, none of 1
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "other-cache"))
    again = load(root, test_fraction=0.3)
    assert torch.equal(first.test_images, again.test_images) and torch.equal(first.train_labels, again.train_labels)


def test_pools_agree(tmp_path, monkeypatch):
    """Over 512 images the passes run on forked workers; threads and one process give the same bytes."""
    root = folder(tmp_path / "d", {"a": 300, "b": 300}, size=(6, 6))
    results = []
    for pool in ("process", "thread"):
        monkeypatch.setattr(decode, "POOL", pool)
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / pool))
        results.append(load(root))
    single = decode.probe([str(root / "a" / "000.png")])
    assert single.width.tolist() == [6] and not single.bad
    assert torch.equal(results[0].train_images, results[1].train_images)
    assert results[0].origin["sha256"] == results[1].origin["sha256"]


# ------------------------------------------------------------------------------------------------ names


def test_is_own_dataset_and_load_dataset_dispatch(tmp_path, monkeypatch):
    root = folder(tmp_path / "d", {"a": 3, "b": 3})
    assert is_own_dataset(str(root)) and is_own_dataset("./x") and is_own_dataset("~/x") and is_own_dataset("t.csv")
    assert not is_own_dataset("mnits") and not is_own_dataset("")
    data = load_dataset(str(root), image_size=4, progress=False)
    assert data.image_size == 4 and data.origin["options"]["image_size"] == 4
    monkeypatch.chdir(tmp_path)
    assert is_own_dataset("d") and load_dataset("d", progress=False).name == "d"
    with pytest.raises(CnnlabError, match="unknown dataset 'mnits'.*or give a path to your own data"):
        load_dataset("mnits")
    with pytest.raises(CnnlabError, match="image_size applies only to your own data"):
        load_dataset("mnist-sample", image_size=4)
    with pytest.raises(CnnlabError, match="unknown import option 'colour'"):
        load_dataset(str(root), colour=3)


def test_registered_name(tmp_path, monkeypatch):
    from cnnlab.data import names  # here: only this test registers a name

    monkeypatch.setenv("CNNLAB_CONFIG", str(tmp_path / "config"))
    root = folder(tmp_path / "d", {"a": 3, "b": 3})
    names.add_name("my-shapes", root)
    assert is_own_dataset("my-shapes")
    data = load("my-shapes")
    assert data.name == "my-shapes" and data.origin["name"] == "my-shapes" and data.source == str(root)


# ------------------------------------------------------------------------------------------------ tables


def test_npz_and_csv_tables_are_converted_and_split(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (20, 6, 6), dtype=np.uint8), np.arange(20) % 2
    np.savez(tmp_path / "digits.npz", x_train=x, y_train=y)
    data = load(tmp_path / "digits.npz", image_size=3, channels=3)
    assert data.name == "digits" and data.origin["kind"] == "npz" and data.train_images.shape[1:] == (3, 3, 3)
    assert data.origin["split"] == "stratified 20% test, seed 0" and torch.bincount(data.test_labels).tolist() == [2, 2]
    rows = ["label," + ",".join(f"pixel{i}" for i in range(16))]
    rows += [f"{i % 2}," + ",".join(str((i * 7 + j) % 256) for j in range(16)) for i in range(10)]
    (tmp_path / "small.csv").write_text("\n".join(rows) + "\n")
    table = load(tmp_path / "small.csv")
    assert table.origin["kind"] == "csv" and table.image_size == 4 and table.channels == 1
    assert len(table.train_labels) + len(table.test_labels) == 10


@pytest.mark.slow
def test_hugging_face_dataset_goes_through_the_decoder(tmp_path, calls):
    datasets = pytest.importorskip("datasets")
    pictures = []
    for i in range(8):
        buffer = io.BytesIO()
        Image.fromarray(np.full((5, 5), i * 30, np.uint8)).save(buffer, "PNG")
        pictures.append({"bytes": buffer.getvalue(), "path": None})
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["x", "y"])})
    table = datasets.Dataset.from_dict({"image": pictures, "label": [i % 2 for i in range(8)]}, features=features)
    table.to_parquet(str(tmp_path / "train.parquet"))
    data = load(tmp_path / "train.parquet")
    assert data.origin["kind"] == "hf" and data.classes == ("x", "y") and data.image_size == 5
    assert calls["decode"] == 1
    load(tmp_path / "train.parquet")
    assert calls["decode"] == 1


def test_cgroup_memory_limits_of_v1_and_v2_up_to_the_mount(tmp_path):
    from cnnlab.data.imported import cgroup_memory_limits

    sys_root = tmp_path / "sys"
    v2 = sys_root / "user.slice" / "job"
    v2.mkdir(parents=True)
    (v2 / "memory.max").write_text("1073741824\n")
    (v2.parent / "memory.max").write_text("max\n")  # no limit there
    (sys_root / "memory.max").write_text("2147483648\n")  # the mount's root counts too
    (tmp_path / "memory.max").write_text("1\n")  # above the mount: never read
    v1 = sys_root / "memory" / "docker" / "abc"
    v1.mkdir(parents=True)
    (v1 / "memory.limit_in_bytes").write_text("536870912\n")
    (v1.parent / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # v1's "no limit"
    cgroups = tmp_path / "cgroup"
    cgroups.write_text("0::/user.slice/job\n")
    assert sorted(cgroup_memory_limits(cgroups, sys_root)) == [1073741824, 2147483648]
    cgroups.write_text("12:cpu,cpuacct:/docker/abc\n11:memory:/docker/abc\n")
    assert cgroup_memory_limits(cgroups, sys_root) == [536870912]
    assert cgroup_memory_limits(tmp_path / "absent", sys_root) == []


def test_the_import_cache_lists_its_copies_and_clears_them_without_following_links(tmp_path, capsys):
    import json

    from cnnlab.cli.main import main

    root = folder(tmp_path / "d", {"a": 3, "b": 3})
    load(root)
    image(root / "a" / "000.png", seed=999)  # the folder changed: imported anew, the old copy stays
    load(root)
    assert main(["datasets", "cache", "--format", "json"]) == 0
    copies = json.loads(capsys.readouterr().out)
    assert len(copies) == 2 and all(c["bytes"] > 0 and c["sources"] == [str(root.absolute())] for c in copies)
    outside = tmp_path / "keep.bin"
    outside.write_bytes(b"the user's")
    (imported.cache_folder() / "planted.bin").symlink_to(outside)
    (imported.cache_folder() / "odd.bin").mkdir()  # not a cache file: left alone, no traceback
    stale = imported.cache_folder() / ".import-old.tmp"
    stale.write_bytes(b"x")
    os.utime(stale, (time.time() - 2 * 24 * 3600,) * 2)  # an import that died days ago: removed, not counted
    assert main(["datasets", "cache"]) == 0
    listing = capsys.readouterr().out
    assert "2 decoded copies" in listing and str(root.absolute()) in listing and "planted" not in listing
    assert main(["datasets", "cache", "--clear"]) == 0
    assert capsys.readouterr().out.startswith("removed 2 decoded copies")
    assert outside.read_bytes() == b"the user's" and not stale.exists()
    assert [p.name for p in imported.cache_folder().glob("*.bin")] == ["odd.bin"]
    assert root.is_dir() and len(list(root.rglob("*.png"))) == 6  # the dataset itself is untouched
    again = load(root)  # imported again on the next use
    assert len(again.train_labels) + len(again.test_labels) == 6
    assert len([p for p in imported.cache_folder().glob("*.bin") if p.is_file()]) == 1
