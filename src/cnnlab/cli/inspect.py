"""`cnnlab inspect RUN_DIR|CKPT filters|features|saliency|mistakes`: look inside a trained network."""

from __future__ import annotations

import argparse
import sys

from cnnlab.cli.options import add_checkpoint, add_data_dir, add_device, add_overwrite


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-o", "--output", metavar="DIR", help="folder for the PNGs (default RUN_DIR/inspect)")
    add_checkpoint(common)
    add_overwrite(common, "figures an earlier inspect wrote there")
    return common


def _overwriting(handler):
    """Run `handler` with --overwrite deciding whether existing figures may be replaced."""
    import functools

    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        # here: the command's work loads on use, so --help and argument errors stay fast
        from cnnlab.files import overwriting

        with overwriting(args.overwrite):
            return handler(args)

    return run


def _input_options(parser: argparse.ArgumentParser, many: bool) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    if many:
        group.add_argument("--index", type=int, nargs="+", metavar="N", help="test image(s) of the run's dataset")
        group.add_argument("--image", nargs="+", metavar="FILE", help="image file(s): PNG/JPEG or .npy, as for predict")
    else:
        group.add_argument("--index", type=int, metavar="N", help="a test image of the run's dataset")
        group.add_argument("--image", metavar="FILE", help="an image file: PNG/JPEG or .npy, as for predict")
    parser.add_argument("--invert", action="store_true", help="invert dark-on-light images (MNIST is light-on-dark)")
    add_data_dir(parser)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "inspect",
        help="filters, feature maps, saliency and mistakes of a trained run",
        description="Look inside a trained network. Every sub-command writes PNGs into RUN_DIR/inspect/ (or -o DIR) "
        "and prints their paths. Layer names are the module paths `cnnlab summary` shows.",
    )
    parser.add_argument("run", metavar="RUN_DIR|CKPT")
    what = parser.add_subparsers(dest="what", metavar="WHAT", required=True)
    common = _common()

    filters = what.add_parser(
        "filters",
        parents=[common],
        help="learned kernels of a conv layer as a grid",
        description="The kernels of a conv layer (the first by default), each scaled on its own; "
        "deeper layers as a filter x input-channel table.",
    )
    filters.add_argument("--layer", metavar="NAME", help="conv layer (default: the first)")
    filters.add_argument("--max-filters", type=int, default=64, metavar="N", help="rows of a deeper layer's table")
    filters.add_argument("--max-channels", type=int, default=32, metavar="N", help="input channels shown per filter")
    filters.set_defaults(func=run_filters)

    features = what.add_parser(
        "features",
        parents=[common],
        help="feature maps of chosen layers for one input",
        description="Feature maps of chosen layers for one input, one grid per layer.",
    )
    _input_options(features, many=False)
    features.add_argument(
        "--layer",
        nargs="+",
        action="extend",
        metavar="NAME",
        help="layer(s) to show (default: the conv layers, at most 8)",
    )
    features.set_defaults(func=run_features)

    saliency = what.add_parser(
        "saliency",
        parents=[common],
        help="attribution maps (Grad-CAM, ...) over the input",
        description='Attribution maps overlaid on the input, by captum (pip install "cnnlab[inspect]").',
    )
    _input_options(saliency, many=True)
    saliency.add_argument(
        "--method",
        help="gradcam | integrated-gradients | saliency | gradient-x-input (default: gradcam, or "
        "integrated-gradients for a model without conv layers); a map that shows nothing (an all-zero "
        "Grad-CAM, as LeNet's often is) falls back to gradient-x-input with a note",
    )
    saliency.add_argument("--target", metavar="CLASS", help="also explain this class (index or name)")
    saliency.add_argument("--layer", metavar="NAME", help="Grad-CAM layer (default: the last conv layer)")
    saliency.set_defaults(func=run_saliency)

    mistakes = what.add_parser(
        "mistakes",
        parents=[common],
        help="the most confident test mistakes and confused pairs",
        description="The test images the model got most confidently wrong, and the most "
        "confused class pairs from the confusion matrix.",
    )
    mistakes.add_argument("--top", type=int, default=32, metavar="N", help="mistakes to show")
    mistakes.add_argument("--pairs", type=int, default=10, metavar="N", help="confused class pairs to show")
    mistakes.add_argument("--limit-test", type=int, metavar="N", help="use only the first N test images")
    add_data_dir(mistakes)
    add_device(mistakes)
    mistakes.set_defaults(func=run_mistakes)


def _positive(name: str, value: int | None) -> None:
    # here: the command's work loads on use, so --help and argument errors stay fast
    from cnnlab.errors import CnnlabError

    if value is not None and value < 1:
        raise CnnlabError(f"--{name} must be a positive integer, got {value}")


def _print(paths) -> int:
    for path in paths:
        print(path)
    return 0


@_overwriting
def run_filters(args: argparse.Namespace) -> int:
    # here: the command's work loads on use, so --help and argument errors stay fast
    from cnnlab.inspect.run import inspect_filters

    _positive("max-filters", args.max_filters)
    _positive("max-channels", args.max_channels)
    return _print(
        inspect_filters(args.run, args.layer, args.output, args.checkpoint, args.max_filters, args.max_channels)
    )


@_overwriting
def run_features(args: argparse.Namespace) -> int:
    # here: the command's work loads on use, so --help and argument errors stay fast
    from cnnlab.inspect.run import inspect_features

    return _print(
        inspect_features(
            args.run, args.index, args.image, args.layer, args.output, args.checkpoint, args.invert, args.data_dir
        )
    )


def _note(message: str) -> None:
    print(f"cnnlab: note: {message}", file=sys.stderr)


@_overwriting
def run_saliency(args: argparse.Namespace) -> int:
    # here: the command's work loads on use, so --help and argument errors stay fast
    from cnnlab.inspect.run import inspect_saliency

    return _print(
        inspect_saliency(
            args.run,
            args.index,
            args.image,
            args.method,
            args.target,
            args.layer,
            args.output,
            args.checkpoint,
            args.invert,
            args.data_dir,
            log=_note,
        )
    )


@_overwriting
def run_mistakes(args: argparse.Namespace) -> int:
    # here: the command's work loads on use, so --help and argument errors stay fast
    from cnnlab.inspect.run import inspect_mistakes

    _positive("top", args.top)
    _positive("pairs", args.pairs)
    _positive("limit-test", args.limit_test)
    mistakes, paths = inspect_mistakes(
        args.run, args.top, args.pairs, args.output, args.checkpoint, args.data_dir, args.limit_test, args.device
    )
    print(f"{mistakes.wrong:,} of {mistakes.count:,} test images wrong ({mistakes.accuracy:.2%} accuracy)")
    if mistakes.pairs:
        classes = mistakes.classes
        print(
            "most confused (true -> predicted: count): "
            + ", ".join(f"{classes[t]} -> {classes[p]}: {c}" for t, p, c in mistakes.pairs)
        )
    return _print(paths)
