"""`cnnlab serve [ROOT...]`: the local web lab. Imports nothing heavy until it runs, so `cnnlab --help` stays quick."""

from __future__ import annotations

import argparse

from cnnlab.cli.options import add_trust_code


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="browse, compare and play with runs in a local web lab",
        description="Start a local web server over the run folders under ROOT (searched recursively for "
        "folders with config.json): runs table, curves (live while training), confusion matrix, a drawing "
        'playground with feature maps and Grad-CAM, and kernels. Needs the extra: pip install "cnnlab[serve]". '
        "It answers only to the host names it was started for; beyond loopback (--host) it asks for a random "
        "token, printed in its URL. It speaks plain HTTP: keep the default --host 127.0.0.1 unless the network is yours.",
    )
    parser.add_argument("roots", nargs="*", default=["runs"], metavar="ROOT", help="folders of runs (default: runs/)")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)"
    )
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default: 8000; 0 picks a free one)")
    parser.add_argument(
        "--token",
        metavar="TOKEN",
        help="ask every request for this token (16+ URL-safe characters), "
        "or 'auto' for a random one; beyond loopback a random one is the default, and none cannot be "
        "chosen. A token on the command line is visible to other users of this machine (ps)",
    )
    parser.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also answer requests for this host name (the name this machine or a proxy in front of "
        "it is reached by), or for any address in an IP network such as 10.0.0.0/8; repeatable",
    )
    parser.add_argument("--open", action="store_true", help="open the lab in the default browser")
    add_trust_code(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # here: the command's work loads on use, so --help and argument errors stay fast
    from cnnlab.web.deps import require_web

    require_web()  # the missing extra is one line, before anything else happens
    from cnnlab.web.server import serve

    serve(
        args.roots,
        host=args.host,
        port=args.port,
        open_browser=args.open,
        token=args.token,
        allow_hosts=args.allow_host,
    )
    return 0
