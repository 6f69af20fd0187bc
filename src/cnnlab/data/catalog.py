"""The datasets cnnlab knows: shapes, classes, statistics, files and their checksums, as data.

Like torchvision's `resources` lists, each dataset declares its files and the
sums they must have; finding, verifying and decoding them lives elsewhere
(`locate.py`, `load.py`, `idx.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

from cnnlab.errors import CnnlabError, unknown_choice

# The four IDX files of every MNIST-family dataset, in the order `DatasetSpec.files` lists them.
IDX_ROLES = ("train_images", "train_labels", "test_images", "test_labels")
CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))


@dataclass(frozen=True)
class Resource:
    """One file of a dataset and the sums that prove it is the right one.

    A file may be stored as `filename` or (when `gzip` is true) `filename.gz`.
    A `.gz` passes when its own sum matches (`gz_sha256`/`gz_md5`, mirrors
    differ in how they compress) or, failing that, when its decompressed
    content matches `sha256`/`md5`.
    """

    filename: str  # as stored uncompressed, e.g. "train-images-idx3-ubyte"
    sha256: str | None = None  # of the uncompressed content
    md5: str | None = None  # of the uncompressed content (torchvision's sums for CIFAR-10)
    gz_sha256: tuple[str, ...] = ()  # accepted sums of filename.gz
    gz_md5: tuple[str, ...] = ()  # accepted md5s of filename.gz (torchvision's resources)
    size: int | None = None  # uncompressed bytes, to tell "truncated" from "different"
    gzip: bool = True  # whether filename.gz is an accepted way to store it

    def stored_names(self) -> tuple[str, ...]:
        """Names to look for, preferred first: a form with a known sum before one without."""
        if not self.gzip:
            return (self.filename,)
        raw, packed = self.filename, self.filename + ".gz"
        return (raw, packed) if (self.sha256 or self.md5) else (packed, raw)


@dataclass(frozen=True)
class DatasetSpec:
    name: str  # "mnist", "fashion-mnist", "kmnist", "cifar10", "mnist-sample", "fashion-mnist-sample"
    channels: int  # 1 or 3
    image_size: int  # side length in pixels (28 or 32)
    classes: tuple[str, ...]  # human class names, as torchvision names them
    mean: tuple[float, ...]  # per channel, pixels scaled to [0, 1]
    std: tuple[float, ...]
    hflip: bool  # whether a horizontal flip keeps the class (not for digits or characters)
    train_size: int
    test_size: int
    format: str = "idx"  # "idx" (MNIST family), "cifar" (python pickle batches) or "embedded"
    files: tuple[Resource, ...] = ()  # idx: IDX_ROLES order; cifar: 5 train batches then test_batch
    subdirs: tuple[str, ...] = ()  # folders under a search root to try, in order; "" is the root itself
    torchvision_class: str | None = None  # the torchvision.datasets class that downloads it
    parent: str | None = None  # for an embedded sample: the dataset it was drawn from
    licence: str = ""
    apt_package: str | None = None  # a Debian package that installs the files

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def _idx_files(sizes: tuple[int, int], sums: dict[str, tuple[str | None, tuple[str, ...], tuple[str, ...]]]):
    """Resources for the 4 IDX files; `sums[name] = (content sha256, gz sha256s, gz md5s)`."""
    n_train, n_test = sizes
    names = {
        "train_images": ("train-images-idx3-ubyte", 16 + n_train * 28 * 28),
        "train_labels": ("train-labels-idx1-ubyte", 8 + n_train),
        "test_images": ("t10k-images-idx3-ubyte", 16 + n_test * 28 * 28),
        "test_labels": ("t10k-labels-idx1-ubyte", 8 + n_test),
    }
    files = []
    for role in IDX_ROLES:
        filename, size = names[role]
        sha256, gz_sha256, gz_md5 = sums[filename]
        files.append(Resource(filename, sha256=sha256, gz_sha256=gz_sha256, gz_md5=gz_md5, size=size))
    return tuple(files)


def _mnist_like_subdirs(name: str, torchvision_class: str) -> tuple[str, ...]:
    # Most specific first: a bare root may hold another MNIST-family set under the same file names.
    return (name, f"{torchvision_class}/raw", "")


# Content sums were computed from the real files; gz sha256s are those of the original archives
# (the same bytes Debian and Zalando's repository ship); gz md5s are torchvision's (its download mirrors).
_MNIST = DatasetSpec(
    name="mnist",
    channels=1,
    image_size=28,
    classes=(
        "0 - zero",
        "1 - one",
        "2 - two",
        "3 - three",
        "4 - four",
        "5 - five",
        "6 - six",
        "7 - seven",
        "8 - eight",
        "9 - nine",
    ),
    mean=(0.1307,),
    std=(0.3081,),
    hflip=False,
    train_size=60_000,
    test_size=10_000,
    files=_idx_files(
        (60_000, 10_000),
        {
            "train-images-idx3-ubyte": (
                "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
                ("0b367032e93c5d0cea0925647cfdb18614af8ee15f83e6f2fc2ad904a6835971",),
                ("f68b3c2dcbeaaa9fbdd348bbdeb94873",),
            ),
            "train-labels-idx1-ubyte": (
                "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
                ("1787548bbe0bff1ec2ecdc0ef292b02df999e2d1a6002d27500982c652b17203",),
                ("d53e105ee54ea40749a09fcbcd1e9432",),
            ),
            "t10k-images-idx3-ubyte": (
                "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
                ("1a1a05eab793c14bb050b398624a11b0ffd1a2953baed553b1b9bd079e2a20be",),
                ("9fb629c4189551a2d022fa330f9573f3",),
            ),
            "t10k-labels-idx1-ubyte": (
                "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
                ("b91679a0acfe4ba0e50a2437a903084cba1f5f92592b016a25a7dfd00455798b",),
                ("ec29112dd5afa0611ce80d1b7f02629c",),
            ),
        },
    ),
    subdirs=_mnist_like_subdirs("mnist", "MNIST"),
    torchvision_class="MNIST",
    licence="CC BY-SA 3.0, Yann LeCun and Corinna Cortes",
)

_FASHION_MNIST = DatasetSpec(
    name="fashion-mnist",
    channels=1,
    image_size=28,
    classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    mean=(0.2860,),
    std=(0.3530,),
    hflip=True,
    train_size=60_000,
    test_size=10_000,
    files=_idx_files(
        (60_000, 10_000),
        {
            "train-images-idx3-ubyte": (
                "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                ("b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",),
                ("8d4fb7e6c68d591d4c3dfef9ec88bf0d",),
            ),
            "train-labels-idx1-ubyte": (
                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                ("0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",),
                ("25c81989df183df01b3e8a0aad5dffbe",),
            ),
            "t10k-images-idx3-ubyte": (
                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                ("cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",),
                ("bef4ecab320f06d8554ea6380940ec79",),
            ),
            "t10k-labels-idx1-ubyte": (
                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
                ("8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",),
                ("bb300cfdad3c16e7a12a480ee83cd310",),
            ),
        },
    ),
    subdirs=_mnist_like_subdirs("fashion-mnist", "FashionMNIST"),
    torchvision_class="FashionMNIST",
    licence="MIT, Zalando SE",
    apt_package="dataset-fashion-mnist",
)

# Only torchvision's md5s of the .gz files are known for KMNIST, so uncompressed copies cannot be verified.
_KMNIST = DatasetSpec(
    name="kmnist",
    channels=1,
    image_size=28,
    classes=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
    mean=(0.1918,),
    std=(0.3483,),
    hflip=False,
    train_size=60_000,
    test_size=10_000,
    files=_idx_files(
        (60_000, 10_000),
        {
            "train-images-idx3-ubyte": (None, (), ("bdb82020997e1d708af4cf47b453dcf7",)),
            "train-labels-idx1-ubyte": (None, (), ("e144d726b3acfaa3e44228e80efcd344",)),
            "t10k-images-idx3-ubyte": (None, (), ("5c965bf0a639b31b8f53240b1b52f4d7",)),
            "t10k-labels-idx1-ubyte": (None, (), ("7320c461ea6c1c855c0b718fb2a4b134",)),
        },
    ),
    subdirs=_mnist_like_subdirs("kmnist", "KMNIST"),
    torchvision_class="KMNIST",
    licence="CC BY-SA 4.0, ROIS-DS Center for Open Data in the Humanities (Clanuwat et al. 2018)",
)

_CIFAR10 = DatasetSpec(
    name="cifar10",
    channels=3,
    image_size=32,
    classes=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    mean=(0.4914, 0.4822, 0.4465),
    std=(0.2470, 0.2435, 0.2616),
    hflip=True,
    train_size=50_000,
    test_size=10_000,
    format="cifar",
    files=tuple(
        Resource(filename, md5=md5, gzip=False)
        for filename, md5 in (  # torchvision's CIFAR10.train_list + test_list
            ("data_batch_1", "c99cafc152244af753f735de768cd75f"),
            ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
            ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
            ("data_batch_4", "634d18415352ddfa80567beed471001a"),
            ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"),
            ("test_batch", "40351d587109b95175f43aff81a1287e"),
        )
    ),
    subdirs=("cifar-10-batches-py", "cifar10/cifar-10-batches-py", "cifar10"),
    torchvision_class="CIFAR10",
    licence="no licence stated; cite Krizhevsky, Learning Multiple Layers of Features from Tiny Images (2009)",
)


def _sample_of(parent: DatasetSpec) -> DatasetSpec:
    """The embedded stratified sample of `parent`: 200 train and 50 test images per class."""
    return DatasetSpec(
        name=f"{parent.name}-sample",
        channels=parent.channels,
        image_size=parent.image_size,
        classes=parent.classes,
        mean=parent.mean,
        std=parent.std,
        hflip=parent.hflip,
        train_size=200 * parent.num_classes,
        test_size=50 * parent.num_classes,
        format="embedded",
        parent=parent.name,
        licence=parent.licence,
    )


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (_MNIST, _FASHION_MNIST, _KMNIST, _CIFAR10, _sample_of(_MNIST), _sample_of(_FASHION_MNIST))
}


def get_spec(name: str) -> DatasetSpec:
    """The spec of dataset `name`; an unknown name raises with a suggestion and the valid names."""
    if not isinstance(name, str):  # before the lookup: the suggestion's difflib takes strings only
        raise CnnlabError(f"dataset must be a name such as 'mnist' (see list_datasets()), got {name!r:.60}")
    try:
        return DATASETS[name]
    except KeyError:
        raise unknown_choice("dataset", name, DATASETS) from None
    except TypeError:
        raise CnnlabError(f"dataset must be a name such as 'mnist', got {name!r}") from None


def identify(sums: set[str]) -> str | None:
    """The dataset one of whose files has one of these sums (any kind), or None."""
    for spec in DATASETS.values():
        for resource in spec.files:
            known = {resource.sha256, resource.md5, *resource.gz_sha256, *resource.gz_md5}
            if known & sums:
                return spec.name
    return None
