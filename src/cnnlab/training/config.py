"""TEMPORARY: names moved to cnnlab.runfolder; removed once every import is rewritten."""

from cnnlab.runfolder.config import TrainConfig, check_keys, check_types, parse_option  # noqa: F401
from cnnlab.runfolder.resolve import resolve_config  # noqa: F401
