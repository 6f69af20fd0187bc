"""The web lab's HTTP routes (FastAPI). Pages are static files; everything they show comes from /api/*.

Nothing here writes to a run folder: the routes read run files, load checkpoints (weights_only, in
cnnlab.runs.load) and answer. Runs are named by the ids the listing gives out, never by a path from
the request, and /files/ serves only regular files inside a root (see `safety`).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from cnnlab.web import internals as lab
from cnnlab.web.analysis import AnalysisCache, cell_images, filters, gallery
from cnnlab.web.models import ModelCache
from cnnlab.web.playground import MAX_UPLOAD_BYTES, InputError, analyse_input, prepare_pixels
from cnnlab.web.runs_index import RunEntry, RunsIndex, curves
from cnnlab.web.safety import safe_file

STATIC = Path(__file__).parent / "static"
PAGES = {"/": "index.html", "/run": "run.html", "/playground": "playground.html", "/filters": "filters.html"}
LINKED_DIRS = ("checkpoints", "export", "inspect")  # sub-folders whose files the run page links to


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity (a diverged loss): send null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


class LabJSON(JSONResponse):
    def render(self, content: Any) -> bytes:
        return super().render(_finite(content))


def _links(entry: RunEntry) -> list[dict[str, Any]]:
    """Files of the run the page links to, as /files/ URLs (read-only)."""
    root_index = entry.id.split(":", 1)[0]
    found = []
    candidates = [p for p in sorted(entry.path.iterdir()) if p.is_file() and not p.name.startswith(".")]
    for folder in LINKED_DIRS:
        if (entry.path / folder).is_dir():
            candidates += sorted(p for p in (entry.path / folder).iterdir() if p.is_file())
    for path in candidates:
        if path.is_symlink():
            continue  # what a symlink points at is not ours to serve
        rel = path.relative_to(entry.root).as_posix()
        found.append({"name": path.relative_to(entry.path).as_posix(), "url": f"/files/{root_index}/{rel}",
                      "bytes": path.stat().st_size})
    return found


def create_app(roots: list[str | Path] | tuple = ("runs",)) -> FastAPI:
    """The web lab over the run folders under `roots` (searched recursively for folders with config.json)."""
    app = FastAPI(title="cnnlab web lab", docs_url=None, redoc_url=None, openapi_url=None,
                  default_response_class=LabJSON)
    index = RunsIndex(list(roots))
    models, analyses = ModelCache(), AnalysisCache()
    app.state.index = index

    @app.exception_handler(lab.CnnlabError)
    async def cnnlab_error(request: Request, err: lab.CnnlabError):
        return LabJSON({"detail": str(err)}, status_code=422)

    @app.exception_handler(InputError)
    async def input_error(request: Request, err: InputError):
        return LabJSON({"detail": str(err)}, status_code=err.status)

    def entry_of(run_id: str) -> RunEntry:
        entry = index.get(run_id)
        if entry is None:
            raise HTTPException(404, f"no run {run_id!r} under the served folders")
        return entry

    def served_of(run_id: str):
        entry = entry_of(run_id)
        return entry, models.get(entry.path)

    for route, page in PAGES.items():
        def page_route(page: str = page):
            return FileResponse(STATIC / page, media_type="text/html")
        app.add_api_route(route, page_route, methods=["GET"], include_in_schema=False)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_api_route("/favicon.ico", lambda: Response(status_code=204), methods=["GET"], include_in_schema=False)

    @app.get("/api/runs")
    def runs():
        return index.listing()

    @app.get("/api/run")
    def run(id: str):
        entry = entry_of(id)
        return {**entry.row, "status": index.status(entry), "config": entry.config, "meta": entry.meta,
                "summary": entry.summary, "files": _links(entry), "curves": curves(entry)}

    @app.get("/api/curves")
    def run_curves(id: str):
        entry = entry_of(id)
        return {"id": id, "status": index.status(entry), **curves(entry)}

    @app.get("/api/analysis")
    def analysis(id: str):
        entry, served = served_of(id)
        return analyses.get(entry.path, served).summary

    @app.get("/api/cell")
    def cell(id: str, true: int = Query(..., ge=0), predicted: int = Query(..., ge=0)):
        entry, served = served_of(id)
        classes = served.trained.classes
        if true >= len(classes) or predicted >= len(classes):
            raise HTTPException(400, f"class index out of range: the run has {len(classes)} classes")
        return cell_images(analyses.get(entry.path, served), true, predicted, classes)

    @app.get("/api/gallery")
    def test_gallery(id: str):
        entry, served = served_of(id)
        return {"images": gallery(analyses.get(entry.path, served), served.trained.classes)}

    @app.get("/api/model")
    def model_info(id: str):
        entry, served = served_of(id)
        trained = served.trained
        return {"model": trained.config.model, "dataset": trained.config.dataset, "classes": trained.classes,
                "channels": trained.spec.channels, "input_size": trained.input_size,
                "stored_size": trained.spec.image_size, "conv_layers": [{"layer": p, "shape": list(s)}
                                                                         for p, s in served.conv_layers],
                "drawing": trained.spec.channels == 1 and not trained.spec.name.startswith("fashion"),
                "captum": lab.captum_available(), "preprocessing": trained.preprocessing()}

    @app.get("/api/filters")
    def kernels(id: str, layer: str | None = None):
        _, served = served_of(id)
        return filters(served, layer)

    @app.post("/api/predict")
    async def predict(request: Request, id: str, center: str = "auto", invert: str = "auto",
                      features: bool = True, cam: bool = True, index: int | None = Query(None, ge=0)):
        if center not in ("auto", "0", "1") or invert not in ("auto", "0", "1"):
            raise HTTPException(400, "center and invert take auto, 0 or 1")
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES:
            raise InputError(f"upload too large: the limit is {MAX_UPLOAD_BYTES // 2**20} MB", 413)
        body = bytearray()
        if index is None:
            async for chunk in request.stream():  # counted as it arrives: a lying or absent length is caught too
                body += chunk
                if len(body) > MAX_UPLOAD_BYTES:
                    raise InputError(f"upload too large: the limit is {MAX_UPLOAD_BYTES // 2**20} MB", 413)
        return await run_in_threadpool(_predict, id, bytes(body), center, invert, features, cam, index)

    def _predict(run_id, body, center, invert, features, cam, test_index):
        entry, served = served_of(run_id)
        if test_index is not None:
            results = analyses.get(entry.path, served)
            if test_index >= len(results.labels):
                raise HTTPException(400, f"index {test_index} is out of range: the test split has {len(results.labels)} images")
            pixels = results.images[test_index:test_index + 1]
            steps = {"inverted": False, "fit": "test image", "true": served.trained.classes[int(results.labels[test_index])]}
        else:
            pixels, steps = prepare_pixels(body, served.trained, center, invert)
        return {**analyse_input(served, pixels, features, cam), "preprocessing": steps}

    @app.get("/files/{root_index}/{path:path}")
    @app.get("/files/{root_index}", include_in_schema=False)  # what a client makes of /files/0/../x
    def files(root_index: str, path: str = ""):
        if not root_index.isdigit() or int(root_index) >= len(index.roots):
            raise HTTPException(404, "not found")
        target = safe_file(index.roots[int(root_index)], path)
        if target is None:
            raise HTTPException(404, "not found")
        return FileResponse(target, headers={"X-Content-Type-Options": "nosniff",
                                                     # a hostile HTML file in a run folder runs no script here
                                                     "Content-Security-Policy": "sandbox"})

    return app
