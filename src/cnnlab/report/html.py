"""`cnnlab report`: one self-contained HTML file for a run, several runs or an experiment folder.

Plain string templates; every value that comes from a run folder (model names, config values,
paths, captions) goes through `esc` (html.escape). Figures are embedded as base64 data URIs, the
CSS is inline, and there is no script, so the file opens anywhere, offline, and can be mailed.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import math
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnlab import __version__
from cnnlab.errors import CnnlabError
from cnnlab.experiments.compare import (
    COLUMNS,
    NUMERIC,
    Leaderboard,
    format_value,
    leaderboard,
    plot_leaderboard,
    table_cells,
)
from cnnlab.experiments.runs import expand_globs, expand_run_paths, read_experiment
from cnnlab.figures.plots import plot_confusion, plot_curves, plot_per_class
from cnnlab.files import UnsafeFileError, check_output, make_dirs, make_readable, read_bytes, write_text_atomic
from cnnlab.report.analysis import DatasetCache, RunAnalysis, analyse_run, png_bytes
from cnnlab.runfolder.record import NOT_A_RUN, RunRecord, read_run

IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif"}
# Summary keys in display order, with how to show them.
SUMMARY_KEYS = [
    "status",
    "model",
    "dataset",
    "recipe",
    "epochs",
    "final_test_acc",
    "best_test_acc",
    "best_epoch",
    "total_seconds",
    "mean_images_per_s",
    "params",
    "macs",
    "input_size",
    "device",
    "world_size",
]
PROVENANCE_KEYS = ["cnnlab", "torch", "python", "platform", "host", "device", "world_size", "started", "command"]

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; color: #1f2328;
       background: #f6f8fa; line-height: 1.45; }
main { max-width: 1120px; margin: 0 auto; padding: 24px 32px 64px; background: #fff; }
h1 { font-size: 1.7em; margin: 0.2em 0 0.3em; }
h2 { font-size: 1.35em; border-bottom: 1px solid #d0d7de; padding-bottom: 0.2em; margin-top: 1.8em; }
h3 { font-size: 1.1em; margin-top: 1.4em; }
.meta, .note, figcaption { color: #57606a; font-size: 0.9em; }
.note { background: #fff8c5; border-left: 3px solid #d4a72c; padding: 6px 10px; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.88em; }
th, td { border: 1px solid #d0d7de; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.kv td:first-child { font-weight: 600; white-space: nowrap; }
.numbers { display: flex; flex-wrap: wrap; gap: 12px; margin: 0.6em 0; }
.numbers div { border: 1px solid #d0d7de; border-radius: 6px; padding: 6px 12px; min-width: 110px; }
.numbers b { display: block; font-size: 1.3em; }
figure { margin: 0.8em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eaeef2; }
.gallery { display: flex; flex-wrap: wrap; gap: 12px; }
.gallery figure { max-width: 520px; }
details { margin: 1em 0; border: 1px solid #d0d7de; border-radius: 6px; padding: 0 12px; }
details > summary { cursor: pointer; padding: 8px 0; font-weight: 600; }
nav ul { columns: 2; font-size: 0.9em; }
code { background: #f6f8fa; padding: 0 3px; }
"""


def esc(value: Any) -> str:
    """HTML-escape any value (quotes too, so it is safe inside attributes)."""
    return html.escape("" if value is None else str(value), quote=True)


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def figure(data: bytes | None, caption: str, mime: str = "image/png") -> str:
    if not data:
        return ""
    return (
        f'<figure><img src="{data_uri(data, mime)}" alt="{esc(caption)}">'
        f"<figcaption>{esc(caption)}</figcaption></figure>"
    )


# What an image file must start with to be embedded as its type: a report shares pictures, nothing else.
IMAGE_MAGIC = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
}
MAX_FIGURE_BYTES = 16 * 2**20
MAX_FOLDER_FIGURES = 200  # a folder of inspect figures, or an experiment's list, is cut here


def file_figure(path: Path, caption: str, within: Path) -> str:
    """A figure from an image file inside `within`, '' when there is none, or a note saying why one is left out.

    The report is meant to be shared: only a regular image file (by its first bytes) of bounded size that
    resolves inside the run or experiment folder is embedded, never what a link or `..` points at.
    """
    mime = IMAGE_TYPES.get(path.suffix.lower())
    if mime is None or not (path.exists() or path.is_symlink()):
        return ""
    try:
        data = read_bytes(path, within, MAX_FIGURE_BYTES)
    except (OSError, UnsafeFileError) as err:
        reason = err.strerror if isinstance(err, OSError) and not isinstance(err, UnsafeFileError) else str(err)
        return note(f"{caption}: left out ({reason})")
    if not data.startswith(IMAGE_MAGIC[mime]):
        return note(f"{caption}: left out ({path.name} is not a {mime.split('/')[1].upper()} image)")
    return figure(data, caption, mime)


def table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], numeric: AbstractSet[int] = frozenset(), css_class: str = ""
) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(f'<td class="num">{esc(c)}</td>' if i in numeric else f"<td>{esc(c)}</td>" for i, c in enumerate(row))
        + "</tr>"
        for row in rows
    )
    attribute = f' class="{esc(css_class)}"' if css_class else ""
    return f"<table{attribute}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def _show(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return "-" if value is None else str(value)


# ---- one run --------------------------------------------------------------------------------


def _summary_value(key: str, value: Any) -> str:
    if key == "mean_images_per_s":
        return format_value("images_per_s", value)
    return (
        format_value(key, value)
        if key in ("final_test_acc", "best_test_acc", "params", "macs", "total_seconds")
        else _show(value)
    )


def _numbers(record: RunRecord) -> str:
    """The headline numbers as boxes."""
    boxes = [
        ("final test accuracy", format_value("final_test_acc", record.summary.get("final_test_acc"))),
        (
            "best test accuracy",
            format_value("best_test_acc", record.summary.get("best_test_acc"))
            + (f" (epoch {record.summary['best_epoch']})" if record.summary.get("best_epoch") else ""),
        ),
        ("parameters", format_value("params", record.summary.get("params"))),
        ("MACs / image", format_value("macs", record.summary.get("macs"))),
        ("training time", format_value("total_seconds", record.summary.get("total_seconds")) + " s"),
        ("images / s", format_value("images_per_s", record.summary.get("mean_images_per_s"))),
    ]
    return (
        '<div class="numbers">'
        + "".join(f"<div>{esc(label)}<b>{esc(value)}</b></div>" for label, value in boxes)
        + "</div>"
    )


def _per_class_table(analysis: RunAnalysis) -> str:
    matrix = analysis.confusion
    if matrix is None:
        return ""
    rows = []
    for i, name in enumerate(analysis.classes or []):
        total = int(matrix[i].sum())
        correct = int(matrix[i, i])
        accuracy = f"{100 * correct / total:.2f}%" if total else "no samples"
        rows.append([name, f"{correct:,}", f"{total:,}", accuracy])
    return table(["class", "correct", "test images", "accuracy"], rows, numeric={1, 2, 3})


def _curves_section(record: RunRecord) -> str:

    shown = file_figure(
        record.path / "curves.png", within=record.path, caption="Loss and accuracy per epoch (train and test)"
    )
    if not shown and record.history:  # an incomplete run has metrics but no figure yet
        shown = figure(
            png_bytes(plot_curves, record.history),
            f"Loss and accuracy per epoch, from metrics.csv ({len(record.history)} epochs so far)",
        )
    if not shown:
        shown = note("no curves.png and no metrics.csv rows in this folder")
    rows = [
        [
            r.get("epoch"),
            _pct(r.get("train_acc")),
            _pct(r.get("test_acc")),
            _num(r.get("train_loss")),
            _num(r.get("test_loss")),
            _num(r.get("lr"), "{:.4g}"),
            _num(r.get("epoch_seconds"), "{:.1f}"),
        ]
        for r in record.history
    ]
    metrics = (
        table(
            ["epoch", "train acc", "test acc", "train loss", "test loss", "lr", "seconds"], rows, numeric=set(range(7))
        )
        if rows
        else ""
    )
    return f"<h3>Curves</h3>{shown}{metrics}"


def _pct(value: Any) -> str:
    return "-" if value is None else f"{100 * float(value):.2f}%"


def _num(value: Any, pattern: str = "{:.4f}") -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else pattern.format(value)


def _confusion_section(record: RunRecord, analysis: RunAnalysis) -> str:

    shown = file_figure(
        record.path / "confusion.png",
        within=record.path,
        caption="Test confusion matrix (rows: true, columns: predicted)",
    )
    if not shown and analysis.confusion is not None:
        shown = figure(
            png_bytes(plot_confusion, analysis.confusion, analysis.classes),
            "Test confusion matrix (rows: true, columns: predicted)",
        )
    confusion = f"<h3>Confusion matrix</h3>{shown or note('no confusion matrix: ' + (analysis.note or 'none saved'))}"
    per_class = file_figure(
        record.path / "per_class.png", within=record.path, caption="Accuracy of each class on the test split"
    )
    if not per_class and analysis.confusion is not None:
        per_class = figure(
            png_bytes(plot_per_class, analysis.confusion, analysis.classes), "Accuracy of each class on the test split"
        )
    if analysis.confusion is not None and analysis.accuracy is not None:  # both come from one evaluation
        source = (
            f"from {analysis.checkpoint} on {analysis.count:,} test images: accuracy {100 * analysis.accuracy:.2f}%"
        )
        per_class += f'<p class="meta">{esc(source)}</p>' + _per_class_table(analysis)
    elif not per_class:
        per_class = note("no per-class accuracy: " + (analysis.note or "none saved"))
    return f"{confusion}<h3>Per-class accuracy</h3>{per_class}"


def _misclassified_section(record: RunRecord, analysis: RunAnalysis) -> str:
    if analysis.misclassified_png:
        body = figure(
            analysis.misclassified_png,
            f"{analysis.wrong:,} of {analysis.count:,} test images are misclassified; "
            "each is titled predicted label, confidence (true label)",
        )
    elif analysis.confusion is not None:
        body = note(f"no misclassified images among the {analysis.count:,} test images")
    else:
        body = note("the model could not be evaluated: " + analysis.note)
        body += file_figure(
            record.path / "samples.png", within=record.path, caption="Test samples saved by the run (mistakes in red)"
        )
    return f"<h3>Misclassified test images</h3>{body}"


def _inside_section(record: RunRecord) -> str:
    """PNGs written by `cnnlab inspect` (filters, activations, Grad-CAM) into RUN/inspect/, if any."""
    folder = record.path / "inspect"
    images = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_TYPES) if folder.is_dir() else []
    if not images:
        return ""
    shown = "".join(file_figure(p, p.relative_to(folder).as_posix(), record.path) for p in images[:MAX_FOLDER_FIGURES])
    return f'<h3>Inside the network</h3><div class="gallery">{shown}</div>'


def _config_section(record: RunRecord) -> str:
    config_rows = [[k, _show(v)] for k, v in record.config.items()]
    provenance = [[k, _show(record.meta[k])] for k in PROVENANCE_KEYS if k in record.meta]
    parts = ["<h3>Config</h3>"]
    parts.append(
        table(["option", "value"], config_rows, css_class="kv")
        if config_rows
        else note("no config.json in this folder")
    )
    if provenance:
        parts.append(table(["provenance", "value"], provenance, css_class="kv"))
    return "".join(parts)


def _summary_section(record: RunRecord) -> str:
    if not record.complete:
        return "<h3>Summary</h3>" + note(f"{record.status}: {record.reason}")
    rows = [[k, _summary_value(k, record.summary.get(k))] for k in SUMMARY_KEYS if k in record.summary]
    return "<h3>Summary</h3>" + _numbers(record) + table(["summary", "value"], rows, css_class="kv")


def run_section(record: RunRecord, analysis: RunAnalysis, anchor: str, collapsed: bool) -> str:
    title = f"{record.name}: {record.get('model', '?')} on {record.get('dataset', '?')}"
    status = f"{record.status}" + (
        f", final test accuracy {_pct(record.summary.get('final_test_acc'))}"
        if record.complete
        else f" ({record.reason})"
    )
    body = (
        f'<p class="meta">{esc(record.path)} - {esc(status)}</p>'
        + _summary_section(record)
        + _curves_section(record)
        + _confusion_section(record, analysis)
        + _misclassified_section(record, analysis)
        + _inside_section(record)
        + _config_section(record)
    )
    if collapsed:
        return (
            f'<section id="{esc(anchor)}" class="run"><details><summary>{esc(title)} - {esc(status)}'
            f"</summary>{body}</details></section>"
        )
    return f'<section id="{esc(anchor)}" class="run"><h2>{esc(title)}</h2>{body}</section>'


# ---- experiments and comparisons ----------------------------------------------------------------


def _is_table(summary: dict[str, Any]) -> bool:
    headers, rows = summary.get("headers"), summary.get("rows", [])
    return (
        isinstance(headers, list)
        and isinstance(rows, list)
        and all(isinstance(row, list) for row in rows)
        and isinstance(summary.get("caption", ""), (str, type(None)))
    )


def _experiment_figure(folder: Path, name: Any) -> str:
    """A figure experiment.json lists: a relative path inside the experiment folder, nothing else."""
    relative = Path(str(name))
    if relative.is_absolute() or ".." in relative.parts:
        return note(f"{name}: left out (figures must be files inside the experiment folder)")
    return file_figure(folder / relative, str(name), folder)


def experiment_section(folder: Path, info: dict[str, Any], anchor: str) -> str:
    """An experiment.json's summary table, references and figures."""
    parts = [
        f'<section id="{esc(anchor)}" class="experiment"><h2>{esc(info.get("title") or folder.name)}</h2>',
        f'<p class="meta">{esc(folder)} - {esc(info.get("kind", "experiment"))}, '
        f"status {esc(info.get('status', '?'))}, created {esc(info.get('created', '?'))}</p>",
    ]
    summary = info.get("summary_table")
    if isinstance(summary, dict) and summary.get("headers") and not _is_table(summary):
        parts.append(note("experiment.json's summary_table is not a table (headers and rows of values); left out"))
    elif isinstance(summary, dict) and summary.get("headers"):
        if summary.get("caption"):
            parts.append(f"<p>{esc(summary['caption'])}</p>")
        headers = summary["headers"]
        parts.append(table(headers, summary.get("rows", []), numeric=set(range(1, len(headers)))))
    elif info.get("status") != "complete":
        parts.append(
            note(f"the experiment has not finished: run the same command again with -o {folder} to complete it")
        )
    references = info.get("references")
    if isinstance(references, dict) and references:
        parts.append(
            "<ul>" + "".join(f"<li>reference for {esc(k)}: {esc(v)}</li>" for k, v in references.items()) + "</ul>"
        )
    settings = {
        k: info[k]
        for k in ("models", "dataset", "epochs", "seeds", "recipe", "permutation_seed", "settings", "common", "options")
        if k in info
    }
    if settings:
        parts.append(table(["setting", "value"], [[k, _show(v)] for k, v in settings.items()], css_class="kv"))
    listed = info.get("figures")
    names = listed[:MAX_FOLDER_FIGURES] if isinstance(listed, list) else []
    figures = [_experiment_figure(folder, name) for name in names]
    parts.append('<div class="gallery">' + "".join(figures) + "</div>")
    return "".join(parts) + "</section>"


def comparison_section(board: Leaderboard, anchor: str) -> str:

    parts = [f'<section id="{esc(anchor)}" class="comparison"><h2>Comparison</h2>']
    headers, cells = table_cells(board)
    if cells:
        parts.append(table(headers, cells, numeric={i for i, (k, _) in enumerate(COLUMNS) if k in NUMERIC}))
        parts.append(
            figure(
                png_bytes(plot_leaderboard, board),
                "Final test accuracy vs training time and vs parameters (one point per run), "
                "and the test accuracy of every run per epoch",
            )
        )
    else:
        parts.append(note("no complete run to compare"))
    if board.others:
        parts.append(
            "<h3>Not compared</h3><ul>"
            + "".join(f"<li><code>{esc(r.path)}</code>: {esc(r.status)} ({esc(r.reason)})</li>" for r in board.others)
            + "</ul>"
        )
    return "".join(parts) + "</section>"


# ---- the page -----------------------------------------------------------------------------


@dataclass
class ReportInputs:
    experiments: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)
    runs: list[RunRecord] = field(default_factory=list)  # complete and incomplete runs
    others: list[RunRecord] = field(default_factory=list)  # named folders that are not runs


def collect_inputs(paths: Sequence[str | Path]) -> ReportInputs:
    if not paths:
        raise CnnlabError("name a run folder or experiment folder to report on, e.g. `cnnlab report runs/my-run`")
    inputs = ReportInputs()
    for path in expand_globs(list(paths)):
        info = read_experiment(path)
        if info is not None:
            inputs.experiments.append((Path(path), info))
    for path in expand_run_paths(list(paths)):
        record = read_run(path)
        (inputs.others if record.status == NOT_A_RUN else inputs.runs).append(record)
    if not inputs.runs and not inputs.experiments:
        reasons = "; ".join(f"{r.path}: {r.reason}" for r in inputs.others)
        raise CnnlabError(
            f"nothing to report: {reasons}; pass run folders (with config.json/summary.json) "
            "or an experiment folder (with experiment.json)"
        )
    return inputs


def render_report(inputs: ReportInputs, analyses: Sequence[RunAnalysis], title: str) -> str:

    sections, contents = [], []
    for i, (folder, info) in enumerate(inputs.experiments):
        anchor = f"experiment-{i + 1}"
        sections.append(experiment_section(folder, info, anchor))
        contents.append((anchor, info.get("title") or folder.name))
    if len(inputs.runs) > 1 or inputs.experiments:
        board = leaderboard([r.path for r in inputs.runs]) if inputs.runs else Leaderboard([], [], [])
        board.others.extend(inputs.others)
        sections.append(comparison_section(board, "comparison"))
        contents.append(("comparison", "Comparison"))
    collapsed = len(inputs.runs) > 1  # several runs: each opens on a click (<details>, no script)
    for i, (record, analysis) in enumerate(zip(inputs.runs, analyses)):
        anchor = f"run-{i + 1}"
        sections.append(run_section(record, analysis, anchor, collapsed))
        contents.append((anchor, f"{record.name} ({record.status})"))
    if len(inputs.runs) <= 1 and inputs.others:
        sections.append(note("not runs: " + "; ".join(f"{r.path} ({r.reason})" for r in inputs.others)))
    nav = (
        ("<nav><ul>" + "".join(f'<li><a href="#{esc(a)}">{esc(t)}</a></li>' for a, t in contents) + "</ul></nav>")
        if len(contents) > 1
        else ""
    )
    made = _dt.datetime.now().isoformat(timespec="seconds")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body><main>"
        f'<h1>{esc(title)}</h1><p class="meta">made by cnnlab {esc(__version__)} on {esc(made)}</p>'
        f"{nav}{''.join(sections)}</main></body></html>\n"
    )


def default_report_path(paths: Sequence[str | Path]) -> Path:
    """DIR/report.html for one folder; report.html here for several."""
    if len(paths) == 1 and Path(paths[0]).is_dir():
        return Path(paths[0]) / "report.html"
    return Path("report.html")


def build_report(
    paths: Sequence[str | Path],
    out: str | Path | None = None,
    *,
    data_dir: str | None = None,
    checkpoint: str = "last",
    misclassified: int = 32,
    title: str | None = None,
    log: Callable[[str], None] = lambda message: None,
    overwrite: bool = False,
) -> Path:
    """Write one self-contained HTML report of run folders and/or experiment folders; returns its path.

    `checkpoint` ("last": the final epoch, matching the run's figures; or "best") is the model whose
    test predictions give the per-class table and the misclassified images.
    """

    if checkpoint not in ("last", "best"):
        raise CnnlabError(f"checkpoint must be 'last' or 'best', got {checkpoint!r}")
    if misclassified < 0:
        raise CnnlabError(f"--misclassified must be 0 or more images, got {misclassified}")
    out_path = check_output(Path(out) if out else default_report_path(paths), overwrite)  # before the work
    inputs = collect_inputs(paths)
    datasets = DatasetCache()
    analyses = []
    for record in inputs.runs:
        log(f"evaluating {record.path}")
        analyses.append(analyse_run(record.path, datasets, data_dir, checkpoint, misclassified))
    if title is None:
        if inputs.experiments:
            names, kind = [info.get("title") or folder.name for folder, info in inputs.experiments], "experiments"
        else:
            names, kind = [r.name for r in inputs.runs], "runs"
        title = "cnnlab report: " + (names[0] if len(names) == 1 else f"{len(names)} {kind}")
    html_text = render_report(inputs, analyses, title)
    make_dirs(out_path.parent)
    write_text_atomic(out_path, html_text)  # an OSError is one line from the CLI (a full disk: exit 1)
    make_readable(out_path)  # a report is for sharing
    return out_path
