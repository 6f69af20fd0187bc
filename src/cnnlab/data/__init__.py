"""Datasets: the catalog, finding and verifying files, and loading them into whole tensors."""

from __future__ import annotations

from cnnlab.data.catalog import DATASETS, DatasetSpec, get_spec
from cnnlab.data.load import Dataset, describe_datasets, list_datasets, load_dataset

__all__ = ["DATASETS", "Dataset", "DatasetSpec", "describe_datasets", "get_spec", "list_datasets", "load_dataset"]
