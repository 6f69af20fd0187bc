"""`cnnlab predict RUN_DIR|CKPT|MODEL.onnx IMAGE...`: top-k classes for image files or .npy arrays."""

from __future__ import annotations

import argparse
import json

from cnnlab.cli.options import add_checkpoint, add_format


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="classify image files with a trained run",
        description="Classify PNG/JPEG files or .npy arrays with a run's model, "
        "using the run's preprocessing. An exported MODEL.onnx runs in onnxruntime "
        "with the preprocessing from its sidecar MODEL.onnx.json.",
    )
    parser.add_argument("run", metavar="RUN_DIR|CKPT|MODEL.onnx")
    parser.add_argument("images", nargs="+", metavar="IMAGE")
    parser.add_argument("-k", "--top-k", type=int, default=3, help="how many classes to show per image")
    parser.add_argument("--invert", action="store_true", help="invert dark-on-light images (MNIST is light-on-dark)")
    add_checkpoint(parser)
    add_format(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # here: the command's work loads on use, so --help and argument errors stay fast
    from cnnlab.errors import CnnlabError
    from cnnlab.runs.predict import predict_files

    if args.top_k < 1:
        raise CnnlabError(f"--top-k must be a positive integer, got {args.top_k}")
    if args.run.lower().endswith(".onnx"):
        from cnnlab.export import predict_exported

        predictions = predict_exported(args.run, args.images, args.top_k, args.invert)
    else:
        predictions = predict_files(args.run, args.images, args.top_k, args.invert, args.checkpoint)
    if args.format == "json":
        print(json.dumps(predictions, indent=2))
        return 0
    for item in predictions:
        top = ", ".join(f"{t['class']} {t['probability']:.1%}" for t in item["top"])
        print(f"{item['image']}: {top}")
    return 0
