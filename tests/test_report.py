"""`cnnlab report`: one self-contained, escaped HTML file for runs and experiments."""

import base64
import io
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from cnnlab.cli.main import main
from cnnlab.errors import CnnlabError
from cnnlab.experiments import run_permutation
from cnnlab.report import build_report
from cnnlab.training import TrainConfig, train

TINY = dict(dataset="mnist-sample", limit_train=320, limit_test=200, progress=False)
EVIL = "<script>alert(1)</script>"
RUN_SECTIONS = [
    "Summary",
    "Curves",
    "Confusion matrix",
    "Per-class accuracy",
    "Misclassified test images",
    "Inside the network",
    "Config",
]


class Page(HTMLParser):
    """Everything a test asks of a page: tags, headings, images, links, table cells."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str | None]] = []
        self.headings: list[str] = []
        self.images: list[dict] = []
        self.links: list[str] = []
        self.cells: list[str] = []
        self._capture: str | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attributes.extend(attrs)
        if tag == "img":
            self.images.append(dict(attrs))
        if tag == "a":
            self.links.append(dict(attrs).get("href", ""))
        if tag in ("h1", "h2", "h3", "td", "summary"):
            self._capture = tag
            (self.cells if tag == "td" else self.headings).append("")

    def handle_endtag(self, tag):
        if tag == self._capture:
            self._capture = None

    def handle_data(self, data):
        if self._capture == "td":
            self.cells[-1] += data
        elif self._capture:
            self.headings[-1] += data


def _png(data_uri: str) -> Image.Image:
    prefix = "data:image/png;base64,"
    assert data_uri.startswith(prefix)
    return Image.open(io.BytesIO(base64.b64decode(data_uri[len(prefix) :])))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A real run, with an inspect/ figure as `cnnlab inspect` would leave it."""
    root = tmp_path_factory.mktemp("report")
    result = train(TrainConfig(model="cnn-tiny", epochs=1, batch_size=32, lr=0.05, out=str(root / "cnn"), **TINY))
    (result.run_dir / "inspect").mkdir()
    Image.fromarray(np.tile(np.arange(64, dtype=np.uint8)[None] * 4, (64, 1))).save(
        result.run_dir / "inspect" / "filters.png"
    )
    return result.run_dir


@pytest.fixture
def evil_run(tmp_path):
    """A run folder whose model name is markup (config and summary); no checkpoint, no figures."""
    folder = tmp_path / "evil"
    folder.mkdir()
    config = {"model": EVIL, "dataset": "mnist-sample", "epochs": 2, "out": str(folder), "note": '"quoted" & more'}
    (folder / "config.json").write_text(json.dumps({"config": config, "host": EVIL}))
    (folder / "summary.json").write_text(
        json.dumps(
            {
                "status": "complete",
                "model": EVIL,
                "dataset": "mnist-sample",
                "recipe": EVIL,
                "epochs": 2,
                "final_test_acc": 0.5,
                "best_test_acc": 0.6,
                "best_epoch": 1,
                "total_seconds": 1.0,
                "mean_images_per_s": 100.0,
                "params": 10,
                "macs": 20,
                "device": EVIL,
            }
        )
    )
    (folder / "metrics.csv").write_text(
        "epoch,step,train_loss,train_acc,test_loss,test_acc,lr,epoch_seconds,images_per_s\n"
        "1,5,2.0,0.3,1.9,0.6,0.1,0.5,100\n2,10,1.5,0.5,1.6,0.5,0.1,0.5,100\n"
    )
    return folder


def test_run_report_has_every_section_and_embeds_images(run_dir, tmp_path):
    out = build_report([run_dir], tmp_path / "report.html")
    text = out.read_text()
    page = Page(text)
    assert text.startswith("<!DOCTYPE html>") and page.tags.count("html") == 1
    assert [h for h in page.headings if h in RUN_SECTIONS] == RUN_SECTIONS
    assert "script" not in page.tags and not any(name.startswith("on") for name, _ in page.attributes)
    assert not re.search(r"(src|href)=\"(https?:|//)", text) and "http://" not in text and "https://" not in text
    # curves, confusion, per-class, misclassified grid, inspect/filters.png: all PNG data URIs
    assert len(page.images) == 5
    for image in page.images:
        picture = _png(image["src"])
        assert picture.format == "PNG" and picture.width > 50, image["alt"]
    assert any(image["alt"] == "filters.png" for image in page.images)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert f"{100 * summary['final_test_acc']:.2f}%" in text
    # per-class table: 10 classes whose test images add up to the 200 evaluated
    rows = _per_class_rows(page)
    assert [r[0] for r in rows] == [
        f"{d} - {w}"
        for d, w in enumerate(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    ]
    assert sum(int(r[2]) for r in rows) == 200
    correct = sum(int(r[1]) for r in rows)
    assert correct / 200 == pytest.approx(summary["final_test_acc"])  # the last checkpoint is the final model
    assert f"{200 - correct} of 200 test images are misclassified" in text


def _per_class_rows(page: Page) -> list[list[str]]:
    """Rows of the per-class table: cells after the 'class' header come in fours."""
    cells = page.cells
    start = next(i for i, c in enumerate(cells) if re.fullmatch(r"0 - zero", c))
    return [cells[i : i + 4] for i in range(start, start + 40, 4)]


def test_user_strings_are_escaped(run_dir, evil_run, tmp_path, capsys):
    out = tmp_path / "both.html"
    assert main(["report", str(run_dir), str(evil_run), "-o", str(out)]) == 0
    text = out.read_text()
    page = Page(text)
    assert EVIL not in text and "<script" not in text.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "script" not in page.tags
    assert EVIL in page.cells  # shown as text: in the comparison table, config and summary
    assert "&quot;quoted&quot; &amp; more" in text
    # several runs: a comparison first, then each run (collapsed in <details>, no script needed)
    assert "Comparison" in page.headings and page.tags.count("details") == 2
    assert {"#comparison", "#run-1", "#run-2"} <= set(page.links)
    # the fake run has no checkpoint: the report says so instead of failing, and draws curves from metrics.csv
    assert "no checkpoint in" in text and "from metrics.csv (2 epochs so far)" in text


@pytest.mark.slow
def test_experiment_report(tmp_path):
    experiment = run_permutation(
        ["mlp-tiny"], seeds=1, out=tmp_path / "exp", log=lambda m: None, **{**TINY, "limit_test": 100}
    )
    out = build_report([experiment.out_dir])
    assert out == experiment.out_dir / "report.html"
    text = out.read_text()
    page = Page(text)
    assert page.headings[0] == "cnnlab report: Pixel-permutation experiment: mlp-tiny on mnist-sample"
    assert "Comparison" in page.headings and page.tags.count("details") == 2
    headers, rows = experiment.table()
    assert all(cell in page.cells for cell in rows[0])  # the experiment's mean ± std table
    alts = [image["alt"] for image in page.images]
    assert alts[:3] == ["permutation.png", "accuracy.png", page.images[2]["alt"]]
    assert page.images[2]["alt"].startswith("Final test accuracy vs training time")
    for image in page.images:
        _png(image["src"]).verify()
    assert "88% test acc (MNIST, 1 epoch); 85% with a fixed pixel permutation" in text


def test_errors(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "nothing to report:" in capsys.readouterr().err
    with pytest.raises(CnnlabError, match="--misclassified must be 0 or more"):
        build_report([tmp_path], misclassified=-1)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium")
def test_renders_in_headless_chromium(run_dir, tmp_path):
    out = build_report([run_dir], tmp_path / "report.html")
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            "--window-size=1200,2000",
            out.resolve().as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    with Image.open(shot) as image:
        assert image.size == (1200, 2000)
        pixels = np.asarray(image.convert("L"))
    # Rendered, not blank: dark text on the white page, and the embedded figures (grey levels between).
    assert (pixels < 80).mean() > 0.002 and len(np.unique(pixels)) > 50
