"""The optional extras (`pip install "cnnlab[NAME]"`): one check for all of them, made only when a feature is used."""

from __future__ import annotations

import importlib
from types import ModuleType

from cnnlab.errors import CnnlabError

# What each extra brings that cnnlab imports. Writing ONNX goes through torch's exporter (onnxscript); verifying
# and predicting run the file in onnxruntime.
EXTRAS = {
    "serve": ("fastapi", "uvicorn"),
    "export": ("onnx", "onnxscript", "onnxruntime"),
    "inspect": ("captum.attr",),
    "tensorboard": ("torch.utils.tensorboard",),
    "tune": ("optuna",),
    "hf": ("datasets",),  # reading the user's own Hugging Face datasets (save_to_disk folders, parquet)
}


def require_extra(extra: str, purpose: str, modules: tuple[str, ...] | None = None) -> dict[str, ModuleType]:
    """Import `modules` (default: all the extra's), or raise one CnnlabError naming every missing one and the
    install command: `purpose` is what needs them ("the web lab", "--tensorboard")."""
    found, missing = {}, []
    for name in modules or EXTRAS[extra]:
        try:
            found[name] = importlib.import_module(name)
        except ImportError:
            missing.append(name.split(".")[-1] if name.startswith("torch.") else name.split(".")[0])
    if missing:
        many = len(missing) > 1
        raise CnnlabError(
            f"{purpose}: the optional package{'s' if many else ''} {', '.join(missing)} "
            f'{"are" if many else "is"} not installed; pip install "cnnlab[{extra}]"'
        )
    return found


def has_extra(extra: str, modules: tuple[str, ...] | None = None) -> bool:
    try:
        require_extra(extra, "", modules)
    except CnnlabError:
        return False
    return True
