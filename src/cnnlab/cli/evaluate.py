"""`cnnlab eval RUN_DIR|CKPT`: accuracy, loss, per-class accuracy and confusion matrix."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cnnlab.cli.options import add_checkpoint, add_data_dir, add_device, add_format


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a trained run on a test split",
        description="Evaluate a run's model (best checkpoint by default) on a test split.",
    )
    parser.add_argument("run", metavar="RUN_DIR|CKPT")
    parser.add_argument("--dataset", help="dataset to evaluate on (default: the training dataset)")
    add_data_dir(parser)
    add_checkpoint(parser)
    parser.add_argument("--limit-test", type=int, help="use only the first N test images")
    add_device(parser)
    parser.add_argument(
        "--tta",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="test-time augmentation: average over flipped or 1-pixel shifted copies "
        "(default: as the run was evaluated in training)",
    )
    parser.add_argument("-o", "--output", help="confusion matrix PNG (default RUN/eval/confusion-<dataset>.png)")
    add_format(parser)
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing confusion matrix PNG (an earlier eval's default one is kept otherwise)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # here: the command's work loads on use, so --help and argument errors stay fast
    from cnnlab.figures.plots import plot_confusion
    from cnnlab.files import check_output, confined
    from cnnlab.runs.assess import evaluate_run

    if args.output:
        check_output(args.output, args.overwrite)  # before the work
    report = evaluate_run(
        args.run, args.dataset, args.data_dir, args.checkpoint, args.limit_test, device=args.device, tta=args.tta
    )
    result, classes = report.result, report.trained.classes
    output = Path(args.output) if args.output else report.trained.run_dir / "eval" / f"confusion-{report.dataset}.png"
    # The default figure of an earlier eval is kept unless --overwrite: the numbers are printed either way.
    redraw = bool(args.output) or args.overwrite or not output.exists()
    if redraw:
        check_output(output, overwrite=True)  # still never inside checkpoints/
        # The default figure belongs to the run: a symlinked RUN/eval/ must not lead it elsewhere.
        with confined(None if args.output else report.trained.run_dir):
            plot_confusion(
                result.confusion, classes, output, title=f"{report.trained.config.model} on {report.dataset} (test)"
            )
    if args.format == "json":
        print(json.dumps({**report.to_dict(), "confusion_png": str(output)}, indent=2))
        return 0
    print(
        f"{report.trained.config.model} on {report.dataset} test ({result.count:,} images): "
        f"accuracy {result.accuracy:.2%}, loss {result.loss:.4f}"
        + (f" (test-time augmentation: {report.tta})" if report.tta else "")
    )
    width = max(len(c) for c in classes)
    print("\nper-class accuracy:")
    for name, acc in zip(classes, result.per_class_accuracy):
        print(f"  {name:<{width}}  {acc:7.2%}")
    print("\nconfusion matrix (rows: true, columns: predicted):")
    print("  " + " " * width + "".join(f"{i:>6}" for i in range(len(classes))))
    for name, row in zip(classes, result.confusion.tolist()):
        print(f"  {name:<{width}}" + "".join(f"{v:>6}" for v in row))
    print(
        f"\nconfusion matrix figure: {output}"
        + ("" if redraw else " (kept from an earlier eval; --overwrite redraws it)")
    )
    return 0
