"""The lessons (lessons/*.md, jupytext notebooks): their structure, and that each one runs top to bottom at CI size.

The fast checks read the notebooks as text: a Chinese counterpart with the same headings and the same code for every
English lesson, run times stated, only cnnlab's public API imported, figures shown rather than drawn. The slow
checks execute each English lesson with nbclient, with CNNLAB_LESSON_SIZE=ci (the embedded samples, 1 epoch).
"""

from __future__ import annotations

import ast
import importlib
import re
import sys
from pathlib import Path

import pytest

import cnnlab

jupytext = pytest.importorskip("jupytext", reason="the lessons need the `lessons` extra: pip install -e '.[lessons]'")

LESSONS_DIR = Path(__file__).resolve().parent.parent / "lessons"
LESSONS = sorted(LESSONS_DIR.glob("[0-9][0-9]-*.md"))
CHINESE_DIR = LESSONS_DIR / "zh-CN"
FIGURES_PER_LESSON = 5  # at least: curves, confusion matrix, filters, feature maps, the experiment's figure


def read(path: Path):
    return jupytext.read(path)


def cells(notebook, cell_type: str) -> list[str]:
    return [cell.source for cell in notebook.cells if cell.cell_type == cell_type]


def headings(notebook) -> list[str]:
    return [line for text in cells(notebook, "markdown") for line in text.splitlines() if re.match(r"#{1,6} ", line)]


def lesson_ids(paths: list[Path]) -> list[str]:
    return [path.stem for path in paths]


def test_there_are_five_lessons_and_the_readme_lists_them():
    assert [path.name[:3] for path in LESSONS] == ["01-", "02-", "03-", "04-", "05-"]
    readme = (LESSONS_DIR / "README.md").read_text(encoding="utf-8")
    for path in LESSONS:
        assert path.name in readme, f"lessons/README.md does not list {path.name}"


@pytest.mark.parametrize("lesson", LESSONS, ids=lesson_ids(LESSONS))
def test_lesson_is_a_plain_jupytext_markdown_notebook(lesson):
    notebook = read(lesson)
    representation = notebook.metadata["jupytext"]["text_representation"]
    assert representation["format_name"] == "markdown" and notebook.metadata["jupytext"]["formats"] == "md"
    assert notebook.metadata["kernelspec"]["name"] == "python3"
    assert headings(notebook)[0].startswith("# Lesson ")
    assert cells(notebook, "code"), "a lesson without code"


@pytest.mark.parametrize("lesson", LESSONS, ids=lesson_ids(LESSONS))
def test_every_lesson_has_a_chinese_counterpart_with_the_same_cells(lesson):
    chinese_path = CHINESE_DIR / lesson.name
    assert chinese_path.is_file(), f"no Chinese counterpart lessons/zh-CN/{lesson.name}"
    english, chinese = read(lesson), read(chinese_path)
    assert [c.cell_type for c in chinese.cells] == [c.cell_type for c in english.cells]
    assert len(headings(chinese)) == len(headings(english))
    assert [h.split(" ", 1)[0] for h in headings(chinese)] == [h.split(" ", 1)[0] for h in headings(english)]
    assert cells(chinese, "code") == cells(english, "code"), "code cells must be identical in both languages"
    assert chinese.metadata == english.metadata
    prose = "".join(cells(chinese, "markdown"))
    assert len(re.findall(r"[\u4e00-\u9fff]", prose)) > 500, "the Chinese prose is not in Chinese"


@pytest.mark.parametrize("lesson", LESSONS, ids=lesson_ids(LESSONS))
def test_lesson_states_its_run_times_and_its_size_parameter(lesson):
    english = "".join(cells(read(lesson), "markdown"))
    assert re.search(
        r"\*\*Run time\*\* on a 2-core CPU .*full size about [\d.]+ min.*CI size about \d+ s", english, re.S
    )
    chinese = "".join(cells(read(CHINESE_DIR / lesson.name), "markdown"))
    assert re.search(r"\*\*运行时间\*\*.*完整规模约 [\d.]+ 分钟.*CI 规模约 \d+ 秒", chinese, re.S)
    code = "\n".join(cells(read(lesson), "code"))
    for variable in ("CNNLAB_LESSON_SIZE", "CNNLAB_LESSON_OUT", "CNNLAB_DATA"):
        assert variable in code and variable in english


def cnnlab_names_used(code: str) -> list[tuple[str, str]]:
    """(module, name) for every cnnlab import and every `cnnlab.NAME` attribute in the code."""
    used = []
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            used += [(alias.name, "") for alias in node.names if alias.name.split(".")[0] == "cnnlab"]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "cnnlab":
            used += [(node.module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "cnnlab":
            used.append(("cnnlab", node.attr))
    return used


def is_public(module: str, name: str) -> bool:
    """`import cnnlab`, `cnnlab.NAME` / `from cnnlab import NAME` with NAME in `cnnlab.__all__`, or
    `from cnnlab.MODULE import NAME` where MODULE is where cnnlab takes that public NAME from."""
    if not name:
        return module == "cnnlab"
    if name not in cnnlab.__all__:
        return False
    return module == "cnnlab" or getattr(importlib.import_module(module), name, None) is getattr(cnnlab, name)


def test_the_public_api_check_tells_public_from_private():
    code = "import cnnlab\nfrom cnnlab import train\nfrom cnnlab.runs import load_run\ncnnlab.summarize\n"
    assert all(is_public(*used) for used in cnnlab_names_used(code))
    for private in ("import cnnlab.cli", "from cnnlab.experiments.permutation import run", "cnnlab.inspect"):
        assert not all(is_public(*used) for used in cnnlab_names_used(private)), private


@pytest.mark.parametrize("lesson", LESSONS, ids=lesson_ids(LESSONS))
def test_lesson_uses_only_the_public_api_and_draws_no_figures_itself(lesson):
    code = "\n".join(cells(read(lesson), "code"))
    used = cnnlab_names_used(code)
    assert ("cnnlab", "") in used
    assert [f"{module}:{name}" for module, name in used if not is_public(module, name)] == []
    assert not re.search(r"^\s*(import|from)\s+(matplotlib|seaborn|plotly)", code, re.M), "figures come from cnnlab"
    assert "IPython.display import Image" in code


@pytest.fixture(scope="module")
def kernel_name(tmp_path_factory):
    """The installed `python3` kernel when it runs this interpreter (jupyter_client puts sys.executable for a
    plain `python`), else a kernel registered for this interpreter in a temporary JUPYTER_PATH."""
    pytest.importorskip("nbclient")
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        argv = KernelSpecManager().get_kernel_spec("python3").argv
    except NoSuchKernel:
        argv = []
    if argv and argv[0] in ("python", "python3", sys.executable):
        yield "python3"
        return
    from ipykernel.kernelspec import install

    prefix = tmp_path_factory.mktemp("jupyter")
    install(kernel_name="cnnlab-lessons", prefix=str(prefix))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
        yield "cnnlab-lessons"


@pytest.mark.slow
@pytest.mark.parametrize("lesson", LESSONS, ids=lesson_ids(LESSONS))
def test_lesson_runs_top_to_bottom_at_ci_size(lesson, kernel_name, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    monkeypatch.setenv("CNNLAB_LESSON_SIZE", "ci")
    monkeypatch.setenv("CNNLAB_LESSON_OUT", str(tmp_path / "runs"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))  # the isolated $HOME of conftest does not exist
    notebook = read(lesson)
    client = NotebookClient(
        notebook, kernel_name=kernel_name, timeout=300, resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on any error
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    figures = [output for output in outputs if "image/png" in output.get("data", {})]
    assert len(figures) >= FIGURES_PER_LESSON
    assert [path.name for path in (tmp_path / "runs").iterdir()], "the lesson wrote no runs into $CNNLAB_LESSON_OUT"
