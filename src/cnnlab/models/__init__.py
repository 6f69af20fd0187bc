"""The model zoo: every architecture of the classic-models spec, behind one registry.

>>> from cnnlab.models import create_model, list_models, model_info
>>> list_models("res*")
['resnet18', 'resnet-mini']
>>> model = create_model("vgg11", in_channels=1, num_classes=10, width=4)

Your own network is a model too, once you ask for it by name (`cnnlab.models.custom`):
`create_model(load_user_model("path/to/net.py:Net"))`, or `package.module:Net`.
"""

from __future__ import annotations

from cnnlab.models.custom import TrustRequired, is_custom, load_user_model
from cnnlab.models.registry import (
    ModelInfo,
    check_input_size,
    create_model,
    input_sizes,
    list_models,
    model_info,
    register_model,
)
from cnnlab.models.summary import LayerStats, ModelSummary, count_macs, render_summary, summarize

# Importing a family module registers its models.
from cnnlab.models import alexnet, baselines, fast_cnn, inception, lenet, nin, resnet, vgg  # noqa: E402,F401  isort: skip

__all__ = [
    "LayerStats",
    "ModelInfo",
    "ModelSummary",
    "TrustRequired",
    "check_input_size",
    "count_macs",
    "create_model",
    "input_sizes",
    "is_custom",
    "list_models",
    "load_user_model",
    "model_info",
    "register_model",
    "render_summary",
    "summarize",
]
