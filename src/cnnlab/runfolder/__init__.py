"""The run folder's format, below everything that writes or reads one: the config schema and its validation
(`config`, `values`, `config_file`, `resolve`), the checkpoint layout (`checkpoint`), the files, columns and
lock (`layout`), how stored images become model inputs (`preprocess`), and reading a folder back with its one
status (`record`). `cnnlab.training` writes run folders through it; `runs`, `experiments`, `report` and the
web lab read them through it.
"""
