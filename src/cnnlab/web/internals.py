"""Every cnnlab internal the web lab uses, imported here and nowhere else in `cnnlab.web`.

Modules of the lab say `from cnnlab.web import internals as lab` and call `lab.load_run(...)`, so a
rename inside cnnlab is a one-file change here. Imports that need torch are made on first use, so
the run listing (plain JSON and CSV) does not pay for `import torch`.
"""
from __future__ import annotations

from cnnlab.errors import CnnlabError  # noqa: F401  (re-exported)
from cnnlab.files import is_inside  # noqa: F401  (re-exported)


def read_metrics(path, within):
    """metrics.csv rows, numbers parsed: a regular file inside `within`, bounded (cnnlab.files refuses the rest)."""
    from cnnlab.files import read_csv

    return read_csv(path, integers=("epoch", "step"), within=within)


def dataset_spec(name: str):
    """The DatasetSpec of a dataset name (class names, sizes); raises CnnlabError for an unknown one."""
    from cnnlab.data.catalog import get_spec

    return get_spec(name)


def load_run(path, which: str = "best"):
    """The LoadedRun of a run folder (checkpoints load with weights_only=True inside cnnlab.runs.load)."""
    from cnnlab.runs.load import load_run as _load_run

    return _load_run(path, which)


def summarize(model, input_size: int, in_channels: int):
    from cnnlab.models import summarize as _summarize

    return _summarize(model, input_size, in_channels)


def feature_maps(model, x, layers, model_name=None):
    from cnnlab.inspect.features import feature_maps as _feature_maps

    return _feature_maps(model, x, layers, model_name)


def model_view(trained, pixels):
    """uint8 images -> floats in [0, 1] as the model sees them (permuted, resized; not normalized)."""
    from cnnlab.inspect.inputs import model_view as _model_view

    return _model_view(trained, pixels)


def load_test_split(trained):
    """The run's test images (uint8) and labels, from a copy already on this machine: a page view never starts
    a download (a request would wait minutes, and a run folder from elsewhere would choose what to fetch).
    Missing data is a one-line DataError naming where it looked and how to supply it."""
    from cnnlab.data import load_dataset

    # inspect.inputs.load_test_split has no download switch; this is its body with download=False.
    data = load_dataset(trained.config.dataset, trained.config.data_dir, download=False)
    return data.test_images, data.test_labels


def predict_probabilities(model, images, labels, transform, batch_size: int = 500):
    """Softmax probabilities (N, K) over a whole split, in order."""
    from cnnlab.data.batches import Batches
    from cnnlab.runs.evaluate import predict_probabilities as _predict_probabilities

    return _predict_probabilities(model, Batches(images, labels, batch_size, transform, shuffle=False))


def per_class_accuracy(confusion) -> list[float]:
    from cnnlab.runs.evaluate import per_class_accuracy as _per_class_accuracy

    return _per_class_accuracy(confusion)


def most_confident_mistakes(probabilities, labels, top: int):
    from cnnlab.inspect.mistakes import most_confident_mistakes as _most_confident_mistakes

    return _most_confident_mistakes(probabilities, labels, top)


def filter_layers(model, input_shape):
    from cnnlab.inspect.filters import filter_layers as _filter_layers

    return _filter_layers(model, input_shape)


def filter_tiles(model, layer, input_shape, model_name=None):
    from cnnlab.inspect.filters import filter_tiles as _filter_tiles

    return _filter_tiles(model, layer, input_shape, model_name=model_name)


def captum_available() -> bool:
    try:
        import captum.attr  # noqa: F401
    except ImportError:
        return False
    return True


def gradcam(model, x, target: int, model_name=None):
    """Grad-CAM map (1, S, S) >= 0 at the last conv layer, through captum."""
    from cnnlab.inspect.saliency import attribute

    return attribute(model, x, target, "gradcam", model_name=model_name)


def fit_images(images, channels: int, size: int):
    """uint8 (N, C, H, W) -> the model's channels and stored size, exactly as `cnnlab predict` does it."""
    from cnnlab.runs.predict import fit_images as _fit_images

    return _fit_images(images, channels, size)
