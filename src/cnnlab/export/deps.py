"""The optional packages export needs (`pip install "cnnlab[export]"`), imported only when used."""
from __future__ import annotations

import importlib
from types import ModuleType

from cnnlab.errors import CnnlabError

INSTALL_HINT = 'pip install "cnnlab[export]"'

# What each job needs: writing ONNX goes through torch's exporter (onnxscript), verifying and
# predicting run the file in onnxruntime.
ONNX_WRITE = ("onnx", "onnxscript", "onnxruntime")
ONNX_RUN = ("onnxruntime",)


def require(packages: tuple[str, ...], purpose: str) -> dict[str, ModuleType]:
    """Import `packages`, or raise one CnnlabError naming every missing one and the install command."""
    modules, missing = {}, []
    for name in packages:
        try:
            modules[name] = importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise CnnlabError(
            f"{purpose} needs the optional package{'s' if len(missing) > 1 else ''} {', '.join(missing)}, "
            f"which {'are' if len(missing) > 1 else 'is'} not installed: {INSTALL_HINT}"
        )
    return modules
