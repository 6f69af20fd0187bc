"""The web lab for a student, in a real browser (Debian's chromium driven by Playwright, never a downloaded one):
live pages that follow a run from "not started yet" to its end and then stop polling, curves without a cliff at
epoch boundaries, keyboard-only use, a phone-sized screen, and an axe-core accessibility scan.

Skipped when chromium or Playwright is missing, except under CI=true, where that is a failure. Screenshots go to a
temporary folder, and to $CNNLAB_SCREENSHOT_DIR when set (CNNLAB_SCREENSHOT_DIR=docs refreshes docs/serve-*.png).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

AXE = Path(__file__).parent / "vendor" / "axe.min.js"
RECORDS = ("config.json", "metrics.csv", "steps.csv")


def _copy(src: Path, dst: Path, names=RECORDS) -> Path:
    dst.mkdir(parents=True)
    for name in names:
        shutil.copy(src / name, dst / name)
    return dst


@pytest.fixture(scope="module")
def lab(tmp_path_factory, chromium_path, serving):
    """The lab over a root with two finished 3-epoch runs, a stopped one, a failed one and an unreadable one (with a
    long status), served by uvicorn in a thread on a free port."""
    from cnnlab.training import TrainConfig, train
    from cnnlab.web.app import create_app

    root = tmp_path_factory.mktemp("live") / "runs"
    done = train(
        TrainConfig(
            model="convnet", dataset="mnist-sample", recipe="fast", epochs=3, progress=False, out=str(root / "done")
        )
    ).run_dir
    train(  # a second model, for the overlay
        TrainConfig(
            model="cnn-tiny",
            dataset="mnist-sample",
            recipe="fast",
            epochs=3,
            progress=False,
            out=str(root / "cnn-tiny"),
        )
    )
    stopped = _copy(done, root / "stopped")  # no summary, a last.pt: what Ctrl-C leaves, here in epoch 3
    for name, keep in (("metrics.csv", lambda line: not line.startswith("3,")), ("steps.csv", lambda line: True)):
        lines = (stopped / name).read_text().splitlines(keepends=True)
        kept = [line for line in lines if keep(line)]
        (stopped / name).write_text("".join(kept if name == "metrics.csv" else kept[: len(kept) * 3 // 4]))
    (stopped / "checkpoints").mkdir()
    shutil.copy(done / "checkpoints" / "last.pt", stopped / "checkpoints" / "last.pt")
    _copy(done, root / "failed")  # no summary, no checkpoint: a crash before the first epoch ended
    broken = root / "a-run-folder-whose-config-was-cut-off-while-it-was-being-copied"
    broken.mkdir()
    (broken / "config.json").write_text('{"config": {"model": "' + "convnet-" * 40)
    with serving(create_app([root])) as url:
        yield {"url": url, "root": root}


class Watched:
    """A page with its script errors, the Content-Security-Policy complaints and the API requests it made."""

    def __init__(self, page):
        self.page, self.errors, self.csp, self.requests = page, [], [], []
        page.on("pageerror", lambda err: self.errors.append(str(err)))
        page.on("console", lambda m: "Content Security Policy" in m.text and self.csp.append(m.text))
        page.on("request", lambda r: "/api/" in r.url and self.requests.append((time.monotonic(), r.url)))

    def asked(self, what: str, since: float) -> list[str]:
        return [url for at, url in self.requests if at >= since and what in url]

    def clean(self):
        assert not self.errors, self.errors
        assert not self.csp, self.csp  # uPlot and the pages work under the lab's CSP as it is


@pytest.fixture
def desk(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    yield Watched(context.new_page())
    context.close()


def _get(lab, path: str):
    with urllib.request.urlopen(lab["url"] + path, timeout=30) as response:
        return json.load(response)


def _status(page) -> str | None:
    return page.evaluate("() => document.body.dataset.status || null")


@pytest.mark.slow
def test_a_page_opened_before_the_run_follows_it_to_the_end_and_stops(lab, desk):
    page, folder = desk.page, lab["root"] / "live"
    page.goto(lab["url"] + "/run?id=0:live")
    page.wait_for_function("() => document.body.dataset.status === 'waiting'")
    assert "waiting for the run to start" in page.inner_text("#run-state")
    page.evaluate("() => { window.__same_page = true; }")
    command = [sys.executable, "-m", "cnnlab", "train", "convnet", "--dataset", "mnist-sample", "--epochs", "3"]
    command += ["--limit-train", "512", "--batch-size", "8", "--out", str(folder)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen = []
    try:
        deadline = time.monotonic() + 120
        while (status := _status(page)) != "complete":
            if not seen or seen[-1] != status:
                seen.append(status)
            assert time.monotonic() < deadline, f"the page never saw the run complete (saw {seen})"
            if process.poll() not in (None, 0):
                pytest.fail(f"training failed: {process.stderr.read()}")
            time.sleep(0.1)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert seen[0] == "waiting" and set(seen) <= {"waiting", "running"}, seen
    assert page.evaluate("() => window.__same_page") is True  # followed in place, never reloaded
    assert page.inner_text("#run-state").startswith("complete: 3 of 3 epochs")
    assert "3/3" in page.inner_text("#facts") and "final test accuracy" in page.inner_text("#facts")
    page.wait_for_selector("#confusion td.cell", timeout=60_000)  # the test split, loaded once the run ended
    assert int(page.get_attribute("#curve-acc", "data-points")) >= 3 * 10 + 3  # ~10 train points an epoch, 3 test
    settled = time.monotonic()
    time.sleep(3.5)
    assert desk.asked("/api/curves", settled) == [] and desk.asked("/api/run?", settled) == []  # polling stopped
    desk.clean()


@pytest.mark.parametrize("name", ["stopped", "failed"])
def test_an_ended_run_is_not_polled(lab, desk, name):
    page = desk.page
    start = time.monotonic()
    page.goto(lab["url"] + f"/run?id=0:{name}")
    page.wait_for_function(f"() => document.body.dataset.status === '{name}'")
    page.wait_for_function("() => document.body.dataset.polling === 'stopped'")
    assert page.inner_text("#run-state").startswith(name)
    if name == "stopped":  # its last.pt is evaluated; the failed run has no checkpoint to evaluate
        page.wait_for_selector("#confusion td.cell", timeout=60_000)
    time.sleep(2.5)
    assert desk.asked("/api/curves", start) == []
    desk.clean()


def test_curves_have_no_cliff_at_epoch_boundaries(lab):
    curves = _get(lab, "/api/curves?id=0:done")
    assert curves["source"] == "steps.csv" and curves["train_per"] == "interval"
    train = curves["train"]
    assert len(curves["test"]) == 3 and len(train) >= 3 * 5
    for boundary in (1, 2):
        before = [p["loss"] for p in train if p["x"] <= boundary + 1e-9][-1]
        after = next(p["loss"] for p in train if p["x"] > boundary + 1e-9)
        # Per-interval losses: the first interval of an epoch continues from the last one; a running mean since
        # the epoch's start fell to a fraction of its last value there.
        assert after > 0.6 * before, (boundary, before, after)
    assert all(p["acc"] is None or 0 <= p["acc"] <= 1 for p in train)
    assert [e["epoch"] for e in curves["epochs"]] == [1, 2, 3]


def _tab_to(page, test: str, limit: int = 80) -> None:
    """Press Tab until the focused element passes `test` (a function of the element, as JS source)."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate(f"() => {{ const e = document.activeElement; return !!e && ({test})(e); }}"):
            return
    raise AssertionError(f"Tab never reached an element with {test}")


def _run_names(page) -> list[str]:
    return page.eval_on_selector_all("#runs-table tbody tr", "rows => rows.map(r => r.dataset.id)")


def test_keyboard_only_sorts_and_opens_a_confusion_cell(lab, desk, shots):
    page = desk.page
    page.goto(lab["url"] + "/")
    page.wait_for_selector("tr.run-row")
    before = _run_names(page)
    _tab_to(page, "e => e.classList.contains('sort')")
    assert page.evaluate("() => document.activeElement.matches(':focus-visible')")  # a visible focus ring
    page.keyboard.press("Enter")
    page.wait_for_function(
        "before => document.querySelector('#runs-table tbody tr').dataset.id !== before", arg=before[0]
    )
    assert _run_names(page) != before and sorted(_run_names(page)) == sorted(before)
    assert page.evaluate("() => document.activeElement.classList.contains('sort')")  # the focus stays on the header
    assert page.get_attribute("#runs-table th[aria-sort]", "aria-sort") in ("ascending", "descending")
    labels = page.eval_on_selector_all("#runs-table tbody input[type=checkbox]", "b => b.map(x => x.ariaLabel)")
    assert all(label and "select " in label for label in labels)
    _tab_to(page, "e => e.type === 'checkbox' && e.closest('tr').dataset.id === '0:done'")
    page.keyboard.press("Space")
    page.keyboard.press("Shift+Tab")
    for _ in range(20):  # back up to the overlay button, now enabled
        if page.evaluate("() => document.activeElement.id === 'compare'"):
            break
        page.keyboard.press("Shift+Tab")
    page.keyboard.press("Enter")
    page.wait_for_function("() => +(document.querySelector('#overlay-acc') || {dataset: {}}).dataset.points === 3")

    page.goto(lab["url"] + "/run?id=0:done")
    page.wait_for_selector("#confusion .cell-button", timeout=60_000)
    _tab_to(page, "e => e.classList.contains('cell-button')")
    label = page.evaluate("() => document.activeElement.getAttribute('aria-label')")
    assert label.startswith("true 0 - zero predicted 0 - zero: ") and label.endswith("images")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowRight")  # true 1, predicted 1: many images
    assert page.evaluate("() => document.activeElement.getAttribute('aria-label')").startswith(
        "true 1 - one predicted 1 - one: "
    )
    page.keyboard.press("Enter")
    page.wait_for_selector("#cell-images img")
    _tab_to(page, "e => e.classList.contains('thumb-button') && e.closest('#cell-images')")
    page.keyboard.press("Enter")  # a test image opens larger, and Escape closes it
    page.wait_for_selector("#image-dialog[open] img")
    page.keyboard.press("Escape")
    page.wait_for_function("() => !document.querySelector('#image-dialog[open]')")
    assert page.evaluate("() => document.activeElement.classList.contains('thumb-button')")
    page.keyboard.press("Shift+Tab")
    shots(page, "serve-run")
    desk.clean()


def test_charts_read_hover_zoom_and_smooth(lab, desk):
    page = desk.page
    page.goto(lab["url"] + "/run?id=0:done")
    page.wait_for_selector("#curve-loss canvas")
    scales = page.evaluate(
        "() => Object.fromEntries(Object.entries(charts).map(([k, c]) => [k, [c.scales.y.min, c.scales.y.max]]))"
    )
    assert scales["lr"][0] == 0 and scales["loss"][0] == 0  # a rate or a loss never goes below 0
    assert 0 <= scales["acc"][0] < scales["acc"][1] <= 100  # accuracy in %, never stretched past 100
    assert page.evaluate("() => tickLabels()(null, [1, 1.25, 1.5], 0, 0, 0.25)") == ["1.00", "1.25", "1.50"]
    label = page.get_attribute("#curve-loss .u-wrap", "aria-label")
    assert label.startswith("Loss against epoch; latest: train") and "test" in label
    over = page.locator("#curve-loss .u-over").bounding_box()
    legend = "() => document.querySelector('#curve-loss .u-legend .u-series:first-child .u-value').textContent"
    assert page.evaluate(legend) == "latest"
    page.mouse.move(over["x"] + over["width"] * 0.5, over["y"] + over["height"] * 0.5)
    page.wait_for_function(f"() => ({legend})() !== 'latest'")  # hovering reads the values under the cursor
    page.mouse.move(over["x"] + over["width"] * 0.3, over["y"] + 20)
    page.mouse.down()
    page.mouse.move(over["x"] + over["width"] * 0.6, over["y"] + 20, steps=5)
    page.mouse.up()  # drag-zoom on x: every chart shows the same epochs
    zoomed = page.evaluate("() => Object.values(charts).map(c => [c.scales.x.min, c.scales.x.max])")
    assert zoomed[0][1] - zoomed[0][0] < 1.5 and all(z == zoomed[0] for z in zoomed)
    page.mouse.dblclick(over["x"] + over["width"] * 0.5, over["y"] + 20)  # double-click: back to every epoch
    page.wait_for_function("() => Object.values(charts).every(c => c.scales.x.max - c.scales.x.min > 2.5)")
    before = page.evaluate("() => charts.loss.data[2].slice()")
    page.focus("#smoothing")
    for _ in range(30):
        page.keyboard.press("ArrowLeft")  # less smoothing: the smoothed train series moves, the raw one stays
    assert page.inner_text("#smoothing-value") == "0.30"
    after = page.evaluate("() => [charts.loss.data[1], charts.loss.data[2]]")
    assert after[1] != before and after[0] == page.evaluate("() => charts.loss.data[1]")
    page.wait_for_selector(".per-class .bar", timeout=60_000)
    assert page.inner_text(".per-class p").startswith("bars start at ")  # the scale shows the differences
    assert page.locator(".per-class .value").first.inner_text().endswith("%")
    desk.clean()


def test_phone_layout_fits_390_pixels(lab, browser, shots):
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True)
    watched = Watched(context.new_page())
    page = watched.page
    try:
        page.goto(lab["url"] + "/")
        page.wait_for_selector("tr.run-row")
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
        page.goto(lab["url"] + "/run?id=0:done")
        page.wait_for_selector("#confusion td.cell", timeout=60_000)
        page.wait_for_selector("#curve-loss canvas")
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
        width = page.evaluate("() => document.querySelector('#curve-loss .uplot').getBoundingClientRect().right")
        assert width <= 390
        shots(page, "serve-run-phone", full_page=False)
        watched.clean()
    finally:
        context.close()


def _serious(page) -> list[str]:
    page.add_script_tag(path=str(AXE))
    violations = page.evaluate(
        "async () => (await axe.run()).violations.map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.length,"
        " where: v.nodes.slice(0, 3).map(n => n.target.join(' '))}))"
    )
    return [v for v in violations if v["impact"] in ("serious", "critical")]


def test_axe_finds_nothing_serious(lab, browser, shots):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)  # axe is injected
    page = context.new_page()
    try:
        page.goto(lab["url"] + "/")
        page.wait_for_selector("tr.run-row")
        for run in ("cnn-tiny", "done"):
            page.locator(f"tr.run-row[data-id='0:{run}'] input[type=checkbox]").check()
        page.click("#compare")
        page.wait_for_function(
            "() => document.querySelector('#overlay-acc') && +document.querySelector('#overlay-acc').dataset.points > 0"
        )
        assert _serious(page) == []
        shots(page, "serve-runs")
        page.goto(lab["url"] + "/run?id=0:done")
        page.wait_for_selector("#confusion td.cell", timeout=60_000)
        page.click("#curve-numbers summary")
        assert _serious(page) == []
    finally:
        context.close()
