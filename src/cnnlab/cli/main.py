"""The `cnnlab` command: a thin layer over the Python API.

Each sub-command lives in its own module under `cnnlab.cli` and exposes
`register(subparsers)`, which adds its parser and sets `func` to a handler
`handler(args) -> int`.

Exit status: 0 done; 2 a bad request (a `CnnlabError`: wrong option, bad or
missing file, ...); 1 the environment (disk full, permission denied, read-only
file system) or a bug; 130 interrupted (Ctrl-C), 143 terminated (SIGTERM).
Every failure but a bug is one line on stderr; `--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import errno
import importlib
import os
import signal
import sys
import threading

from cnnlab import __version__
from cnnlab.errors import CnnlabError

# Sub-command modules, in the order `cnnlab --help` lists them.
COMMAND_MODULES = [
    "cnnlab.cli.train",
    "cnnlab.cli.evaluate",
    "cnnlab.cli.predict",
    "cnnlab.cli.export",
    "cnnlab.cli.recipes",
    "cnnlab.cli.datasets",
    "cnnlab.cli.models",
    "cnnlab.cli.inspect",
    "cnnlab.cli.experiment",
    "cnnlab.cli.compare",
    "cnnlab.cli.sweep",
    "cnnlab.cli.tune",
    "cnnlab.cli.report",
    "cnnlab.cli.serve",
]


class OneLineParser(argparse.ArgumentParser):
    """argparse, with its errors on one line like every other cnnlab error (not usage + error)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


# Commands that may answer without torch (run listings, leaderboards); the others load it before they start.
COMMANDS_WITHOUT_TORCH = {"compare", "serve"}


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="cnnlab",
        description="Train, inspect and compare classic CNNs on the MNIST family.",
    )
    parser.add_argument("--version", action="version", version=f"cnnlab {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


# OSErrors that say something about the machine, not about cnnlab or the request: exit 1, one line.
ENVIRONMENT_ERRORS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
}


def environment_error(err: OSError) -> str | None:
    """'<what>: <path>' for an OSError caused by the environment, or None for any other OSError."""
    what = ENVIRONMENT_ERRORS.get(err.errno) if err.errno is not None else None
    if what is None:
        return None
    paths = [str(p) for p in (err.filename, err.filename2) if p is not None]
    return ": ".join([what, *paths])


def os_error_line(err: OSError) -> tuple[str, int]:
    """Any OSError as one line with its reason and path(s), and the exit status: 1 for the environment (disk full,
    permission, read-only), 2 for a request that named a path that cannot work (too long, a loop, a folder)."""
    environment = environment_error(err)
    if environment is not None:
        return environment, 1
    reason = err.strerror or (os.strerror(err.errno) if err.errno else "") or str(err) or type(err).__name__
    paths = [os.fsdecode(p) for p in (err.filename, err.filename2) if p is not None]
    line = ": ".join([reason[:1].lower() + reason[1:], *paths])
    return line.replace("\n", " "), 2


def _silence_stdout() -> None:
    """After a closed pipe: point stdout at /dev/null so the flush at exit cannot fail again and print noise."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout already closed or not a real file
        pass


@contextlib.contextmanager
def _startup_interrupts():
    """Ctrl-C while the sub-commands' modules load is an interrupt, even when a library swallows it.

    Some libraries catch every exception while they import; a KeyboardInterrupt swallowed
    there leaves a half-initialised module that fails later with an unrelated error. A
    handler of our own notes the signal, so anything that fails after it, or nothing,
    still ends as 'interrupted' instead of a misleading traceback or a command run on
    broken modules.
    """
    seen = []
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_sigint(signum, frame):
        seen.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException:
        if seen:
            raise KeyboardInterrupt from None
        raise
    finally:
        signal.signal(signal.SIGINT, previous)
    if seen:
        raise KeyboardInterrupt


def console() -> None:
    """The `cnnlab` executable (and `python -m cnnlab`): `main`, then exit without the interpreter's teardown.

    Once torch is loaded, Python's own finalization (unloading its libraries, collecting every module) takes
    0.6-0.8 s after the work is done: most of a short run's wind-down. By the time `main` returns, everything
    cnnlab writes is closed (run files atomically, metrics and logs closed); the atexit handlers still run here
    and the standard streams are flushed, so only that teardown is skipped. `main` itself returns normally,
    for callers inside Python.
    """
    code = main()
    try:
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - a closed pipe has nothing more to say
                pass
        os._exit(code)


def main(argv: list[str] | None = None) -> int:
    """Run the command line `argv`; return the exit status (see the module docstring)."""
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    # Around everything, parsing and the imports build_parser does included: Ctrl-C at any moment is one line.
    try:
        return _main(argv)
    except KeyboardInterrupt:
        if debug:
            raise
        print("cnnlab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`cnnlab models | head -1`): nothing left to say to it, and not an error.
        _silence_stdout()
        return 0


def _main(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # --debug is accepted anywhere on the line, before or after the sub-command.
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    with _startup_interrupts():
        parser = build_parser()
        args = parser.parse_args(argv)
    args.debug = debug
    args.argv = argv
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if args.command not in COMMANDS_WITHOUT_TORCH:
        # The handlers import torch on first use; a Ctrl-C in the middle of that import must be one line too
        # (numpy swallows it and is left half-loaded), so torch is loaded here, under the same guard as parsing.
        with _startup_interrupts():
            importlib.import_module("torch")
    try:
        if getattr(args, "trust_code", False):
            # here: only a command that reopens a run of your own model loads the run machinery for it
            from cnnlab.runs.load import trusting_code

            with trusting_code():
                code = int(args.func(args) or 0)
        else:
            code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, where it is handled, not at exit as noise
        return code
    except CnnlabError as err:
        if args.debug:
            raise
        # Under torchrun every rank hits the same error: say it once.
        if os.environ.get("RANK", "0") == "0":
            print(f"cnnlab: {err.label}: {err}", file=sys.stderr)
        return err.exit_code
    except BrokenPipeError:
        raise  # handled in main
    except OSError as err:
        if args.debug:
            raise
        line, code = os_error_line(err)
        if os.environ.get("RANK", "0") == "0":
            print(f"cnnlab: error: {line}", file=sys.stderr)
        return code
    except Exception as err:  # noqa: BLE001
        # A bug under torchrun: one line per failing rank instead of N interleaved tracebacks.
        if args.debug or os.environ.get("WORLD_SIZE", "1") == "1":
            raise
        print(f"cnnlab: error (rank {os.environ.get('RANK')}): {type(err).__name__}: {err}", file=sys.stderr)
        return 1
