"""`cnnlab serve` in a real browser: Playwright drives Debian's chromium (never a downloaded one).

Skipped when chromium or Playwright is missing, except under CI=true, where that is a failure.
Screenshots of every page go to a temporary folder (and to $CNNLAB_SCREENSHOT_DIR when set).
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory, chromium_path, serving):
    """The lab over a root with one trained run, served by uvicorn in a thread on a free port."""
    from cnnlab.training import TrainConfig, train
    from cnnlab.web.app import create_app

    root = tmp_path_factory.mktemp("browser") / "runs"
    # The CLI's default (fast) recipe, so the screenshots show a model that learned something.
    train(
        TrainConfig(
            model="convnet",
            dataset="mnist-sample",
            recipe="fast",
            epochs=3,
            progress=False,
            out=str(root / "convnet-mnist"),
        )
    )
    with serving(create_app([root])) as url:
        yield {"url": url, "root": root}


@pytest.fixture(scope="module")
def page(browser):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.errors = errors
    yield page
    page.close()


def test_runs_page_lists_and_links(page, server, shots):
    page.goto(server["url"] + "/")
    page.wait_for_selector("tr.run-row")
    assert page.locator("tr.run-row").count() == 1
    assert "complete" in page.locator("tr.run-row").inner_text()
    page.locator("tr.run-row input[type=checkbox]").check()
    page.click("#compare")
    # Functions, not expression strings: Playwright polls a string with eval(), which the lab's CSP refuses.
    page.wait_for_function(
        "() => document.querySelector('#overlay-acc') && +document.querySelector('#overlay-acc').dataset.points > 0"
    )
    shots(page, "runs")
    page.click("tr.run-row a")
    page.wait_for_url("**/run?id=*")
    assert not page.errors


def test_run_page_confusion_cell_shows_images(page, server, shots):
    page.goto(server["url"] + "/run?id=0:convnet-mnist")
    page.wait_for_selector("#confusion td.cell", timeout=60_000)
    assert int(page.get_attribute("#curve-acc", "data-points")) >= 2
    counts = page.eval_on_selector_all("#confusion td.cell", "cells => cells.map(c => +c.textContent)")
    page.locator("#confusion td.cell").nth(counts.index(max(counts))).click()
    page.wait_for_selector("#cell-images img")
    assert page.locator("#cell-images img").count() > 0
    shots(page, "run")
    assert not page.errors


def test_playground_stroke_shows_bars_and_feature_maps(page, server, shots):
    page.goto(server["url"] + "/playground?id=0:convnet-mnist")
    canvas = page.locator("#draw-canvas")
    canvas.wait_for()
    page.wait_for_selector("#gallery img")
    box = canvas.bounding_box()
    # A "7" with real mouse events: pointerdown, moves, pointerup.
    page.mouse.move(box["x"] + 70, box["y"] + 60)
    page.mouse.down()
    page.mouse.move(box["x"] + 210, box["y"] + 60, steps=8)
    page.mouse.move(box["x"] + 120, box["y"] + 240, steps=12)
    page.mouse.up()
    page.wait_for_selector("#prob-bars .bar")
    page.wait_for_selector("#features .feature-row")
    assert page.locator("#prob-bars .bar").count() == 5
    assert page.locator("#features .feature-row").count() == 2  # convnet's two conv layers
    page.wait_for_selector("#gradcam-overlay")
    shots(page, "playground")
    page.goto(server["url"] + "/filters?id=0:convnet-mnist")
    page.wait_for_selector("#filter-grid canvas")
    shots(page, "filters")
    assert not page.errors


def test_live_curve_gains_a_point_without_reload(page, server, shots, tmp_path):
    live = server["root"] / "live"
    # batch size 1 makes each epoch last about a second here, long enough to watch.
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cnnlab",
            "train",
            "convnet",
            "--dataset",
            "mnist-sample",
            "--epochs",
            "5",
            "--limit-train",
            "1024",
            "--batch-size",
            "1",
            "--out",
            str(live),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 60
        while not (live / "config.json").is_file():
            assert process.poll() is None and time.time() < deadline, "training did not start"
            time.sleep(0.05)
        page.goto(server["url"] + "/run?id=0:live")
        page.wait_for_function("() => document.body.dataset.points !== undefined")
        page.evaluate("window.__same_page = true")
        first = int(page.evaluate("document.body.dataset.points"))
        assert first < 10, "the run ended before the page opened; nothing left to watch"
        page.wait_for_function("first => +document.body.dataset.points > first", arg=first, timeout=60_000)
        assert page.evaluate("window.__same_page") is True  # updated in place, not reloaded
        shots(page, "live")
    finally:
        if process.poll() is None:
            process.terminate()  # seen what we came for; the trainer checkpoints and exits on SIGTERM
            process.wait(timeout=60)
    assert not page.errors


def test_a_study_has_its_page_with_figures_and_trial_links(page, server, shots):
    """A real `cnnlab tune` study under the root: linked from the runs page; its page shows the search's figures
    (best over time, importances, parallel coordinates), and its trials table opens each trial's run page."""
    pytest.importorskip("optuna")
    from cnnlab.experiments.tune import run_tune

    run_tune(
        "mlp-tiny",
        space=["lr=log:1e-3..0.3", "batch_size=32,64"],
        trials=4,
        out=server["root"] / "study",
        dataset="mnist-sample",
        epochs=1,
        limit_train=400,
        limit_test=200,
        progress=False,
        log=lambda line: None,
    )
    page.goto(server["url"] + "/")
    page.wait_for_selector("#experiments a")
    page.click("#experiments a")
    page.wait_for_selector("#trials tbody tr")
    assert page.locator("#trials tbody tr").count() == 4
    page.wait_for_function(
        "() => [...document.querySelectorAll('#figures img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    shown = {
        page.locator("#figures figcaption").nth(i).inner_text()
        for i in range(page.locator("#figures figcaption").count())
    }
    assert {"search.png", "parallel.png"} <= shown
    shots(page, "study")
    page.locator("#trials tbody a").first.click()
    page.wait_for_selector("#facts dd")
    assert "/run?id=" in page.url and "trial-000" in page.url
    assert page.errors == []
