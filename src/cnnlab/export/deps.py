"""The optional packages export needs (`pip install "cnnlab[export]"`), imported only when used."""

from __future__ import annotations

from types import ModuleType

from cnnlab.extras import require_extra

# What each job needs: writing ONNX goes through torch's exporter (onnxscript), verifying and
# predicting run the file in onnxruntime.
ONNX_WRITE = ("onnx", "onnxscript", "onnxruntime")
ONNX_RUN = ("onnxruntime",)


def require(packages: tuple[str, ...], purpose: str) -> dict[str, ModuleType]:
    """Import `packages`, or raise one CnnlabError naming every missing one and the install command."""
    return require_extra("export", purpose, packages)
