"""Your own network as a model: `path/to/file.py:Name` or `package.module:Name`.

`Name` is an `nn.Module` subclass or a function returning one; cnnlab calls it as
`Name(in_channels=C, num_classes=K, **options)`, adding `image_size=S` (or `input_size=S`) when its
signature takes that (or `**kwargs`). Nothing here runs user code on its own: only `load_user_model`
(the user named the model: train, summary) and `load_from_copy` (reopening a run, with trust_code)
execute a file or import a module. A run folder names its model, and naming is not asking: the
registry refuses a custom name that is not loaded in this process instead of importing it.

A file is read once, through `cnnlab.files` (a regular file of at most 1 MiB), hashed, and compiled
from those same bytes under a private module name (`cnnlab_user_models.<stem>_<hash>`, in
`sys.modules` so pickling and dataclasses work); its folder is on `sys.path` only while it runs.
The input sizes a custom model takes are found by trying (`probe_input_sizes`), unless the class or
function declares them as attributes `min_input_size`, `max_input_size`, `default_input_size`.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import importlib.abc
import importlib.util
import inspect
import json
import linecache
import os
import re
import secrets
import sys
import threading
import time
import traceback
import types
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.errors import CnnlabError, did_you_mean
from cnnlab.files import read_bytes

MAX_SOURCE_BYTES = 2**20  # a model file is code, not data: 1 MiB is plenty
PROBE_SECONDS = 10.0  # the search for the input sizes stops here and says so
LARGEST_PROBE = 512  # sizes tried: 1 to this
PROBE_BATCH = 2  # images per trial forward (2, so a BatchNorm in train mode would not be what fails)
_PACKAGE = "cnnlab_user_models"  # the parent of the private module names
_INSTANCE = "instance:"
_SIZE_KEYWORDS = ("image_size", "input_size")
_RESERVED = {"in_channels", "num_classes", *_SIZE_KEYWORDS}
# Tried first when looking for any size the model takes: where fixed-size models usually sit.
_COMMON_SIZES = (28, 32, 224, 227, 299, 96, 64, 56, 112, 128, 256)
# Errors a forward raises at every size (a bug, not a size it cannot take): reported at once.
_BUGS = (NameError, AttributeError, ImportError, NotImplementedError)


class TrustRequired(CnnlabError):
    """Reopening a run would execute the Python code it carries, and the caller did not say they trust it."""


@dataclass
class _Entry:
    name: str  # canonical: "<absolute path>.py:Name", "pkg.mod:Name" or "instance:Name-<id>"
    kind: str  # "file", "module" or "instance"
    attr: str  # Name (the class name for an instance)
    target: Callable[..., Any]
    shown: str  # what messages call the source: the path as given, the run's copy, the module's file
    origin: str  # ModelInfo.paper: the absolute file path, the module path, or the instance's class
    path: Path | None  # the source file executed (None for an instance)
    sha256: str | None
    code: bytes | None  # the exact bytes executed
    module: str | None  # its name in sys.modules
    accepted: frozenset[str] | None  # keyword options it takes; None: any (**kwargs)
    defaults: dict[str, Any]  # option -> default (inspect.Parameter.empty when required)
    size_keywords: tuple[str, ...]  # the keywords the build size is passed as
    declared: tuple[int, int | None, int | None] | None  # (min, max, default) from the target's attributes
    serial: int  # changes when a name is registered again: caches are keyed by it
    built_for: tuple[int | None, int | None] = (None, None)  # an instance: (in_channels, num_classes) seen in it


_entries: dict[str, _Entry] = {}
_origins: dict[str, str] = {}  # private module name -> the canonical source ("<path>.py" or "pkg.mod")
_probes: dict[tuple[str, int, int, int, str], tuple[int, int | None, int]] = {}
_params: dict[tuple[str, int], int] = {}
_lock = threading.RLock()
_serials = iter(range(1, 2**62))


# ---- names ---------------------------------------------------------------------------
def is_custom(name: str) -> bool:
    """Whether `name` names the user's own code: `x.py:Net`, `pkg.mod:Net`, `C:\\x\\net.py:Net`, `instance:Net-1f2e`."""
    if not isinstance(name, str):
        return False
    if name.startswith(_INSTANCE):
        return len(name) > len(_INSTANCE)
    where, sep, attr = name.rpartition(":")
    return bool(sep and where and attr.isidentifier())


def _split(name: str) -> tuple[str, str, str]:
    """(kind, where, Name) of a custom name; a malformed one is a one-line error."""
    if name.startswith(_INSTANCE):
        return "instance", name, ""
    where, _, attr = name.rpartition(":")
    if not is_custom(name):
        raise CnnlabError(f"{name!r} is not a model of your own: give path/to/file.py:Name or package.module:Name")
    seps = {"/", "\\", os.sep, *([os.altsep] if os.altsep else [])}
    if where.endswith(".py") or any(s in where for s in seps) or where.startswith(("~", ".")):
        if not where.endswith(".py"):
            raise CnnlabError(f"{where!r} is not a Python file: a model file's name ends in .py (model {name!r})")
        return "file", where, attr
    if all(part.isidentifier() for part in where.split(".")):
        return "module", where, attr
    raise CnnlabError(
        f"{where!r} is neither a .py file nor a module path like package.module (model {name!r}); "
        "give path/to/file.py:Name or package.module:Name"
    )


def _file_path(where: str) -> Path:
    return Path(os.path.abspath(os.path.expanduser(where)))


def _canonical(name: str) -> str:
    """The name a custom model is registered under, computed without touching the file."""
    kind, where, attr = _split(name)
    return f"{_file_path(where)}:{attr}" if kind == "file" else name


def _entry(name: str) -> _Entry:
    """The loaded entry for `name`, or the one-line refusal: cnnlab never imports code a name merely mentions."""
    if name in _entries:
        return _entries[name]
    canonical = _canonical(name)
    if canonical in _entries:
        return _entries[canonical]
    if canonical.startswith(_INSTANCE):
        raise CnnlabError(
            f"model {name!r} was an nn.Module instance in another Python process; "
            "its code was not saved, so cnnlab cannot rebuild it here"
        )
    raise CnnlabError(
        f"model {name!r} is your own code and is not loaded: cnnlab runs your code only when you ask for it "
        "(name it to train or summarize it, or reopen its run with --trust-code / load_run(..., trust_code=True))"
    )


def loaded_name(name: str) -> str:
    """The canonical name of a loaded custom model; a one-line CnnlabError when it is not loaded."""
    return _entry(name).name


def is_loaded(name: str) -> bool:
    try:
        _entry(name)
    except CnnlabError:
        return False
    return True


def origin(name: str) -> str:
    """Where the model comes from: its file's absolute path, its module path, or the instance's class."""
    return _entry(name).origin


def unload(name: str) -> None:
    """Forget a loaded custom model (its module stays imported); unknown names are ignored."""
    with _lock:
        try:
            canonical = _canonical(name)
        except CnnlabError:
            return
        _entries.pop(canonical, None)


# ---- loading ---------------------------------------------------------------------------
def load_user_model(name: str) -> str:
    """Import the file or module the user named NOW, check its `Name`, register it; the canonical name.

    For a file, "<absolute path>.py:Name"; for a module, "pkg.mod:Name". Loading again is a no-op,
    unless the file changed since: then its new contents run and replace the old registration.
    """
    kind, where, attr = _split(name)
    with _lock:
        if kind == "instance":
            return _entry(name).name
        if kind == "file":
            path = _file_path(where)
            canonical = f"{path}:{attr}"
            real = Path(os.path.realpath(path))  # a symlink the user named is theirs to name: follow it
            data = _read_source(real, where)
            sha = hashlib.sha256(data).hexdigest()
            old = _entries.get(canonical)
            if old is not None and old.sha256 == sha:
                return canonical
            module = _execute(data, real, _module_name(path.stem, str(path), sha), where, str(path), real.parent)
            shown = where
        else:
            canonical = name
            if canonical in _entries:
                return canonical
            module = _import(where)
            file = getattr(module, "__file__", None)
            if not file or not str(file).endswith(".py"):
                raise CnnlabError(
                    f"module {where!r} has no Python source file ({file!r}); cnnlab saves a model's source"
                )
            real = Path(os.path.realpath(file))
            data = _read_source(real, str(file))
            sha = hashlib.sha256(data).hexdigest()
            shown = _relative(real)
        target = _check_target(module, attr, shown)
        _register(canonical, kind, attr, target, shown, str(path) if kind == "file" else where, real, sha, data, module)
        return canonical


def _relative(path: Path) -> str:
    """`path` relative to the current folder when it lies under it (shorter messages), else absolute."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _read_source(path: Path, shown: str) -> bytes:
    """The bytes of a model source file: a regular file (not a FIFO or folder) of at most 1 MiB."""
    try:
        return read_bytes(path, limit=MAX_SOURCE_BYTES)
    except FileNotFoundError:
        raise CnnlabError(f"no such file {shown!r}") from None
    except OSError as err:
        raise CnnlabError(f"cannot read {shown!r}: {err.strerror or err}") from None


def _module_name(stem: str, source: str, sha: str) -> str:
    """cnnlab_user_models.<stem>_<8 hex>: one per (source, contents), the same in every process."""
    safe = re.sub(r"\W", "_", stem) or "model"
    if not safe[0].isalpha():
        safe = "m_" + safe
    digest = hashlib.sha256(f"{source}\0{sha}".encode()).hexdigest()[:8]
    return f"{_PACKAGE}.{safe}_{digest}"


class _CodeLoader(importlib.abc.Loader):
    """Executes code compiled from bytes already read: the file is never read a second time."""

    def __init__(self, code: types.CodeType) -> None:
        self.code = code

    def create_module(self, spec: Any) -> None:
        return None  # the default module

    def exec_module(self, module: types.ModuleType) -> None:
        exec(self.code, module.__dict__)  # noqa: S102 -- the user asked for this code, or trusted its run


def _parent_package() -> types.ModuleType:
    parent = sys.modules.get(_PACKAGE)
    if parent is None:
        parent = types.ModuleType(_PACKAGE, "Models loaded from user files by cnnlab.")
        parent.__path__ = []  # a package, so `cnnlab_user_models.x` resolves for pickle
        sys.modules[_PACKAGE] = parent
    return parent


@contextmanager
def _on_sys_path(folder: Path | str | None) -> Iterator[None]:
    """`folder` first on sys.path for the block only (a model file may import its neighbours)."""
    entry = str(folder) if folder is not None else None
    if entry is None:
        yield
        return
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        if sys.path and sys.path[0] == entry:
            del sys.path[0]
        elif entry in sys.path:
            sys.path.remove(entry)


def _execute(
    data: bytes, path: Path, module_name: str, shown: str, source: str, folder: Path | None
) -> types.ModuleType:
    """Compile `data` (the bytes read, as `path`) and run it as `module_name`; one-line errors."""
    existing = sys.modules.get(module_name)
    if existing is not None:  # these very contents of this very source ran already
        return existing
    try:
        code = compile(data, str(path), "exec", dont_inherit=True)
    except SyntaxError as err:
        line = f":{err.lineno}" if err.lineno else ""
        raise CnnlabError(f"{shown}{line}: {type(err).__name__}: {err.msg}") from None
    except ValueError as err:  # null bytes
        raise CnnlabError(f"{shown}: {type(err).__name__}: {_first_line(err)}") from None
    spec = importlib.util.spec_from_file_location(module_name, str(path), loader=_CodeLoader(code))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    text = data.decode("utf-8", errors="replace")
    linecache.cache[str(path)] = (len(text), None, text.splitlines(keepends=True), str(path))  # tracebacks
    parent = _parent_package()
    sys.modules[module_name] = module
    try:
        with _on_sys_path(folder):
            spec.loader.exec_module(module)
    except (Exception, SystemExit) as err:
        del sys.modules[module_name]
        lineno = _line_in(err, str(path))
        where = f"{shown}:{lineno}" if lineno else shown
        raise CnnlabError(f"{where}: {type(err).__name__}: {_first_line(err)}") from None
    setattr(parent, module_name.rpartition(".")[2], module)
    _origins[module_name] = source
    return module


def _import(module_path: str) -> types.ModuleType:
    """importlib.import_module with the current folder first on sys.path (like uvicorn's --app-dir .)."""
    importlib.invalidate_caches()
    try:
        with _on_sys_path(os.getcwd()):
            return importlib.import_module(module_path)
    except ModuleNotFoundError as err:
        if err.name and (module_path == err.name or module_path.startswith(err.name + ".")):
            raise CnnlabError(
                f"no module named {err.name!r} in the current folder or on sys.path (model module {module_path!r})"
            ) from None
        raise CnnlabError(f"{module_path}: {_where(err)}{type(err).__name__}: {_first_line(err)}") from None
    except SyntaxError as err:
        line = f":{err.lineno}" if err.lineno else ""
        raise CnnlabError(f"{err.filename or module_path}{line}: SyntaxError: {err.msg}") from None
    except (Exception, SystemExit) as err:
        raise CnnlabError(f"{module_path}: {_where(err)}{type(err).__name__}: {_first_line(err)}") from None


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    text = lines[0] if lines else ""
    return text if len(text) <= 300 else text[:297] + "..."


def _frames(err: BaseException) -> list[traceback.FrameSummary]:
    return [f for f in traceback.extract_tb(err.__traceback__) if not f.filename.startswith("<frozen")]


def _line_in(err: BaseException, filename: str) -> int | None:
    """The line of the innermost frame of `err` in `filename`."""
    return next((f.lineno for f in reversed(_frames(err)) if f.filename == filename), None)


def _where(err: BaseException) -> str:
    """'file.py:12: ' for the innermost frame outside the standard library and installed packages."""
    libraries = {os.path.dirname(os.__file__), *(p for p in sys.path if "site-packages" in p)}
    for frame in reversed(_frames(err)):
        if not any(frame.filename.startswith(lib + os.sep) for lib in libraries):
            return f"{_relative(Path(frame.filename))}:{frame.lineno}: "
    return ""


def _check_target(module: types.ModuleType, attr: str, shown: str) -> Callable[..., Any]:
    """`module.attr`, which must be an nn.Module subclass or a function returning one."""
    if attr not in vars(module):
        models = sorted(
            n
            for n, v in vars(module).items()
            if not n.startswith("_")
            and getattr(v, "__module__", None) == module.__name__
            and (inspect.isfunction(v) or (isinstance(v, type) and issubclass(v, nn.Module)))
        )
        hint = f"; it defines {', '.join(models)}" if models else ""
        raise CnnlabError(f"{shown} defines no {attr!r}{did_you_mean(attr, models)}{hint}")
    target = vars(module)[attr]
    if isinstance(target, nn.Module):
        raise CnnlabError(
            f"{attr} in {shown} is an nn.Module instance, not a class or function: "
            "name its class, or a function returning a new model"
        )
    if isinstance(target, type) and not issubclass(target, nn.Module):
        raise CnnlabError(f"{attr} in {shown} is a class but not an nn.Module subclass")
    if not callable(target):
        raise CnnlabError(
            f"{attr} in {shown} is {type(target).__name__!r}, not an nn.Module subclass or a function returning one"
        )
    return target


def _signature(target: Callable[..., Any], attr: str, shown: str) -> inspect.Signature:
    try:
        return inspect.signature(target)
    except (TypeError, ValueError) as err:
        raise CnnlabError(f"{attr} in {shown}: cannot read its signature ({_first_line(err)})") from None


def _register(
    canonical: str,
    kind: str,
    attr: str,
    target: Callable[..., Any],
    shown: str,
    source: str,
    path: Path | None,
    sha: str | None,
    code: bytes | None,
    module: types.ModuleType | None,
    built_for: tuple[int | None, int | None] = (None, None),
) -> None:
    if kind == "instance":
        accepted: frozenset[str] | None = frozenset()
        defaults: dict[str, Any] = {}
        size_keywords: tuple[str, ...] = ()
    else:
        params = _signature(target, attr, shown).parameters
        var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        named = {
            n: p for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        }  # keyword-passable
        missing = [k for k in ("in_channels", "num_classes") if k not in named and not var_kw]
        if missing:
            raise CnnlabError(
                f"{attr} in {shown} must take the keyword arguments in_channels and num_classes "
                f"(cnnlab builds it as {attr}(in_channels=1, num_classes=10)); its signature is {attr}{_sig(params)}"
            )
        accepted = None if var_kw else frozenset(n for n in named if n not in _RESERVED)
        defaults = {n: p.default for n, p in named.items() if n not in _RESERVED}
        size_keywords = tuple(k for k in _SIZE_KEYWORDS if k in named) or (("image_size",) if var_kw else ())
    _entries[canonical] = _Entry(
        name=canonical,
        kind=kind,
        attr=attr,
        target=target,
        shown=shown,
        origin=source,
        path=path,
        sha256=sha,
        code=code,
        module=module.__name__ if module is not None else None,
        accepted=accepted,
        defaults=defaults,
        size_keywords=size_keywords,
        declared=_declared_sizes(target, attr, shown),
        serial=next(_serials),
        built_for=built_for,
    )


def _sig(params: Any) -> str:
    return "(" + ", ".join(str(p) for n, p in params.items() if n != "self") + ")"


def _declared_sizes(target: Any, attr: str, shown: str) -> tuple[int, int | None, int | None] | None:
    """(min, max, default) from the target's attributes min_input_size / max_input_size / default_input_size."""
    if isinstance(target, nn.Module) or getattr(target, "min_input_size", None) is None:
        return None
    values = [getattr(target, key, None) for key in ("min_input_size", "max_input_size", "default_input_size")]
    low, high, default = values
    ok = all(v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 1) for v in values)
    if (
        not (ok and isinstance(low, int))
        or (high is not None and high < low)
        or (default is not None and not low <= default <= (high or default))
    ):
        raise CnnlabError(
            f"{attr} in {shown}: min_input_size / max_input_size / default_input_size must be positive integers "
            f"with min <= default <= max, got {low!r} / {high!r} / {default!r}"
        )
    return low, high, default


# ---- reopening a run ---------------------------------------------------------------------
def load_from_copy(name: str, copy: Path, sha256: str, trust_code: bool) -> None:
    """Reopening a run: execute the run's COPY of the model source and register it under `name`.

    Without `trust_code`, a TrustRequired error and nothing executed. The copy is opened without
    following a symlink, read once, checked against `sha256`, and compiled from those same bytes.
    Already loaded in this process with the same sha256 (the run was just trained here): nothing to run.
    """
    copy = Path(copy)
    kind, where, attr = _split(name)
    with _lock:
        if kind == "instance":
            if name in _entries:
                return
            raise CnnlabError(
                f"model {name!r} was an nn.Module instance passed to train(); its code was not saved with the run, "
                "so the run cannot be reopened: train a model named by file.py:Name or package.module:Name instead"
            )
        canonical = _canonical(name)
        loaded = _entries.get(canonical)
        if loaded is not None and loaded.sha256 == sha256:
            return
        if not trust_code:
            raise TrustRequired(
                f"{copy} is Python code the run's model needs; reopening the run executes it: "
                "pass --trust-code (load_run(..., trust_code=True)) only if you trust where this run came from"
            )
        try:
            data = read_bytes(copy, limit=MAX_SOURCE_BYTES)  # O_NOFOLLOW: a link in the run folder is refused
        except OSError as err:
            raise CnnlabError(f"cannot read the run's model source {str(copy)!r}: {err.strerror or err}") from None
        if hashlib.sha256(data).hexdigest() != sha256:
            raise CnnlabError(
                f"{str(copy)!r} (the run's model source) does not match the sha256 recorded in config.json; "
                "the run was altered"
            )
        source = str(_file_path(where)) if kind == "file" else where
        stem = _file_path(where).stem if kind == "file" else where.rpartition(".")[2]
        module = _execute(data, copy, _module_name(stem, source, sha256), str(copy), source, None)
        target = _check_target(module, attr, str(copy))
        _register(canonical, kind, attr, target, str(copy), source, copy, sha256, data, module)


def source_of(name: str) -> tuple[Path, str]:
    """The loaded model's source file (no links: the file executed) and the sha256 (hex) of the bytes executed."""
    entry = _entry(name)
    if entry.path is None or entry.sha256 is None:
        raise CnnlabError(f"model {entry.name!r} is an nn.Module instance: it has no source file")
    return entry.path, entry.sha256


def source_code(name: str) -> bytes:
    """The exact bytes that were executed for the loaded model (what a run folder should keep a copy of)."""
    entry = _entry(name)
    if entry.code is None:
        raise CnnlabError(f"model {entry.name!r} is an nn.Module instance: it has no source file")
    return entry.code


# ---- classes, functions and instances given as objects ---------------------------------
def name_for(obj: object) -> str:
    """The canonical name of a class or factory function (train(model=MyNet)); load_user_model(name) then works."""
    if isinstance(obj, nn.Module):
        raise CnnlabError(
            f"{type(obj).__name__} is an nn.Module instance: pass it as the model and cnnlab registers it as is"
        )
    if not (inspect.isclass(obj) or inspect.isfunction(obj)):
        raise CnnlabError(
            "a model is a name, an nn.Module subclass, a function returning an nn.Module, or an nn.Module instance; "
            f"got {type(obj).__name__}"
        )
    label = getattr(obj, "__name__", "?")
    qualname = getattr(obj, "__qualname__", label)
    module_name = getattr(obj, "__module__", None) or "__main__"
    module = sys.modules.get(module_name)
    advice = (
        f"pass an instance instead (model={label}(in_channels=..., num_classes=...)), "
        f"or save {label} in a file and pass 'file.py:{label}'"
    )
    if module_name == "__main__" or module is None or getattr(module, "__file__", None) is None:
        raise CnnlabError(
            f"{label} is defined in {'__main__ (the script or notebook running)' if module_name == '__main__' else module_name}, "
            f"which cnnlab cannot import again to rebuild the model: {advice}"
        )
    if qualname != label or vars(module).get(label) is not obj:
        raise CnnlabError(f"{qualname} is not defined at the top level of {module_name}: {advice}")
    if module_name in _origins:  # a file cnnlab loaded: its path, as the user named it
        return f"{_origins[module_name]}:{label}"
    if module_name.startswith(_PACKAGE + "."):
        raise CnnlabError(f"{label} comes from a model file cnnlab no longer knows: {advice}")
    return f"{module_name}:{label}"


def _built_for(module: nn.Module) -> tuple[int | None, int | None]:
    """(in_channels, num_classes) read off the first layer (a conv) and the last (a linear), where they are that."""
    layers = [
        m for m in module.modules() if next(m.children(), None) is None and next(m.parameters(False), None) is not None
    ]
    if not layers:
        return None, None
    first, last = layers[0], layers[-1]
    in_channels = first.in_channels if isinstance(first, nn.modules.conv._ConvNd) else None
    num_classes = last.out_features if isinstance(last, nn.Linear) else None
    return in_channels, num_classes


def register_instance(module: nn.Module) -> str:
    """Register a model instance (train(model=my_net)): its builder returns deep copies of it as it is now.

    The name is "instance:<ClassName>-<short id>". A UserWarning says that the run cannot be reopened
    without the code: only code in a file or module is saved with a run.
    """
    if not isinstance(module, nn.Module):
        raise CnnlabError(f"register_instance takes an nn.Module, got {type(module).__name__}")
    label = type(module).__name__
    try:
        snapshot = copy.deepcopy(module)
    except Exception as err:
        raise CnnlabError(f"cannot copy the {label} instance: {type(err).__name__}: {_first_line(err)}") from None
    name = f"{_INSTANCE}{label}-{secrets.token_hex(4)}"
    built_for = _built_for(snapshot)

    def build(in_channels: int, num_classes: int) -> nn.Module:
        return copy.deepcopy(snapshot)

    with _lock:
        _register(
            name, "instance", label, build, f"the {label} instance", f"an instance of {label}",
            path=None, sha=None, code=None, module=None, built_for=built_for,
        )  # fmt: skip
    warnings.warn(
        f"model {name} is an object in this process, not code cnnlab can save with the run: the run cannot be "
        f"reopened (load_run, export, serve) without it; to make it reopenable, save {label} in a file "
        f"and pass 'file.py:{label}'",
        UserWarning,
        stacklevel=2,
    )
    return name


# ---- building ------------------------------------------------------------------------------
def check_options(name: str, options: dict[str, Any]) -> None:
    """The options must be keyword arguments the model's class or function takes."""
    entry = _entry(name)
    if entry.accepted is None:
        return
    valid = sorted(entry.accepted)
    for key in options:
        if key not in entry.accepted:
            choices = f"valid options: {', '.join(valid)}" if valid else "it takes no options"
            raise CnnlabError(f"unknown option {key!r} for model {entry.name!r}{did_you_mean(key, valid)}; {choices}")


def option_docs(name: str) -> dict[str, str]:
    """Option -> one line with its default, from the signature (ModelInfo.options)."""
    docs = {}
    for key, default in _entry(name).defaults.items():
        docs[key] = "required" if default is inspect.Parameter.empty else f"default {default!r}"
    return docs


def build(name: str, in_channels: int, num_classes: int, image_size: int | None = None, **options: Any) -> nn.Module:
    """Call the model's class or function; every failure is one line naming the file."""
    entry = _entry(name)
    check_options(entry.name, options)
    if entry.kind == "instance":
        if options:
            raise CnnlabError(f"model {entry.name} is an instance: it takes no options")
        _check_built_for(entry, in_channels, num_classes)
        return entry.target(in_channels, num_classes)
    kwargs: dict[str, Any] = {**options, "in_channels": in_channels, "num_classes": num_classes}
    if image_size is not None:
        kwargs.update(dict.fromkeys(entry.size_keywords, image_size))
    call = f"{entry.attr}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"
    try:
        model = entry.target(**kwargs)
    except Exception as err:
        line = _line_in(err, str(entry.path)) if entry.path is not None else None
        at = f" (line {line})" if line else ""
        raise CnnlabError(f"{entry.shown}: {call} raised {type(err).__name__}: {_first_line(err)}{at}") from None
    if not isinstance(model, nn.Module):
        raise CnnlabError(f"{entry.shown}: {call} returned {type(model).__name__}, not an nn.Module")
    return model


def _check_built_for(entry: _Entry, in_channels: int, num_classes: int) -> None:
    channels, classes = entry.built_for
    if (channels is not None and channels != in_channels) or (classes is not None and classes != num_classes):
        raise CnnlabError(
            f"the {entry.attr} instance ({entry.name}) was built for "
            f"{channels if channels is not None else '?'} input channel(s) and "
            f"{classes if classes is not None else '?'} classes, but the data has {in_channels} and {num_classes}: "
            "build it for the dataset"
        )


@contextmanager
def _quiet_build() -> Iterator[None]:
    """Trial builds on the CPU whatever device context encloses them, leaving the RNG as it was."""
    with torch.random.fork_rng(devices=[]), torch.device("cpu"), torch.no_grad():
        yield


def num_params(name: str) -> int:
    """Parameters of the model built with in_channels=1, num_classes=10 and its default options."""
    entry = _entry(name)
    key = (entry.name, entry.serial)
    if key not in _params:
        size = probe_input_sizes(entry.name, 1, 10)[2]
        with _quiet_build():
            model = build(entry.name, 1, 10, image_size=size)
        _params[key] = sum(p.numel() for p in model.parameters())
    return _params[key]


def probe_input_sizes(
    name: str, in_channels: int = 1, num_classes: int = 10, options: dict[str, Any] | None = None
) -> tuple[int, int | None, int]:
    """(min, max or None, default) input H = W of the model, found by trying forwards of a zero batch.

    Sizes 1 to 512: the first that works (28 and other usual sizes first), a binary search below it for
    the smallest (sizes assumed to work from the smallest on), then twice that: when it fails, a fixed-size
    layer bounds the sizes and a binary search finds the largest. The default is 28 when it works, else
    the smallest. A model that declares min_input_size (and max_input_size, default_input_size) as
    attributes is not tried. Cached per model, channels, classes and options.
    """
    entry = _entry(name)
    options = dict(options or {})
    key = (entry.name, entry.serial, in_channels, num_classes, json.dumps(options, sort_keys=True, default=repr))
    with _lock:
        if key not in _probes:
            check_options(entry.name, options)
            if entry.declared is not None:
                low, high, default = entry.declared
                if default is None:
                    default = 28 if low <= 28 <= (high or 28) else low
                _probes[key] = (low, high, default)
            else:
                with _quiet_build():
                    _probes[key] = _Prober(entry, in_channels, num_classes, options).run()
        return _probes[key]


class _Prober:
    def __init__(self, entry: _Entry, in_channels: int, num_classes: int, options: dict[str, Any]) -> None:
        self.entry, self.in_channels, self.num_classes, self.options = entry, in_channels, num_classes, options
        self.start = time.monotonic()
        self.results: dict[int, bool] = {}
        self.errors: dict[int, str] = {}
        self.model: nn.Module | None = None
        if not entry.size_keywords:  # one model serves every size, unless layers size themselves on first use
            model = self._build(None)
            if not any(isinstance(m, nn.modules.lazy.LazyModuleMixin) for m in model.modules()):
                self.model = model

    def _build(self, size: int | None) -> nn.Module:
        model = build(self.entry.name, self.in_channels, self.num_classes, image_size=size, **self.options)
        return model.to("cpu").eval()

    def works(self, size: int) -> bool:
        if size in self.results:
            return self.results[size]
        elapsed = time.monotonic() - self.start
        if elapsed > PROBE_SECONDS:
            e = self.entry
            raise CnnlabError(
                f"{e.shown}: finding the input sizes {e.attr} takes stopped after {elapsed:.0f} s "
                f"({len(self.results)} sizes tried{self._error_at_28()}); give {e.attr} the attributes "
                "min_input_size (and max_input_size, default_input_size) to skip the search"
            )
        try:
            model = self.model if self.model is not None else self._build(size)
            param = next(model.parameters(), None)
            dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
            out = model(torch.zeros(PROBE_BATCH, self.in_channels, size, size, dtype=dtype))
        except _BUGS as err:  # wrong at every size: say so now, not after trying 512 of them
            raise CnnlabError(
                f"{self._at(err)}{type(err).__name__}: {_first_line(err)} (a forward of {size}x{size} images)"
            ) from None
        except Exception as err:
            self.results[size] = False
            self.errors[size] = f"{type(err).__name__}: {_first_line(err)}"
            return False
        expected = (PROBE_BATCH, self.num_classes)
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != expected:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise CnnlabError(
                f"{self.entry.shown}: {self.entry.attr} returns {got} for a batch of {PROBE_BATCH} images of "
                f"{size}x{size} in eval mode; a classifier returns logits shaped (N, num_classes) = {expected}"
            )
        self.results[size] = True
        return True

    def _error_at_28(self) -> str:
        return f"; at 28x28: {self.errors[28]}" if 28 in self.errors else ""

    def _at(self, err: BaseException) -> str:
        line = _line_in(err, str(self.entry.path)) if self.entry.path is not None else None
        return f"{self.entry.shown}:{line}: " if line else f"{self.entry.shown}: "

    def run(self) -> tuple[int, int | None, int]:
        candidates = [*_COMMON_SIZES, *range(1, LARGEST_PROBE + 1)]
        found = next((s for s in dict.fromkeys(candidates) if self.works(s)), None)
        if found is None:
            raise CnnlabError(
                f"{self.entry.shown}: {self.entry.attr} takes no input size from 1x1 to {LARGEST_PROBE}x{LARGEST_PROBE} "
                f"with {self.in_channels} channel(s){self._error_at_28()}"
            )
        low = self._first_working(0, found)
        upper = min(2 * low, LARGEST_PROBE)
        high: int | None = None
        if upper > low and not self.works(upper):
            high = self._last_working(low, upper)
        default = 28 if self.works(28) and low <= 28 <= (high or 28) else low
        return low, high, default

    def _first_working(self, fails: int, works: int) -> int:
        """The smallest working size in (fails, works]: `fails` fails (0: no size) and `works` works."""
        while works - fails > 1:
            mid = (fails + works) // 2
            fails, works = (fails, mid) if self.works(mid) else (mid, works)
        return works

    def _last_working(self, works: int, fails: int) -> int:
        """The largest working size in [works, fails): `works` works and `fails` fails."""
        while fails - works > 1:
            mid = (fails + works) // 2
            works, fails = (mid, fails) if self.works(mid) else (works, mid)
        return works
