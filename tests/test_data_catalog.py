"""The dataset catalog: names, statistics and sums are consistent and unknown names are explained."""

from __future__ import annotations

import pytest

from cnnlab.data import DATASETS, get_spec, list_datasets
from cnnlab.data.catalog import Resource, identify
from cnnlab.errors import CnnlabError

NAMES = ["mnist", "fashion-mnist", "kmnist", "cifar10", "mnist-sample", "fashion-mnist-sample"]


def test_the_six_datasets_in_order():
    assert list_datasets() == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_spec_is_consistent(name):
    spec = get_spec(name)
    assert spec.name == name
    assert len(spec.mean) == len(spec.std) == spec.channels
    assert spec.num_classes == 10 and len(set(spec.classes)) == 10
    assert all(0 < m < 1 and 0 < s < 1 for m, s in zip(spec.mean, spec.std))
    assert spec.licence
    if spec.format == "idx":
        assert (spec.channels, spec.image_size, len(spec.files)) == (1, 28, 4)
        assert spec.torchvision_class and f"{spec.torchvision_class}/raw" in spec.subdirs
        # every file has some sum, so nothing found is ever used unchecked
        assert all(r.sha256 or r.gz_sha256 or r.gz_md5 for r in spec.files)
    elif spec.format == "cifar":
        assert (spec.channels, spec.image_size, len(spec.files)) == (3, 32, 6)
        assert all(r.md5 and not r.gzip for r in spec.files)


def test_published_statistics_and_flip_policy():
    assert get_spec("mnist").mean == (0.1307,) and get_spec("mnist").std == (0.3081,)
    assert get_spec("fashion-mnist").mean == (0.2860,) and get_spec("fashion-mnist").std == (0.3530,)
    assert get_spec("kmnist").mean == (0.1918,) and get_spec("kmnist").std == (0.3483,)
    assert [get_spec(n).hflip for n in NAMES] == [False, True, False, True, False, True]


@pytest.mark.parametrize("parent", ["mnist", "fashion-mnist"])
def test_sample_inherits_parent_stats(parent):
    sample, full = get_spec(f"{parent}-sample"), get_spec(parent)
    assert sample.parent == parent
    assert (sample.mean, sample.std, sample.classes, sample.hflip) == (full.mean, full.std, full.classes, full.hflip)
    assert (sample.train_size, sample.test_size) == (2000, 500)


def test_unknown_name_suggests_and_lists():
    with pytest.raises(CnnlabError) as err:
        get_spec("fashion_mnist")
    message = str(err.value)
    assert "unknown dataset 'fashion_mnist'" in message and "did you mean 'fashion-mnist'" in message
    assert "choose from: cifar10, fashion-mnist, fashion-mnist-sample, kmnist, mnist, mnist-sample" in message


def test_identify_by_any_known_sum():
    mnist_train_gz_sha = DATASETS["mnist"].files[0].gz_sha256[0]
    assert identify({"nothing", mnist_train_gz_sha}) == "mnist"
    assert identify({DATASETS["kmnist"].files[3].gz_md5[0]}) == "kmnist"
    assert identify({"0" * 64}) is None


def test_stored_names_prefer_the_verifiable_form():
    assert Resource("f", sha256="a").stored_names() == ("f", "f.gz")
    assert Resource("f", gz_md5=("a",)).stored_names() == ("f.gz", "f")
    assert Resource("f", md5="a", gzip=False).stored_names() == ("f",)
