"""The documentation: the site builds offline with no warnings, its links resolve, and every command it shows works.

- `mkdocs build --strict` (as `.ci/run` runs it): no warning, every local link and anchor of the built HTML
  resolves, and no page loads a script, stylesheet, font or image from elsewhere;
- every `cnnlab ...` line in a ```bash block of docs/, README.md and README.zh-CN.md parses with cnnlab's own
  argument parser, and the blocks marked `<!-- run -->` run, in order, in a fresh folder;
- the site quotes every benchmark table and every lesson, and documents every name of `cnnlab.__all__`;
- README.md stays short, and README.zh-CN.md keeps its sections and code blocks in step with it.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
README_ZH = ROOT / "README.zh-CN.md"
MARKDOWN = [README, README_ZH, *sorted(DOCS.rglob("*.md")), *sorted((ROOT / "lessons").rglob("*.md"))]

# ---- the commands shown -----------------------------------------------------------------------------------------

FENCE = re.compile(r"^```([\w-]*)\n(.*?)^```", flags=re.S | re.M)
RUN_MARK = re.compile(r"<!--\s*run\s*-->\s*$")
REDIRECT = re.compile(r"\s\d?>&\d|\s\d?>>?\s*[^\s;&|'\"]+")  # `> tune.log`, `2>&1`: not arguments
SEPARATORS = {"&&", "||", ";", "|", "&", "(", ")", ";;"}
WRAPPERS = {"nohup", "time", "exec"}
SHELL_VARIABLE = re.compile(r"\$\{?\w+\}?")  # "$SLURM_CPUS_PER_TASK": a number as good as any other value here


def code_blocks(path: Path) -> list[tuple[str, str, bool]]:
    """(language, code, marked to run) of every fenced block of a Markdown file."""
    text = path.read_text(encoding="utf-8")
    blocks = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        blocks.append((match.group(1), match.group(2), bool(RUN_MARK.search(before))))
    return blocks


def cnnlab_commands(code: str) -> list[list[str]]:
    """The argument lists of every `cnnlab ...` in a bash block: direct, after `python -m`/`torchrun -m`, or quoted."""
    commands: list[list[str]] = []
    for line in code.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(REDIRECT.sub(" ", line), posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words = list(lexer)
        simple: list[str] = []
        for word in [*words, ";"]:
            if word not in SEPARATORS:
                simple.append(word)
                continue
            if "cnnlab" in simple:
                at = simple.index("cnnlab")
                before = simple[:at]
                if before[-1:] == ["-m"] or all("=" in w or w in WRAPPERS for w in before):
                    commands.append([SHELL_VARIABLE.sub("4", w) for w in simple[at + 1 :]])
            for quoted in simple:  # ssh "$host" "cd ~/work && nohup cnnlab tune ..."
                if " " in quoted and re.search(r"(^|\s)cnnlab\s", quoted):
                    commands.extend(cnnlab_commands(quoted))
            simple = []
    return commands


def shown_commands() -> list[tuple[str, list[str], bool]]:
    """(where, arguments, marked to run) of every cnnlab command in a bash block of the docs and READMEs."""
    shown = []
    for path in MARKDOWN:
        for language, code, run in code_blocks(path):
            if language in ("bash", "sh", "shell", "console"):
                for args in cnnlab_commands(code):
                    shown.append((str(path.relative_to(ROOT)), args, run))
    return shown


def test_the_docs_show_commands_and_mark_the_cheap_ones_to_run():
    shown = shown_commands()
    assert len(shown) > 60
    run = [" ".join(args) for _, args, marked in shown if marked]
    for needed in ("models", "datasets", "summary lenet", "recipes"):
        assert needed in run, needed
    assert any(
        c.startswith("train ") and "--dataset mnist-sample" in c and "--epochs 1" in c and "--limit-train 256" in c
        for c in run
    )


def test_every_command_shown_parses():
    """A typo, a removed flag or a renamed command in the docs fails here, with the file that shows it."""
    from cnnlab.cli.main import build_parser

    parser = build_parser()
    failures = []
    for where, args, _ in shown_commands():
        try:
            parsed = parser.parse_args(args)
        except SystemExit as stop:
            if not (stop.code == 0 and {"-h", "--help"} & set(args)):
                failures.append(f"{where}: cnnlab {shlex.join(args)} (exit {stop.code})")
            continue
        if parsed.command is None:
            failures.append(f"{where}: cnnlab {shlex.join(args)} (no command)")
    assert not failures, "\n".join(failures)


@pytest.mark.slow
def test_the_commands_marked_run_run(tmp_path, monkeypatch, capsys):
    """Each page's `<!-- run -->` blocks, in order, in a fresh working folder (so `runs/first` is the page's own)."""
    from cnnlab.cli.main import main

    monkeypatch.setenv("CNNLAB_CONFIG", str(tmp_path / "config"))  # `datasets add` must not touch the user's names
    monkeypatch.setenv("MPLBACKEND", "Agg")
    by_page: dict[str, list[list[str]]] = {}
    for where, args, run in shown_commands():
        if run:
            by_page.setdefault(where, []).append(args)
    assert by_page
    for where, commands in by_page.items():
        folder = tmp_path / where.replace("/", "_")
        folder.mkdir()
        monkeypatch.chdir(folder)
        for args in commands:
            extra = ["--no-progress"] if args[0] == "train" else []
            assert main([*args, *extra]) == 0, f"{where}: cnnlab {shlex.join(args)}\n{capsys.readouterr().err}"
    assert "(1, 16, 10, 10)" in capsys.readouterr().out  # `cnnlab summary lenet` printed its layers


# ---- what the site quotes and documents ---------------------------------------------------------------------------


def quoted_files(page: Path) -> list[str]:
    return re.findall(r'^--8<-- "([^"]+)"', page.read_text(encoding="utf-8"), flags=re.M)


def test_every_benchmark_table_has_its_page():
    for table in sorted((ROOT / "benchmarks" / "results").glob("*.md")):
        page = DOCS / "benchmarks" / "results" / table.name
        assert page.is_file(), (
            f"add {page.relative_to(ROOT)} quoting {table.relative_to(ROOT)}, and list it in mkdocs.yml"
        )
        assert quoted_files(page) == [f"benchmarks/results/{table.name}"]


def test_every_lesson_is_on_the_site():
    lessons = ROOT / "lessons"
    for lesson in sorted(lessons.rglob("*.md")) if lessons.is_dir() else []:
        if lesson.name == "README.md":
            continue
        name = lesson.relative_to(lessons)
        page = DOCS / "lessons" / name
        assert page.is_file(), (
            f"add {page.relative_to(ROOT)} quoting {lesson.relative_to(ROOT)}, and list it in mkdocs.yml"
        )
        assert quoted_files(page)[:1] == [f"lessons/{name.as_posix()}"]
        assert f"lessons/{name.as_posix()}" in (ROOT / "mkdocs.yml").read_text(encoding="utf-8"), "add it to the nav"
        assert f"]({name.as_posix()})" in (DOCS / "lessons" / "index.md").read_text(encoding="utf-8"), "list it"
    for page in (DOCS / "lessons").rglob("*.md"):  # and nothing quotes a lesson that is gone
        for quoted in quoted_files(page):
            assert (ROOT / quoted).is_file(), f"{page.relative_to(ROOT)} quotes {quoted}, which is gone"


def test_the_api_reference_documents_every_public_name():
    import cnnlab

    api = (DOCS / "api.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^::: cnnlab\.(\w+)$", api, flags=re.M))
    public = set(cnnlab.__all__) - {"__version__"}
    assert documented == public
    assert "__version__" in api


def markdown_links(path: Path) -> list[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    text = re.sub(r"`[^`\n]*`", "", text)
    return re.findall(r"\]\(([^)\s]+)\)", text)


def test_readme_links_resolve():
    """The READMEs are read on a forge, not on the site: their relative links must name files of the repository."""
    for readme in (README, README_ZH):
        for target in markdown_links(readme):
            if urlsplit(target).scheme or target.startswith("#"):
                continue
            assert (ROOT / unquote(urlsplit(target).path)).exists(), f"{readme.name}: {target}"


# ---- the READMEs ----------------------------------------------------------------------------------------------


def test_the_readme_reads_in_five_minutes():
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 170


def sections(path: Path) -> list[tuple[str, list[tuple[str, str]]]]:
    """(## heading, its code blocks) of every second-level section (and the text before the first)."""
    parts = re.split(r"^## (.*)$", path.read_text(encoding="utf-8"), flags=re.M)
    heads = ["", *parts[1::2]]
    bodies = parts[0::2]
    return [(head, [(m.group(1), m.group(2)) for m in FENCE.finditer(body)]) for head, body in zip(heads, bodies)]


def test_the_chinese_readme_keeps_in_step():
    english, chinese = sections(README), sections(README_ZH)
    assert [h for h, _ in chinese].count("") == 1
    assert len(chinese) == len(english), (
        f"README.md has {len(english) - 1} ## sections, README.zh-CN.md {len(chinese) - 1}: "
        + ", ".join(h for h, _ in english[1:])
    )
    for (head, blocks), (head_zh, blocks_zh) in zip(english, chinese):
        assert blocks_zh == blocks, f"the code of '## {head}' differs in '## {head_zh}' of README.zh-CN.md"


# ---- the built site -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """`mkdocs build --strict` of the repository's docs into a temporary folder; fails on any warning."""
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    pytest.importorskip("mkdocstrings")
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    log = done.stdout + done.stderr
    assert done.returncode == 0, log
    assert not re.search(r"^(WARNING|ERROR)\b", log, flags=re.M), log
    return out


class Refs(HTMLParser):
    """The URLs a page loads or links to, and the ids it holds."""

    def __init__(self):
        super().__init__()
        self.loads: list[tuple[str, str]] = []  # (tag, url) of what a browser fetches to show the page
        self.links: list[str] = []
        self.ids: set[str] = set()
        self.styles: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        for name in ("src", "href", "srcset", "poster", "data"):
            if tag != "a" and attrs.get(name):
                self.loads.append((tag, attrs[name]))
        if attrs.get("style"):
            self.styles.append(attrs["style"])
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.styles.append(data)


REMOTE = re.compile(r"^(https?:)?//", flags=re.I)
CSS_REMOTE = re.compile(r"(url\(\s*['\"]?|@import\s+['\"])(https?:)?//", flags=re.I)


def pages(site: Path) -> dict[Path, Refs]:
    return {html.resolve(): page_refs(html) for html in sorted(site.rglob("*.html"))}


def page_refs(html: Path) -> Refs:
    refs = Refs()
    refs.feed(html.read_text(encoding="utf-8"))
    return refs


@pytest.mark.slow
def test_the_site_builds_with_every_page(site):
    for page in DOCS.rglob("*.md"):
        assert (site / page.relative_to(DOCS).with_suffix(".html")).is_file(), page
    api = (site / "api.html").read_text(encoding="utf-8")
    assert 'id="cnnlab.train"' in api and "Train a model and write its run folder" in api  # from the docstring
    lesson = site / "lessons" / "01-first-convnet.html"
    if lesson.is_file():  # quoted whole, its jupytext header dropped
        assert "jupytext" not in lesson.read_text(encoding="utf-8").split("<article", 1)[1]
    records = (site / "benchmarks" / "results" / "records.html").read_text(encoding="utf-8")
    assert "mnist-99.2" in records


@pytest.mark.slow
def test_the_site_fetches_nothing_from_elsewhere(site):
    """No script, stylesheet, font, image or frame from another host: the site reads offline."""
    found = []
    for html, refs in pages(site).items():
        found += [f"{html.relative_to(site)}: <{tag}> {url}" for tag, url in refs.loads if REMOTE.match(url.strip())]
        found += [f"{html.relative_to(site)}: style {s[:80]}" for s in refs.styles if CSS_REMOTE.search(s)]
    for css in site.rglob("*.css"):
        found += [
            f"{css.relative_to(site)}: {m.group(0)}" for m in CSS_REMOTE.finditer(css.read_text(encoding="utf-8"))
        ]
    assert not found, "\n".join(found)
    index = (site / "index.html").read_text(encoding="utf-8")
    assert "fonts.googleapis" not in index and "fonts.gstatic" not in index


@pytest.mark.slow
def test_every_local_link_of_the_site_resolves(site):
    site = site.resolve()
    parsed = pages(site)
    broken = []
    for html, refs in parsed.items():
        for url in [*refs.links, *(u for _, u in refs.loads)]:
            parts = urlsplit(url)
            if parts.scheme or url.startswith("//"):
                continue
            base = site if parts.path.startswith("/") else html.parent  # 404.html links from the site's root
            target = html if not parts.path else (base / unquote(parts.path).lstrip("/")).resolve()
            if parts.path.endswith("/"):
                target = target / "index.html"
            if not target.exists() or site not in [target, *target.parents]:
                broken.append(f"{html.relative_to(site)}: {url}")
            elif parts.fragment and target.suffix == ".html":
                ids = parsed[target].ids if target in parsed else page_refs(target).ids
                if unquote(parts.fragment) not in ids:
                    broken.append(f"{html.relative_to(site)}: {url} (no such anchor)")
    assert not broken, "\n".join(broken)
