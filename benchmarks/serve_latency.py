"""Latency of the web lab (`cnnlab serve`): one playground round trip, and listing 500 run folders.

A real uvicorn server on a free port (in a thread) answers real HTTP requests from this process:
  - predict + feature maps of every conv layer for a 280x280 PNG drawing (what a stroke sends), convnet on
    mnist-sample (28-pixel input); with and without Grad-CAM;
  - /api/runs over 500 synthetic run folders (copies of one real run's config.json, summary.json and
    metrics.csv), cold (first listing: every folder read) and warm (cached by mtime).
Prints median and p90 and writes benchmarks/results/serve_latency.md.

    python benchmarks/serve_latency.py [--requests 50]
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import shutil
import statistics
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from PIL import Image, ImageDraw

RESULTS = Path(__file__).parent / "results" / "serve_latency.md"


def drawing_png() -> bytes:
    """A "7" drawn dark on light, as the playground canvas sends it."""
    image = Image.new("L", (280, 280), 255)
    draw = ImageDraw.Draw(image)
    draw.line([(70, 60), (210, 60), (120, 240)], fill=0, width=18, joint="curve")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def timed(url: str, data: bytes | None = None) -> float:
    # The playground's own content type: the lab refuses the form type urllib would send by default.
    headers = {"Content-Type": "application/octet-stream"} if data is not None else {}
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET", headers=headers)
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:
        response.read()
        assert response.status == 200
    return time.perf_counter() - start


def stats(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--runs", type=int, default=500)
    args = parser.parse_args()

    import torch
    import uvicorn

    from cnnlab.training import TrainConfig, train
    from cnnlab.web.app import create_app
    from cnnlab.web.server import _listen

    work = Path(tempfile.mkdtemp(prefix="serve-latency-"))
    try:
        root = work / "runs"
        run = train(
            TrainConfig(model="convnet", dataset="mnist-sample", epochs=1, progress=False, out=str(root / "convnet"))
        ).run_dir
        many = work / "many"
        for i in range(args.runs):
            (many / f"run-{i:03d}").mkdir(parents=True)
            for name in ("config.json", "summary.json", "metrics.csv"):
                shutil.copy(run / name, many / f"run-{i:03d}" / name)

        sock = _listen("127.0.0.1", 0)
        server = uvicorn.Server(uvicorn.Config(create_app([root, many]), log_level="warning", access_log=False))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"

        png = drawing_png()
        rows = []
        for label, query in [("predict + feature maps", "cam=0"), ("predict + feature maps + Grad-CAM", "cam=1")]:
            url = f"{base}/api/predict?id=0:convnet&{query}"
            for _ in range(5):  # warm-up: model load, first oneDNN kernels
                timed(url, png)
            samples = [timed(url, png) for _ in range(args.requests)]
            rows.append((label, args.requests, *stats(samples)))

        # Listing: a fresh app (no cache) for the cold figure, then the same app again.
        server.should_exit = True
        thread.join()
        sock.close()
        sock = _listen("127.0.0.1", 0)
        server = uvicorn.Server(uvicorn.Config(create_app([many]), log_level="warning", access_log=False))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        cold = timed(f"{base}/api/runs")
        warm = [timed(f"{base}/api/runs") for _ in range(10)]
        rows.append((f"list {args.runs} run folders, cold (first request)", 1, cold * 1000, cold * 1000))
        rows.append((f"list {args.runs} run folders, warm (cached by mtime)", 10, *stats(warm)))
        server.should_exit = True
        thread.join()
        sock.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    lines = [
        "# Web lab latency (`benchmarks/serve_latency.py`)",
        "",
        f"Real HTTP to uvicorn on 127.0.0.1, client in the same process. {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads. "
        "Predict: a 280x280 PNG drawing -> convnet (mnist-sample, 28x28), top-k, the input as the model sees it, "
        "the feature maps of both conv layers.",
        "",
        "| request | n | median ms | p90 ms |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {label} | {n} | {median:.1f} | {p90:.1f} |" for label, n, median, p90 in rows]
    text = "\n".join(lines) + "\n"
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
