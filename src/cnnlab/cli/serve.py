"""`cnnlab serve [ROOT...]`: the local web lab. Imports nothing heavy until it runs, so `cnnlab --help` stays quick."""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve", help="browse, compare and play with runs in a local web lab",
        description="Start a local web server over the run folders under ROOT (searched recursively for "
        "folders with config.json): runs table, curves (live while training), confusion matrix, a drawing "
        'playground with feature maps and Grad-CAM, and kernels. Needs the extra: pip install "cnnlab[serve]". '
        "There is no authentication: keep the default --host 127.0.0.1 unless the network is yours.")
    parser.add_argument("roots", nargs="*", default=["runs"], metavar="ROOT", help="folders of runs (default: runs/)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default: 8000; 0 picks a free one)")
    parser.add_argument("--open", action="store_true", help="open the lab in the default browser")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cnnlab.web.deps import require_web

    require_web()  # the missing extra is one line, before anything else happens
    from cnnlab.web.server import serve

    serve(args.roots, host=args.host, port=args.port, open_browser=args.open)
    return 0
