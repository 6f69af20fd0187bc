"""The web lab's HTTP routes (FastAPI). Pages are static files; everything they show comes from /api/*.

Nothing here writes to a run folder: the routes read run files, load checkpoints (weights_only, in
cnnlab.runs.load) and answer. Runs are named by the ids the listing gives out, never by a path from
the request, and /files/ serves only regular files inside a root (see `safety`). Who may send requests
at all (Host, Origin, token) and the headers of every answer are `security`'s; model work runs on the
lab's own few threads (`workers`), so the listing and the pages stay quick while predictions queue.
"""

from __future__ import annotations

import contextlib
import math
import mimetypes
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles

from cnnlab.errors import CnnlabError
from cnnlab.extras import has_extra
from cnnlab.web.analysis import AnalysisCache, cell_images, filters, gallery
from cnnlab.web.models import ModelCache
from cnnlab.web.playground import (
    MAX_UPLOAD_BYTES,
    UPLOAD_TYPES,
    InputError,
    analyse_input,
    explain_input,
    prepare_pixels,
)
from cnnlab.web.runs_index import RunEntry, RunsIndex, curves
from cnnlab.web.safety import open_served, root_of, safe_file
from cnnlab.web.security import LOOPBACK_HOSTS, Guard, HostPolicy
from cnnlab.web.workers import Workers

STATIC = Path(__file__).parent / "static"
PAGES = {
    "/": "index.html",
    "/run": "run.html",
    "/playground": "playground.html",
    "/filters": "filters.html",
    "/experiment": "experiment.html",
}
LINKED_DIRS = ("checkpoints", "export", "inspect")  # sub-folders whose files the run page links to
CHUNK = 1 << 16


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
    """Files of the run the page links to, as /files/ URLs (read-only): no dotfiles, no links, nothing outside."""
    root_index = entry.id.split(":", 1)[0]
    found = []
    candidates = sorted(entry.path.iterdir())
    for folder in LINKED_DIRS:
        sub = entry.path / folder
        if sub.is_dir() and not sub.is_symlink():  # a linked folder could list another part of the disk
            candidates += sorted(sub.iterdir())
    for path in candidates:
        if path.name.startswith(".") or path.is_symlink() or not path.is_file():
            continue  # what a symlink points at is not ours to serve; dotfiles are plumbing
        rel = path.relative_to(entry.root).as_posix()
        found.append(
            {
                "name": path.relative_to(entry.path).as_posix(),
                "url": f"/files/{root_index}/{rel}",
                "bytes": path.stat().st_size,
            }
        )
    return found


def _file_response(root: Path, relative: str) -> Response:
    """A file of a root, streamed from a descriptor that was checked to be a regular file inside it."""
    target = safe_file(root, relative)
    fd = open_served(root, target) if target is not None else None
    if target is None or fd is None:
        raise HTTPException(404, "not found")
    size = os.fstat(fd).st_size

    def chunks():
        left = size  # the length announced: a file that grows meanwhile (a live steps.csv) is cut there
        with os.fdopen(fd, "rb") as f:
            while left > 0 and (chunk := f.read(min(CHUNK, left))):
                left -= len(chunk)
                yield chunk

    return StreamingResponse(
        chunks(),
        media_type=mimetypes.guess_type(target.name)[0] or "application/octet-stream",
        headers={
            "content-length": str(size),
            # a hostile HTML file in a run folder runs no script here
            "content-security-policy": "sandbox",
        },
    )


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def create_app(
    roots: list[str | Path] | tuple = ("runs",), *, allowed_hosts: Iterable[str] | None = None, token: str | None = None
) -> FastAPI:
    """The web lab over the run folders under `roots` (searched recursively for folders with config.json).

    `allowed_hosts`: the Host names it answers to (default: 127.0.0.1, localhost, ::1; "a.b.c.d/n" entries are
    IP networks); `token`: when given, every request must carry it (see `security`).
    """
    workers = Workers()

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        workers.close()

    app = FastAPI(
        title="cnnlab web lab",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        default_response_class=LabJSON,
        lifespan=lifespan,
    )
    if isinstance(allowed_hosts, str):
        allowed_hosts = [allowed_hosts]  # one name, not its letters
    app.add_middleware(
        Guard, hosts=HostPolicy.of(LOOPBACK_HOSTS if allowed_hosts is None else allowed_hosts), token=token
    )
    index = RunsIndex(list(roots))
    models, analyses = ModelCache(), AnalysisCache()
    app.state.index = index

    @app.exception_handler(CnnlabError)
    async def cnnlab_error(request: Request, err: CnnlabError):
        return LabJSON({"detail": _one_line(err)}, status_code=422)

    @app.exception_handler(InputError)
    async def input_error(request: Request, err: InputError):
        headers = {"retry-after": "1"} if err.status == 503 else None
        return LabJSON({"detail": str(err)}, status_code=err.status, headers=headers)

    def entry_of(run_id: str) -> RunEntry:
        entry = index.get(run_id)
        if entry is None:
            raise HTTPException(404, f"no run {run_id!r} under the served folders")
        if not entry.readable:  # nothing of it can be trusted, not even the config: one line, no 500
            raise HTTPException(422, f"run {run_id!r} is unreadable: {entry.error}")
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
        return {
            **entry.row,
            "status": index.status(entry),
            "config": entry.config,
            "meta": entry.meta,
            "summary": entry.summary,
            "files": _links(entry),
            "curves": curves(entry),
        }

    @app.get("/api/experiments")
    def experiments():
        return {"experiments": index.experiments()}

    @app.get("/api/experiment")
    def experiment(id: str):
        found = index.experiment(id)
        if found is None:
            raise HTTPException(404, f"no experiment {id!r:.80} under the served folders")
        return found

    @app.get("/api/curves")
    def run_curves(id: str):
        entry = entry_of(id)
        return {"id": id, "status": index.status(entry), **curves(entry)}

    # Everything that loads a model or runs one goes to the lab's own threads (see `workers`).

    def _analysis(run_id: str):
        entry, served = served_of(run_id)
        return analyses.get(entry.path, served).summary

    @app.get("/api/analysis")
    async def analysis(id: str):
        return await workers.call(_analysis, id)

    def _cell(run_id: str, true: int, predicted: int):
        entry, served = served_of(run_id)
        classes = served.trained.classes
        if true >= len(classes) or predicted >= len(classes):
            raise HTTPException(400, f"class index out of range: the run has {len(classes)} classes")
        return cell_images(analyses.get(entry.path, served), true, predicted, classes)

    @app.get("/api/cell")
    async def cell(id: str, true: int = Query(..., ge=0), predicted: int = Query(..., ge=0)):
        return await workers.call(_cell, id, true, predicted)

    def _gallery(run_id: str):
        entry, served = served_of(run_id)
        return {"images": gallery(analyses.get(entry.path, served), served.trained.classes)}

    @app.get("/api/gallery")
    async def test_gallery(id: str):
        return await workers.call(_gallery, id)

    def _model_info(run_id: str):
        _, served = served_of(run_id)
        trained = served.trained
        return {
            "model": trained.config.model,
            "dataset": trained.spec.name,  # your own data by its short name, not its path
            "classes": trained.classes,
            "channels": trained.spec.channels,
            "input_size": trained.input_size,
            "stored_size": trained.spec.image_size,
            "conv_layers": [{"layer": p, "shape": list(s)} for p, s in served.conv_layers],
            "drawing": trained.spec.channels == 1 and not trained.spec.name.startswith("fashion"),
            "captum": has_extra("inspect"),
            "preprocessing": trained.preprocessing(),
        }

    @app.get("/api/model")
    async def model_info(id: str):
        return await workers.call(_model_info, id)

    def _kernels(run_id: str, layer: str | None):
        _, served = served_of(run_id)
        return filters(served, layer)

    @app.get("/api/filters")
    async def kernels(id: str, layer: str | None = None):
        return await workers.call(_kernels, id, layer)

    def input_pixels(run_id, body, center, invert, test_index):
        """The run's model and the input /api/predict and /api/explain work on: a test image by its index, or the
        uploaded one, decoded and fit as the run's data (with the steps taken)."""
        entry, served = served_of(run_id)
        if test_index is None:
            return (served, *prepare_pixels(body, served.trained, center, invert))
        results = analyses.get(entry.path, served)
        if test_index >= len(results.labels):
            raise HTTPException(
                400, f"index {test_index} is out of range: the test split has {len(results.labels)} images"
            )
        steps = {
            "inverted": False,
            "fit": "test image",
            "true": served.trained.classes[int(results.labels[test_index])],
        }
        return served, results.images[test_index : test_index + 1], steps

    @app.post("/api/predict")
    async def predict(
        request: Request,
        id: str,
        center: str = "auto",
        invert: str = "auto",
        features: bool = True,
        cam: bool = True,
        index: int | None = Query(None, ge=0),
    ):
        _check_upload(request, center, invert)
        with workers.slot():  # taken before the body is read: a full queue costs nothing more
            body = await _read_upload(request) if index is None else b""
            return await workers.run(_predict, id, body, center, invert, features, cam, index)

    def _predict(run_id, body, center, invert, features, cam, test_index):
        served, pixels, steps = input_pixels(run_id, body, center, invert, test_index)
        return {**analyse_input(served, pixels, features, cam), "preprocessing": steps}

    @app.post("/api/explain")
    async def explain(
        request: Request,
        id: str,
        layer: str = Query(..., min_length=1, max_length=200),
        channel: int = Query(..., ge=0),
        y: int = Query(..., ge=0),
        x: int = Query(..., ge=0),
        center: str = "auto",
        invert: str = "auto",
        index: int | None = Query(None, ge=0),
    ):
        """How one value of a feature map came about (`cnnlab.inspect.explain`), for the image /api/predict got:
        the same body, query parameters, upload limits and queue as /api/predict."""
        _check_upload(request, center, invert)
        with workers.slot():  # taken before the body is read, as for predict
            body = await _read_upload(request) if index is None else b""
            return await workers.run(_explain, id, body, center, invert, index, layer, channel, y, x)

    def _explain(run_id, body, center, invert, test_index, layer, channel, y, x):
        served, pixels, _ = input_pixels(run_id, body, center, invert, test_index)
        return explain_input(served, pixels, layer, channel, y, x)

    @app.get("/files/{root_index}/{path:path}")
    @app.get("/files/{root_index}", include_in_schema=False)  # what a client makes of /files/0/../x
    def files(root_index: str, path: str = ""):
        root = root_of(index.roots, root_index)
        if root is None:
            raise HTTPException(404, "not found")
        return _file_response(root, path)

    return app


def _check_upload(request: Request, center: str, invert: str) -> None:
    """What /api/predict and /api/explain refuse before reading a body: bad flags, another kind of body (the page
    sends application/octet-stream; a form or text/plain POST is another site's doing), a declared size too large."""
    if center not in ("auto", "0", "1") or invert not in ("auto", "0", "1"):
        raise HTTPException(400, "center and invert take auto, 0 or 1")
    if _media_type(request) not in UPLOAD_TYPES:
        raise InputError(f"send the image as {', '.join(UPLOAD_TYPES)}", 415)
    declared = request.headers.get("content-length")
    if declared and declared.isdecimal() and int(declared) > MAX_UPLOAD_BYTES:
        raise InputError(f"upload too large: the limit is {MAX_UPLOAD_BYTES // 2**20} MB", 413)


async def _read_upload(request: Request) -> bytes:
    body = bytearray()
    async for chunk in request.stream():  # counted as it arrives: a lying or absent length is caught too
        body += chunk
        if len(body) > MAX_UPLOAD_BYTES:
            raise InputError(f"upload too large: the limit is {MAX_UPLOAD_BYTES // 2**20} MB", 413)
    return bytes(body)


def _one_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
