"""The playground: /api/explain and the attribution map through the API, then in a real browser: explain a
feature-map value, Clear, keyboard use, a phone, axe-core.

The browser tests (marked slow, as test_serve_browser's) drive Debian's chromium with Playwright (never a
downloaded browser); skipped when either is missing, except under CI=true, where that is a failure. Screenshots
go to a temporary folder and to $CNNLAB_SCREENSHOT_DIR when set (`CNNLAB_SCREENSHOT_DIR=docs` refreshes
docs/serve-playground.png, serve-explain.png and serve-playground-phone.png).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

AXE = Path(__file__).parent / "vendor" / "axe.min.js"
RUN = "0:convnet-mnist"


# ---- the API (no browser) ------------------------------------------------------------------------------------

UPLOAD = {"Content-Type": "application/octet-stream"}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A TestClient over three tiny runs: convnet, resnet-mini (residual blocks) and mlp-tiny (no conv layers)."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    import cnnlab
    from cnnlab.training import TrainConfig, train

    root = tmp_path_factory.mktemp("explain-api") / "runs"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("cnnlab.figures.run.write_run_figures", lambda *args, **kwargs: [], raising=False)
        for model in ("convnet", "resnet-mini", "mlp-tiny"):
            train(
                TrainConfig(
                    model=model,
                    dataset="mnist-sample",
                    epochs=1,
                    limit_train=256,
                    limit_test=64,
                    progress=False,
                    out=str(root / model),
                )
            )
    return TestClient(cnnlab.create_app([root]), base_url="http://127.0.0.1")


def _png_of_a_one() -> bytes:
    import io

    from PIL import Image

    drawing = np.full((280, 280), 255, np.uint8)
    drawing[40:240, 130:150] = 0  # a "1", dark on light
    buffer = io.BytesIO()
    Image.fromarray(drawing).save(buffer, format="PNG")
    return buffer.getvalue()


def test_explain_api_answers_for_an_upload_and_a_test_image(lab):
    one = _png_of_a_one()
    query = {"id": "0:convnet", "layer": "features.4", "channel": 2, "y": 7, "x": 6}  # conv, BN, pool, ReLU, conv
    answer = lab.post("/api/explain", params=query, content=one, headers=UPLOAD)
    assert answer.status_code == 200, answer.text
    e = answer.json()
    assert e["type"] == "conv" and e["layer"] == "features.4" and (e["channel"], e["y"], e["x"]) == (2, 7, 6)
    assert e["output"] == pytest.approx(e["actual"], rel=1e-4, abs=1e-6)
    assert e["output"] == pytest.approx(e["sum"] + e["bias"])
    # The same picture as /api/predict saw it: the recomputed pre-activation is that layer's map there.
    predicted = lab.post("/api/predict", params={"id": "0:convnet"}, content=one, headers=UPLOAD).json()
    row = next(f for f in predicted["features"] if f["layer"] == "features.4")
    assert row["maps"]["min"] <= e["actual"] <= row["maps"]["max"]
    by_index = lab.post("/api/explain", params={**query, "index": 5}, headers=UPLOAD).json()
    assert by_index["output"] == pytest.approx(by_index["actual"], rel=1e-4, abs=1e-6)
    assert len(answer.content) < 64_000


def test_explain_api_residual_block(lab):
    predicted = lab.post("/api/predict", params={"id": "0:resnet-mini"}, content=_png_of_a_one(), headers=UPLOAD)
    blocks = predicted.json()["blocks"]
    assert [(b["layer"], b["after"]) for b in blocks] == [
        ("features.3", "features.3.conv2"),
        ("features.7", "features.7.conv2"),
    ]
    query = {"id": "0:resnet-mini", "layer": "features.7", "channel": 4, "y": 1, "x": 2, "index": 0}
    e = lab.post("/api/explain", params=query, headers=UPLOAD).json()
    assert e["type"] == "residual" and e["sum"] == pytest.approx(e["branch"]["value"] + e["shortcut"]["value"])
    assert e["output"] == pytest.approx(max(e["sum"], 0.0)) and e["output"] == pytest.approx(e["actual"], abs=1e-5)


def test_explain_api_is_bounded_like_predict(lab):
    query = {"id": "0:convnet", "layer": "features.0", "channel": 0, "y": 0, "x": 0}
    big = lab.post("/api/explain", params=query, content=b"\0" * (5 * 2**20 + 1), headers=UPLOAD)
    assert big.status_code == 413 and "limit is 5 MB" in big.json()["detail"]
    form = lab.post("/api/explain", params=query, content=b"a=1", headers={"Content-Type": "text/plain"})
    assert form.status_code == 415
    assert lab.post("/api/explain", params={**query, "index": 10**6}, headers=UPLOAD).status_code == 400
    assert lab.post("/api/explain", params={**query, "center": "x"}, headers=UPLOAD).status_code == 400
    linear = lab.post("/api/explain", params={**query, "layer": "head", "index": 0}, headers=UPLOAD)
    assert linear.status_code == 422 and "does not output a feature map" in linear.json()["detail"]
    outside = lab.post("/api/explain", params={**query, "channel": 99, "index": 0}, headers=UPLOAD)
    assert outside.status_code == 422 and "channel 0..7" in outside.json()["detail"]
    assert lab.post("/api/explain", params={**query, "layer": "x" * 201, "index": 0}, headers=UPLOAD).status_code == 422


def test_a_model_without_conv_layers_says_so(lab):
    got = lab.post("/api/predict", params={"id": "0:mlp-tiny"}, content=_png_of_a_one(), headers=UPLOAD).json()
    assert got["features"] == [] and got["blocks"] == [] and got["conv_layers"] is False
    assert got["gradcam"] is None
    saliency = got["saliency"]
    assert saliency["method"] == "gradient-x-input" and saliency["signed"] and saliency["map"]["shape"] == [28, 28]
    assert "mlp-tiny has no conv layers" in saliency["note"] and "captum" not in saliency["note"]


# ---- in the browser ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory, chromium_path, serving):
    """The lab over one convnet run (trained for a few seconds), served by uvicorn in a thread."""
    from cnnlab.training import TrainConfig, train
    from cnnlab.web.app import create_app

    root = tmp_path_factory.mktemp("playground") / "runs"
    with pytest.MonkeyPatch.context() as patch:
        # The run's own figures are not under test here and take most of a small run's time.
        patch.setattr("cnnlab.figures.run.write_run_figures", lambda *args, **kwargs: [], raising=False)
        train(
            TrainConfig(
                model="convnet",
                dataset="mnist-sample",
                recipe="fast",
                epochs=2,
                progress=False,
                out=str(root / "convnet-mnist"),
            )
        )
    with serving(create_app([root])) as url:
        yield url


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.errors = errors
    yield page
    context.close()


def _draw_seven(page) -> None:
    box = page.locator("#draw-canvas").bounding_box()
    w, h = box["width"], box["height"]
    page.mouse.move(box["x"] + 0.25 * w, box["y"] + 0.2 * h)
    page.mouse.down()
    page.mouse.move(box["x"] + 0.75 * w, box["y"] + 0.2 * h, steps=8)
    page.mouse.move(box["x"] + 0.43 * w, box["y"] + 0.85 * h, steps=12)
    page.mouse.up()


def _open_playground(page, server: str) -> None:
    page.goto(f"{server}/playground?id={RUN}")
    page.wait_for_selector(".gallery-item")


def _number(text: str) -> float:
    return float(text.replace("−", "-"))


@pytest.mark.slow
def test_draw_predict_and_explain_a_feature_map_value(page, server, shots):
    _open_playground(page, server)
    _draw_seven(page)
    page.wait_for_selector("#prob-bars .bar")
    page.wait_for_selector("#features .feature-row canvas.tile")
    assert "Predicted" in page.inner_text("#announce")
    shots(page, "serve-playground")
    tile = page.locator('#features canvas.tile[data-layer="features.4"]').nth(3)
    with page.expect_request(lambda r: "/api/explain" in r.url) as asked:
        tile.click(position={"x": 22, "y": 22})
    request = asked.value
    page.wait_for_selector("#explain-output")
    shown = {
        key: float(page.get_attribute(f"#explain-{key}", "data-value"))
        for key in ("sum", "bias", "output", "activation")
    }
    texts = {key: _number(page.inner_text(f"#explain-{key}")) for key in shown}
    # The same question straight to the API: the query the page sent, the drawing still on the canvas as the body.
    answer = page.evaluate(
        """async (url) => {
            const blob = await new Promise((done) => document.getElementById("draw-canvas").toBlob(done));
            const response = await fetch(url, { method: "POST", body: blob,
                                                headers: { "Content-Type": "application/octet-stream" } });
            return await response.json();
        }""",
        request.url,
    )
    assert answer["layer"] == "features.4" and answer["type"] == "conv" and answer["channel"] == 3
    assert (answer["y"], answer["x"]) == (7, 7)  # just past the middle of a 14x14 map drawn 40 px wide
    for key, value in shown.items():
        assert value == pytest.approx(answer[key], rel=1e-9, abs=1e-12)
        assert texts[key] == pytest.approx(answer[key], rel=5e-3, abs=1e-3)  # shown to 4 significant digits
    assert answer["output"] == pytest.approx(answer["actual"], rel=1e-4, abs=1e-6)
    assert [step["kind"] for step in answer["after"]] == ["BatchNorm2d", "MaxPool2d", "ReLU"]  # the fast recipe has BN
    assert page.locator("#explain-body .channel-calc").count() == len(answer["channels"]) == 8
    page.locator("#explain-body").scroll_into_view_if_needed()
    shots(page, "serve-explain")
    page.keyboard.press("Escape")
    assert page.locator("#explain-panel").is_hidden()
    assert not page.errors


@pytest.mark.slow
def test_clear_resets_the_prediction_and_the_panels(page, server):
    _open_playground(page, server)
    _draw_seven(page)
    page.wait_for_selector("#features canvas.tile")
    page.locator("#features canvas.tile").first.click()
    page.wait_for_selector("#explain-output")
    page.click("#clear")
    assert "Predicted" not in page.inner_text("#announce")
    assert page.locator("#prob-bars .bar").count() == 0
    assert page.locator("#features .feature-row").count() == 0
    assert page.locator("#explain-panel").is_hidden() and page.locator("#model-input").is_hidden()
    assert page.inner_text("#gradcam") == ""
    assert not page.errors


@pytest.mark.slow
def test_keyboard_only_gallery_prediction_is_announced(page, server):
    _open_playground(page, server)
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.classList.contains('gallery-item')"):
            break
    else:
        pytest.fail("Tab never reached a gallery image")
    outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"  # visible focus
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelector('#announce').textContent.includes('Predicted')")
    assert page.get_attribute("#announce", "aria-live") == "polite"
    # On to a feature map, and Enter explains its strongest value.
    page.locator("#features canvas.tile").first.focus()
    page.keyboard.press("Enter")
    page.wait_for_selector("#explain-output")
    assert page.evaluate("() => document.activeElement.id") == "explain-title"
    assert not page.errors


@pytest.mark.slow
def test_phone_layout(browser, server, shots):
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, has_touch=True)
    page = context.new_page()
    try:
        page.goto(f"{server}/playground?id={RUN}")
        page.wait_for_selector(".gallery-item")
        assert page.get_attribute('meta[name="viewport"]', "content").startswith("width=device-width")
        assert page.locator("#draw-canvas").bounding_box()["width"] >= 300
        _draw_seven(page)
        page.wait_for_selector("#features canvas.tile")
        page.locator("#features canvas.tile").nth(1).tap()  # the explanation panel, with its number grids, too
        page.wait_for_selector("#explain-output")
        overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the page is {overflow} px wider than the phone"
        page.evaluate("() => window.scrollTo(0, 0)")
        shots(page, "serve-playground-phone", full_page=False)
    finally:
        context.close()


def _serious(page) -> list[str]:
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => await axe.run(document, { resultTypes: ['violations'] })")
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


@pytest.mark.slow
def test_axe_finds_no_serious_violations(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    page = context.new_page()
    try:
        page.goto(f"{server}/playground?id={RUN}")
        page.wait_for_selector(".gallery-item")
        page.locator(".gallery-item").first.click()
        page.wait_for_selector("#features canvas.tile")
        page.locator("#features canvas.tile").nth(2).press("Enter")
        page.wait_for_selector("#explain-output")
        assert _serious(page) == []
        page.goto(f"{server}/filters?id={RUN}")
        page.wait_for_selector("#filter-grid canvas")
        assert _serious(page) == []
    finally:
        context.close()
