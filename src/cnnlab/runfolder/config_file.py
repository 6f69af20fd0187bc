"""Config files (`cnnlab train --config FILE`): YAML or JSON, bounded in size, depth and values, into TrainConfig keys.

A run's own config.json is such a file too (its provenance beside the options is dropped).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.files import read_text
from cnnlab.runfolder.config import check_keys, check_types
from cnnlab.runfolder.values import MAX_CONFIG_BYTES, MAX_CONFIG_DEPTH, MAX_CONFIG_NODES, check_nesting


def _parse_yaml(text: str, source: str) -> Any:
    """YAML without aliases, depth- and size-bounded while it is composed, before anything is constructed.

    An alias makes the constructed value a graph: nine nested aliases in 1 KB expand to 10^9 values
    ("billion laughs"). cnnlab's configs never need one, so an alias is refused outright.
    """
    import yaml

    class Loader(yaml.SafeLoader):
        depth = nodes = 0

        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                mark = self.peek_event().start_mark
                raise CnnlabError(
                    f"{source} uses a YAML alias (line {mark.line + 1}); cnnlab config files take "
                    "plain values only: write the value out"
                )
            self.nodes += 1
            if self.nodes > MAX_CONFIG_NODES:
                raise CnnlabError(f"{source} holds more than {MAX_CONFIG_NODES:,} values; is it a config file?")
            if self.check_event(yaml.ScalarEvent):
                return super().compose_node(parent, index)
            self.depth += 1  # a mapping or list: levels counted as `check_nesting` counts them
            if self.depth > MAX_CONFIG_DEPTH:
                raise CnnlabError(f"{source} is nested more than {MAX_CONFIG_DEPTH} levels deep")
            try:
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

    loader = Loader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _read_config_text(path: Path) -> str:
    """The text of a config file: a regular file (a link to one is followed), UTF-8, at most MAX_CONFIG_BYTES.

    Read through `read_text` at the link's target, so a FIFO, a device (a link to /dev/zero) or a huge file
    is one line at once instead of a hang or a read without end.
    """

    real = os.path.realpath(path)
    try:
        return read_text(real, limit=MAX_CONFIG_BYTES)
    except CnnlabError as err:  # "'/real/path' is a FIFO, ...": said of the name the user gave
        what = str(err)
        if not what.startswith(repr(real)):
            raise CnnlabError(f"cannot read config file {str(path)!r}: {what}") from None
        target = "" if real == os.path.abspath(path) else f" (a link to {real!r})"
        raise CnnlabError(f"config file {str(path)!r}{target}{what[len(repr(real)) :]}") from None
    except OSError as err:
        raise CnnlabError(f"cannot read config file {str(path)!r}: {err.strerror}") from None


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON config file into a dict of TrainConfig keys."""
    path = Path(path)
    text = _read_config_text(path)
    source = f"config file {str(path)!r}"
    try:
        if path.suffix.lower() == ".json":
            values = json.loads(text)
        else:
            values = _parse_yaml(text, source)
    except CnnlabError:
        raise
    except RecursionError:  # JSON nested some thousand levels: past the bound below, whose message it takes
        raise CnnlabError(f"{source} is nested more than {MAX_CONFIG_DEPTH} levels deep") from None
    except Exception as err:  # noqa: BLE001 - any parse error becomes one line
        first_line = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CnnlabError(f"cannot parse config file {str(path)!r}: {first_line}") from None
    if not isinstance(values, dict):
        raise CnnlabError(f"config file {str(path)!r} must hold a mapping of option names to values")
    check_nesting(values, source)
    # A run folder's config.json carries provenance beside the options; it is not configuration.
    values = dict(values.get("config", values))
    check_keys(values, f"config file {path.name}")
    check_types(values)
    # A config file says what to train, not where: repeating a run must never write into that run's folder.
    values.pop("out", None)
    return values
