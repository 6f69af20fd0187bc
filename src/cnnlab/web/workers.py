"""The lab's model work (loading, evaluating, decoding uploads, predicting) on a few threads of its own.

FastAPI runs plain routes in one shared pool of 40 threads. Were model work there, 50 uploads at once
would take every thread (and decode 50 pictures at once: gigabytes), and the runs listing and the
pages would wait behind them. Here at most THREADS pictures decode and models run at a time; up to
QUEUED more requests wait their turn, and beyond that the answer is 503 "busy, try again" at once,
before the upload is even read.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from concurrent.futures import ThreadPoolExecutor

from cnnlab.web.playground import InputError

THREADS = 2
QUEUED = 30  # enough for a page's own requests and a burst of strokes; each waiting upload holds <= 5 MB


class Workers:
    def __init__(self, threads: int = THREADS, queued: int = QUEUED):
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="cnnlab-model")
        self.limit = threads + queued
        self._taken = 0
        self._lock = threading.Lock()  # requests may come from more than one event loop (test clients)

    @contextlib.contextmanager
    def slot(self):
        """A place in the queue for one request, or InputError 503 when the queue is full."""
        with self._lock:
            if self._taken >= self.limit:
                raise InputError("busy, try again: the lab is working on other requests", 503)
            self._taken += 1
        try:
            yield
        finally:
            with self._lock:
                self._taken -= 1

    async def run(self, fn, *args, **kwargs):
        """fn(*args) on the lab's model threads (the caller holds a slot)."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, functools.partial(fn, *args, **kwargs))

    async def call(self, fn, *args, **kwargs):
        with self.slot():
            return await self.run(fn, *args, **kwargs)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
