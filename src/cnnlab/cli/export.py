"""`cnnlab export RUN_DIR|CKPT --format onnx|torchscript`: a deployable file, verified, with a JSON sidecar."""

from __future__ import annotations

import argparse

from cnnlab.cli.options import add_checkpoint, add_overwrite


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a trained model to ONNX or TorchScript (verified)",
        description="Write a run's model as ONNX or TorchScript plus <file>.json (classes, input shape, "
        "preprocessing), then check the file against the PyTorch model on test images: top-1 must agree and "
        "the scores must match. On a mismatch nothing is written and the exit code is 1. "
        'ONNX needs: pip install "cnnlab[export]".',
    )
    parser.add_argument("run", metavar="RUN_DIR|CKPT")
    parser.add_argument(
        "--format", choices=["onnx", "torchscript"], help="file format (default: from -o's suffix, else onnx)"
    )
    parser.add_argument(
        "-o", "--output", metavar="FILE", help="output file (default RUN/export/model.onnx or model.pt)"
    )
    parser.add_argument(
        "--dynamic-batch", action="store_true", help="accept any batch size (default: batches of exactly 1)"
    )
    parser.add_argument(
        "--opset",
        type=int,
        metavar="N",
        help="ONNX opset (default: the exporter's; below 18 uses torch's legacy exporter)",
    )
    add_checkpoint(parser)
    parser.add_argument(
        "--verify-images", type=int, default=32, metavar="N", help="test images to verify the export on (default 32)"
    )
    add_overwrite(parser, "an earlier export at that path")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # here: the command's work loads on use, so --help and argument errors stay fast
    from cnnlab.errors import CnnlabError
    from cnnlab.export import export_model

    if args.verify_images < 1:
        raise CnnlabError(f"--verify-images must be a positive integer, got {args.verify_images}")
    result = export_model(
        args.run,
        args.format,
        args.output,
        which=args.checkpoint,
        dynamic_batch=args.dynamic_batch,
        opset=args.opset,
        verify_count=args.verify_images,
        overwrite=args.overwrite,
    )
    meta = result.metadata
    shape = "x".join(str(d) for d in meta["input"]["shape"])
    opset = f", opset {meta['opset']}" if "opset" in meta else ""
    print(f"wrote {result.path} ({result.format}{opset}, input {shape} float32) and {result.sidecar.name}")
    print(result.verification.summary())
    return 0
