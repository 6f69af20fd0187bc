"""`cnnlab serve`'s HTTP API through FastAPI's TestClient: listing, run pages, predict, safety, limits, concurrency."""

from __future__ import annotations

import fcntl
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

import cnnlab  # noqa: E402
from cnnlab.cli.main import main  # noqa: E402
from cnnlab.runs.predict import predict_files  # noqa: E402
from cnnlab.training import TrainConfig, train  # noqa: E402

RUN_FILES = ("config.json", "summary.json", "metrics.csv")
UPLOAD = {"Content-Type": "application/octet-stream"}  # what the playground sends


def _client(roots):
    """A test client that names the lab by a host it answers to (TestClient's own "testserver" is refused)."""
    return TestClient(cnnlab.create_app(roots), base_url="http://127.0.0.1")


def _copy_records(src, dst, files=RUN_FILES):
    dst.mkdir(parents=True)
    for name in files:
        shutil.copy(src / name, dst / name)
    return dst


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A root with one real run, an experiment's nested sub-run (records only), a corrupt run, and a secret outside."""
    base = tmp_path_factory.mktemp("serve")
    root = base / "runs"
    run = train(
        TrainConfig(
            model="convnet",
            dataset="mnist-sample",
            epochs=1,
            limit_train=512,
            progress=False,
            out=str(root / "convnet"),
        )
    ).run_dir
    _copy_records(run, root / "experiment-x" / "runs" / "seed0")
    (root / "broken").mkdir()
    (root / "broken" / "config.json").write_text('{"config": {"model": "conv')  # half-written
    (base / "secret.txt").write_text("not for the web")
    (root / "convnet" / "leak.txt").symlink_to(base / "secret.txt")
    client = _client([root])
    return {"root": root, "run": run, "client": client, "base": base}


def _runs(client):
    response = client.get("/api/runs")
    assert response.status_code == 200
    return {r["name"]: r for r in response.json()["runs"]}


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _test_images(n=4):
    with np.load(os.path.join(os.path.dirname(cnnlab.__file__), "data", "samples", "mnist-sample.npz")) as data:
        key = next(k for k in data.files if "test" in k and "image" in k)
        return data[key][:n].reshape(n, 28, 28)


def test_lists_every_run_with_its_status(lab):
    runs = _runs(lab["client"])
    assert set(runs) == {"convnet", "experiment-x/runs/seed0", "broken"}
    real = runs["convnet"]
    assert real["status"] == "complete" and real["model"] == "convnet" and real["dataset"] == "mnist-sample"
    assert real["epochs"] == 1 and 0 < real["final_test_acc"] <= 1 and real["params"] > 0 and real["seconds"] > 0
    assert runs["experiment-x/runs/seed0"]["status"] == "complete"  # found recursively
    assert runs["broken"]["status"].startswith("unreadable: config.json is not valid JSON")


def test_status_from_lock_summary_and_checkpoints(lab, tmp_path):
    root = tmp_path / "root"
    run = _copy_records(lab["run"], root / "r", ("config.json", "metrics.csv"))
    client = _client([root])
    assert _runs(client)["r"]["status"] == "failed"
    (run / "checkpoints").mkdir()
    shutil.copy(lab["run"] / "checkpoints" / "last.pt", run / "checkpoints" / "last.pt")
    assert _runs(client)["r"]["status"] == "stopped"
    with open(run / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # what a training process holds for its whole life
        assert _runs(client)["r"]["status"] == "running"
    assert _runs(client)["r"]["status"] == "stopped"  # a stale .lock with nobody holding it
    shutil.copy(lab["run"] / "summary.json", run / "summary.json")
    assert _runs(client)["r"]["status"] == "complete"


def test_run_detail_curves_and_files(lab):
    client = lab["client"]
    detail = client.get("/api/run", params={"id": _runs(client)["convnet"]["id"]}).json()
    assert detail["config"]["model"] == "convnet" and detail["summary"]["status"] == "complete"
    assert (
        detail["curves"]["source"] == "steps.csv" and len(detail["curves"]["test"]) == 1
    )  # the trainer writes steps.csv
    links = {f["name"]: f["url"] for f in detail["files"]}
    assert "checkpoints/best.pt" in links and "leak.txt" not in links
    assert client.get(links["metrics.csv"]).text.startswith("epoch,step")
    assert client.get("/api/run", params={"id": "0:../secret.txt"}).status_code == 404
    assert client.get("/api/run", params={"id": "0:nowhere"}).status_code == 404


def test_curves_use_steps_csv_when_present(lab, tmp_path):
    run = _copy_records(lab["run"], tmp_path / "root" / "live")
    (run / "steps.csv").write_text(
        "epoch,step,loss,accuracy,lr,images_per_s,elapsed\n1,2,2.3,0.1,0.05,900,0.5\n"
        "1,4,2.1,0.2,0.05,900,1.0\n2,2,1.9,0.3,0.05,900,1.5\n2,"
    )  # last line half-written
    client = _client([tmp_path / "root"])
    curves = client.get("/api/curves", params={"id": "0:live"}).json()
    assert curves["source"] == "steps.csv" and [p["x"] for p in curves["train"]] == [0.5, 1.0, 1.5]


def _csv_rows(path):
    import csv

    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_steps_csv_rows_are_per_interval_means(lab):
    """Each steps.csv row averages the steps since the previous row (its `images`), not the epoch so far: weighted
    by their images, the rows of an epoch give back the epoch's train loss and accuracy of metrics.csv."""
    steps, epoch = _csv_rows(lab["run"] / "steps.csv"), _csv_rows(lab["run"] / "metrics.csv")[0]
    images = [int(r["images"]) for r in steps]
    assert len(steps) == 4 and sum(images) == 512  # --limit-train 512, batches of 128: a row a step
    for column, total in (("loss", "train_loss"), ("accuracy", "train_acc")):
        mean = sum(float(r[column]) * n for r, n in zip(steps, images)) / sum(images)
        assert mean == pytest.approx(float(epoch[total]), rel=1e-6)
    assert float(steps[-1]["loss"]) != pytest.approx(float(epoch["train_loss"]), rel=1e-3)  # not the running mean


def test_curves_convert_running_means_of_older_runs(lab, tmp_path):
    """A run folder of the previous version (steps.csv rows: the running mean since the epoch's start, no `images`
    column) plots per interval too; so do its rows that a resume with this version left beside new ones."""
    rows = _csv_rows(lab["run"] / "steps.csv")
    old_header = "epoch,step,loss,accuracy,lr,images_per_s,elapsed"
    running, loss_sum, correct, seen, lines = [], 0.0, 0.0, 0, []
    for r in rows:
        n = int(r["images"])
        loss_sum, correct, seen = loss_sum + float(r["loss"]) * n, correct + float(r["accuracy"]) * n, seen + n
        running.append((loss_sum / seen, correct / seen))
        lines.append(f"1,{r['step']},{loss_sum / seen:.8g},{correct / seen:.8g},{r['lr']},1000,{r['elapsed']},")
    lines += [f"2,{r['step']},{r['loss']},{r['accuracy']},{r['lr']},1000,{r['elapsed']},{r['images']}" for r in rows]
    run = _copy_records(lab["run"], tmp_path / "root" / "old")
    (run / "steps.csv").write_text(old_header + ",images\n" + "\n".join(lines) + "\n")
    client = _client([tmp_path / "root"])
    curves = client.get("/api/curves", params={"id": "0:old"}).json()
    assert curves["train_per"] == "interval" and len(curves["train"]) == 8
    expected = [float(r["loss"]) for r in rows] * 2
    assert [p["loss"] for p in curves["train"]] == pytest.approx(expected, rel=1e-5)
    assert [p["acc"] for p in curves["train"]] == pytest.approx([float(r["accuracy"]) for r in rows] * 2, rel=1e-5)
    # the file exactly as the previous version wrote it: no `images` column at all
    (run / "steps.csv").write_text(old_header + "\n" + "\n".join(line.rsplit(",", 1)[0] for line in lines[:4]) + "\n")
    curves = client.get("/api/curves", params={"id": "0:old"}).json()
    assert [p["loss"] for p in curves["train"]] == pytest.approx(expected[:4], rel=1e-5)
    assert curves["epochs"][0]["train_loss"] == pytest.approx(running[-1][0], rel=1e-6)


def test_predict_matches_cnnlab_predict(lab, tmp_path):
    image = _test_images(1)[0]
    path = tmp_path / "digit.png"
    path.write_bytes(_png(image))
    expected = predict_files(lab["run"], [path], k=10)[0]["top"]
    response = lab["client"].post(
        "/api/predict",
        params={"id": "0:convnet", "center": "0", "invert": "0"},
        content=path.read_bytes(),
        headers=UPLOAD,
    )
    assert response.status_code == 200, response.text
    got = response.json()
    assert got["top"][0]["index"] == expected[0]["index"]
    for item in expected:
        assert got["probabilities"][item["index"]] == pytest.approx(item["probability"], abs=1e-5)


def test_feature_maps_follow_the_summary(lab):
    from cnnlab.runs.load import load_run

    trained = load_run(lab["run"])
    summary = cnnlab.summarize(trained.model, trained.input_size, trained.spec.channels)
    convs = [(layer.path, list(layer.output_shape)) for layer in summary.layers if layer.type == "Conv2d"]
    drawing = np.full((280, 280), 255, np.uint8)
    drawing[40:240, 130:150] = 0  # a "1", dark on light, off-centre
    got = lab["client"].post("/api/predict", params={"id": "0:convnet"}, content=_png(drawing), headers=UPLOAD).json()
    assert [(f["layer"], f["shape"]) for f in got["features"]] == convs
    assert got["preprocessing"] == {"inverted": True, "fit": "mnist-centering"}
    assert got["gradcam"]["shape"] == [28, 28] and abs(sum(got["probabilities"]) - 1) < 1e-5


def test_mnist_centering_puts_mass_in_the_middle():
    from cnnlab.web.playground import center_like_mnist

    image = np.zeros((200, 300), np.uint8)
    image[10:60, 250:270] = 255  # a small bar in a corner
    out = center_like_mnist(image).astype(float)
    rows, cols = np.nonzero(out > 24)
    assert out.shape == (28, 28) and rows.max() - rows.min() + 1 <= 21
    cy, cx = (out.sum(1) @ np.arange(28)) / out.sum(), (out.sum(0) @ np.arange(28)) / out.sum()
    assert abs(cy - 13.5) < 1 and abs(cx - 13.5) < 1


def test_analysis_confusion_cell_and_filters(lab):
    client = lab["client"]
    analysis = client.get("/api/analysis", params={"id": "0:convnet"}).json()
    confusion = np.array(analysis["confusion"])
    assert confusion.sum() == analysis["count"] == 500 and len(analysis["per_class_accuracy"]) == 10
    t, p = np.unravel_index(np.argmax(confusion), confusion.shape)
    cell = client.get("/api/cell", params={"id": "0:convnet", "true": int(t), "predicted": int(p)}).json()
    assert cell["count"] == confusion[t, p] and cell["images"][0]["src"].startswith("data:image/png;base64,")
    kernels = client.get("/api/filters", params={"id": "0:convnet"}).json()
    assert kernels["layer"] == kernels["layers"][0] and kernels["tiles"]["shape"][0] == 8
    assert client.get("/api/filters", params={"id": "0:convnet", "layer": "head"}).status_code == 422


@pytest.mark.parametrize(
    "path",
    [
        "../secret.txt",
        "%2e%2e/secret.txt",
        "convnet/%2e%2e/%2e%2e/secret.txt",
        "%2fetc%2fpasswd",
        "convnet/leak.txt",
        "convnet/nothing",
        "convnet",
    ],
)
def test_files_stay_inside_the_roots(lab, path):
    assert lab["client"].get(f"/files/0/{path}").status_code == 404
    assert lab["client"].get("/files/1/convnet/config.json").status_code == 404


def test_files_are_served_read_only(lab):
    client = lab["client"]
    assert client.get("/files/0/convnet/summary.json").json()["status"] == "complete"
    for method in (client.put, client.delete, client.post):
        assert method("/files/0/convnet/summary.json").status_code == 405
    assert (lab["root"] / "convnet" / "summary.json").is_file()


def test_upload_limits(lab):
    client = lab["client"]
    params = {"id": "0:convnet"}
    big = client.post("/api/predict", params=params, content=b"\0" * (5 * 2**20 + 1), headers=UPLOAD)
    assert big.status_code == 413 and "limit is 5 MB" in big.json()["detail"]
    wide = client.post("/api/predict", params=params, content=_png(np.zeros((8, 5000), np.uint8)), headers=UPLOAD)
    assert wide.status_code == 400 and "4096x4096" in wide.json()["detail"]
    text = client.post("/api/predict", params=params, content=b"hello, not a picture", headers=UPLOAD)
    assert text.status_code == 400 and "not an image" in text.json()["detail"]
    assert (
        client.post("/api/predict", params=params, content=_png(_test_images(1)[0]), headers=UPLOAD).status_code == 200
    )


def test_twenty_concurrent_predicts(lab):
    client = lab["client"]
    images = [_png(image) for image in _test_images(4)]
    params = {"id": "0:convnet", "center": "0", "invert": "0"}
    expected = [
        client.post("/api/predict", params=params, content=data, headers=UPLOAD).json()["probabilities"]
        for data in images
    ]
    with ThreadPoolExecutor(20) as pool:
        responses = list(
            pool.map(
                lambda i: client.post("/api/predict", params=params, content=images[i % 4], headers=UPLOAD), range(20)
            )
        )
    for i, response in enumerate(responses):
        assert response.status_code == 200
        assert response.json()["probabilities"] == pytest.approx(expected[i % 4], abs=1e-6)


@pytest.mark.slow
def test_listing_500_runs_under_a_second(lab, tmp_path):
    root = tmp_path / "many"
    for i in range(500):
        _copy_records(lab["run"], root / f"run-{i:03d}")
    client = _client([root])
    start = time.perf_counter()
    first = client.get("/api/runs").json()["runs"]
    cold = time.perf_counter() - start
    start = time.perf_counter()
    client.get("/api/runs")
    warm = time.perf_counter() - start
    assert len(first) == 500 and all(r["status"] == "complete" for r in first)
    assert warm < 1.0 and cold < 3.0, (cold, warm)  # cold reads 1,500 files on a shared CI disk


def test_without_the_extra_one_line_and_exit_2(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "fastapi", None)  # import fastapi -> ImportError
    assert main(["serve", "nowhere"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and 'pip install "cnnlab[serve]"' in err and "Traceback" not in err


def test_public_names_and_a_light_cli_module():
    from cnnlab import create_app, serve
    from cnnlab import train as train_function

    assert callable(serve) and callable(create_app) and callable(train_function)
    code = (
        "import sys, cnnlab.cli.serve; print(any(m in sys.modules for m in ('fastapi', 'uvicorn', 'cnnlab.web.app')))"
    )
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        == "False"
    )


@pytest.mark.slow
def test_cli_serves_until_ctrl_c(lab):
    process = subprocess.Popen(
        [sys.executable, "-m", "cnnlab", "serve", str(lab["root"]), "--host", "0.0.0.0", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = [process.stdout.readline(), process.stdout.readline()]
        assert "reachable from the network" in lines[0] and "token" in lines[0]
        url = urllib.parse.urlsplit(lines[1].split(" on ")[1].split()[0])
        token = urllib.parse.parse_qs(url.query)["token"][0]  # beyond loopback the lab always asks for one
        with urllib.request.urlopen(f"http://127.0.0.1:{url.port}/api/runs?token={token}", timeout=30) as response:
            assert len(json.load(response)["runs"]) == 3
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
        assert "Traceback" not in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()


def test_a_study_folder_has_its_page(lab, tmp_path):
    """`cnnlab tune`'s folder: listed under the runs, its trials table linked to the trials' run pages, and only its
    own image files offered as figures (no path out of it, no link, no other kind of file)."""
    root = tmp_path / "served"
    study = root / "study"
    _copy_records(lab["run"], study / "runs" / "trial-0000")
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG")
    (study / "search.png").write_bytes(buffer.getvalue())
    (tmp_path / "outside.png").write_bytes(buffer.getvalue())
    (study / "linked.png").symlink_to(tmp_path / "outside.png")
    (study / "notes.html").write_text("<script>alert(1)</script>")
    info = {
        "kind": "tune",
        "title": "Search over convnet on mnist-sample",
        "status": "complete",
        "runs": ["runs/trial-0000", "../elsewhere"],
        "figures": ["search.png", "../outside.png", "linked.png", "notes.html", "/etc/passwd"],
        "summary_table": {
            "caption": "1 trial",
            "headers": ["trial", "run", "val acc"],
            "rows": [[0, "trial-0000", "91.00%"]],
        },
        "best": {"trial": 0, "run": "runs/trial-0000", "val_acc": 0.91, "params": {"lr": 0.05}, "test_acc": 0.9},
    }
    (study / "experiment.json").write_text(json.dumps(info))
    client = _client([root])
    listed = client.get("/api/experiments").json()["experiments"]
    assert [(x["id"], x["kind"], x["runs"], x["best_val_acc"]) for x in listed] == [("0:study", "tune", 2, 0.91)]
    page = client.get("/api/experiment", params={"id": "0:study"}).json()
    assert page["rows"] == [[0, "trial-0000", "91.00%"]] and page["headers"] == ["trial", "run", "val acc"]
    assert page["run_ids"] == {"trial-0000": "0:study/runs/trial-0000"}
    assert client.get("/api/run", params={"id": page["run_ids"]["trial-0000"]}).status_code == 200
    assert [f["name"] for f in page["figures"]] == ["search.png"]
    assert client.get(page["figures"][0]["url"]).content == buffer.getvalue()
    assert client.get("/api/experiment", params={"id": "0:nothing"}).status_code == 404
    (study / "experiment.json").write_text('{"kind": "tune", "runs": [')  # half-written: a line, not a 500
    listed = client.get("/api/experiments").json()["experiments"]
    assert listed[0]["error"] and "experiment.json" in listed[0]["error"]
    assert client.get("/experiment", params={"id": "0:study"}).status_code == 200
