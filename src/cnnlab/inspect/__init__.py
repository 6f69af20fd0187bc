"""Look inside a trained network: filters, feature maps, saliency / Grad-CAM and mistakes.

Run level (what `cnnlab inspect` calls; each writes PNGs and returns their paths):
`inspect_filters`, `inspect_features`, `inspect_saliency`, `inspect_mistakes`, `report_figures`.
Model level (plain modules and tensors): `filter_tiles`, `feature_maps`, `attribute`, `attribute_checked`
(falls back where Grad-CAM shows nothing), `explain_pixel` (how one value of a feature map was computed),
`confused_pairs`, `conv_layers`, `get_layer`.
"""

from __future__ import annotations

from cnnlab.inspect.explain import explain_pixel
from cnnlab.inspect.features import FeatureMaps, feature_maps
from cnnlab.inspect.filters import FilterTiles, default_filter_layer, filter_layers, filter_tiles
from cnnlab.inspect.layers import capture_outputs, conv_layers, get_layer, last_conv_layer
from cnnlab.inspect.mistakes import Mistakes, confused_pairs, most_confident_mistakes
from cnnlab.inspect.run import (
    inspect_features,
    inspect_filters,
    inspect_mistakes,
    inspect_saliency,
    open_run,
    report_figures,
)
from cnnlab.inspect.saliency import METHODS, Attribution, attribute, attribute_checked

__all__ = [
    "METHODS",
    "Attribution",
    "FeatureMaps",
    "FilterTiles",
    "Mistakes",
    "attribute",
    "attribute_checked",
    "capture_outputs",
    "confused_pairs",
    "conv_layers",
    "default_filter_layer",
    "explain_pixel",
    "feature_maps",
    "filter_layers",
    "filter_tiles",
    "get_layer",
    "inspect_features",
    "inspect_filters",
    "inspect_mistakes",
    "inspect_saliency",
    "last_conv_layer",
    "most_confident_mistakes",
    "open_run",
    "report_figures",
]
