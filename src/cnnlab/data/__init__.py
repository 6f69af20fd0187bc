"""Datasets: the catalog, finding and verifying files, loading them into whole tensors, and your own data."""

from __future__ import annotations

from cnnlab.data.catalog import DATASETS, DatasetSpec, get_spec
from cnnlab.data.imported import ImportOptions, is_own_dataset, load_own
from cnnlab.data.load import Dataset, describe_datasets, list_datasets, load_dataset

__all__ = [
    "DATASETS",
    "Dataset",
    "DatasetSpec",
    "ImportOptions",
    "describe_datasets",
    "get_spec",
    "is_own_dataset",
    "list_datasets",
    "load_dataset",
    "load_own",
]
