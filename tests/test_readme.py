"""Every Python block of the README runs as written (in order, in one namespace, on the embedded sample)."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_has_python_blocks():
    assert len(python_blocks()) >= 2


@pytest.mark.slow
def test_readme_python_blocks_run_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the blocks write runs/ into the working directory, as for a user
    namespace: dict = {}
    for number, block in enumerate(python_blocks(), 1):
        exec(compile(block, f"README.md python block {number}", "exec"), namespace)
    assert any((tmp_path / "runs").iterdir())


def bash_block_after(heading: str) -> list[str]:
    """The commands of the first bash block under `heading` (comments dropped)."""
    section = README.read_text().split(f"\n{heading}\n", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S)
    assert block, heading
    return [line.split("#", 1)[0].strip() for line in block.group(1).splitlines() if line.split("#", 1)[0].strip()]


@pytest.mark.slow
def test_your_own_data_and_model_sections_run_as_written(tmp_path, monkeypatch, capsys):
    import shlex
    import shutil

    from cnnlab.cli.main import main

    shutil.copytree(README.parent / "examples", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)  # as a user in a fresh clone: the commands name examples/ and write runs/
    commands = bash_block_after("## Your own data") + bash_block_after("## Your own model")
    assert len(commands) == 6
    for command in commands:
        words = shlex.split(command)
        assert words[0] == "cnnlab"
        assert main([*words[1:], *(["--no-progress"] if words[1] == "train" else [])]) == 0, command
    assert (tmp_path / "runs" / "tiny" / "export" / "model.onnx").is_file()
    assert "test" in capsys.readouterr().out
