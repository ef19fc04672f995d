"""The `tfinetune` command line: train, lr-find, convert, evaluate, predict, backbones, demo.

Nothing here imports TensorFlow at module level: `--help` and argument errors answer at
once, and TensorFlow's C++ start-up log is kept quiet unless `--verbose` (or
`TFINETUNE_VERBOSE=1`) asks for it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

VERBOSE_ENV = "TFINETUNE_VERBOSE"


def _weights(value: str) -> str | None:
    return None if value.lower() == "none" else value


def _augment(value: str) -> str | list[str] | None:
    if value == "none":
        return None
    return value.split(",") if "," in value else value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tfinetune",
        description="Fine-tune pretrained image models with Keras 3 and ship them to TF Serving.",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help=f"show TensorFlow's own log messages (also: {VERBOSE_ENV}=1)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train(commands)
    _add_lr_find(commands)
    _add_convert(commands)
    _add_evaluate_and_predict(commands)
    _add_backbones_and_demo(commands)
    return parser


def _add_model_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--backbone", default="mobilenet_v2", help="catalogue name")
    command.add_argument(
        "--weights", default="imagenet", type=_weights, help="imagenet, a weights file, or none"
    )
    command.add_argument("--image-size", type=int, help="input size (default: the backbone's)")


def _add_train(commands) -> None:
    train = commands.add_parser("train", help="fine-tune on a folder of class sub-folders")
    train.add_argument("--data", required=True, help="training folder: DIR/<class>/<images>")
    train.add_argument("--val-data", help="validation folder (default: hold out --val-split)")
    _add_model_options(train)
    train.add_argument("--epochs", type=int, default=6, help="epochs with the top blocks unfrozen")
    train.add_argument("--freeze-epochs", type=int, default=4, help="epochs of the head alone")
    train.add_argument(
        "--train-groups",
        type=int,
        default=5,
        help="layer groups trained in the second stage, counting the head (5: head + 4 blocks)",
    )
    train.add_argument(
        "--learning-rate", "--lr", type=float, default=1e-3, help="the head stage's learning rate"
    )
    train.add_argument(
        "--lr-mult",
        type=float,
        default=10.0,
        help="the unfrozen stage's spread of rates: head rate / lowest group's rate",
    )
    train.add_argument(
        "--fine-tune-learning-rate",
        type=float,
        help="the head's rate in the second stage (default: learning rate / 2)",
    )
    train.add_argument(
        "--schedule", default="constant", choices=("constant", "warmup_cosine", "one_cycle")
    )
    train.add_argument("--label-smoothing", type=float, default=0.1)
    train.add_argument(
        "--ema", type=float, default=0.9, help="weight-average momentum; 0 trains without it"
    )
    train.add_argument("--batch-size", type=int, default=32)
    train.add_argument("--val-split", type=float, default=0.2)
    train.add_argument(
        "--augment",
        default="light",
        help="none, light, medium, heavy, or layer names with commas (flip,rotation,cutmix)",
    )
    train.add_argument("--resize", default="stretch", choices=("stretch", "crop", "pad"))
    train.add_argument(
        "--balance-classes", action="store_true", help="weight the loss by inverse class counts"
    )
    train.add_argument("--seed", type=int, default=1337)
    train.add_argument(
        "--nondeterministic",
        action="store_true",
        help="allow nondeterministic TensorFlow ops (faster on some GPUs; runs not repeatable)",
    )
    train.add_argument("--out", required=True, help="run folder to write")
    train.add_argument("--overwrite", action="store_true", help="allow a non-empty --out")


def _add_lr_find(commands) -> None:
    finder = commands.add_parser("lr-find", help="sweep the learning rate and suggest one")
    finder.add_argument("--data", required=True, help="training folder: DIR/<class>/<images>")
    _add_model_options(finder)
    finder.add_argument(
        "--train-groups", type=int, default=1, help="layer groups that train (1: the head only)"
    )
    finder.add_argument("--steps", type=int, default=100, help="batches in the sweep")
    finder.add_argument("--start-lr", type=float, default=1e-7)
    finder.add_argument("--end-lr", type=float, default=10.0)
    finder.add_argument("--batch-size", type=int, default=32)
    finder.add_argument("--seed", type=int, default=1337)
    finder.add_argument("--out", required=True, help="folder for lr_finder.png and .json")
    finder.add_argument("--overwrite", action="store_true", help="allow a non-empty --out")


def _add_convert(commands) -> None:
    convert = commands.add_parser("convert", help="write a folder as split TFRecord shards")
    convert.add_argument("--data", required=True, help="folder: DIR/<class>/<images>")
    convert.add_argument("--out", required=True, help="new folder for the shards")
    convert.add_argument("--val-split", type=float, default=0.2)
    convert.add_argument("--test-split", type=float, default=0.0)
    convert.add_argument("--shard-size", type=int, default=1000, help="images per shard")
    convert.add_argument("--seed", type=int, default=1337)


def _add_evaluate_and_predict(commands) -> None:
    evaluate = commands.add_parser("evaluate", help="metrics of a model on a labelled folder")
    evaluate.add_argument("model", help="a run folder or an exported SavedModel")
    evaluate.add_argument("--data", required=True, help="folder: DIR/<class>/<images>")
    evaluate.add_argument("--out", required=True, help="folder for metrics.json")
    evaluate.add_argument("--batch-size", type=int, default=32)
    evaluate.add_argument("--tta", action="store_true", help="average with mirrored images")

    predict = commands.add_parser("predict", help="print one JSON line per image")
    predict.add_argument("model", help="a run folder or an exported SavedModel")
    predict.add_argument("images", nargs="+", help="image files")
    predict.add_argument("--tta", action="store_true", help="average with mirrored images")


def _add_backbones_and_demo(commands) -> None:
    backbones = commands.add_parser("backbones", help="list the backbone catalogue")
    backbones.add_argument("names", nargs="*", help="only these backbones (default: all)")

    demo = commands.add_parser("demo", help="the whole workflow offline on data it makes")
    demo.add_argument("--out", default="tfinetune-demo", help="folder to write")
    demo.add_argument("--weights", help="ImageNet MobileNetV2 weights file to fine-tune instead")
    demo.add_argument("--labels-per-class", type=int, default=20)
    demo.add_argument("--seed", type=int, default=0)


def _train(args: argparse.Namespace) -> int:
    from tfinetune.cli.runs import train_run

    result = train_run(
        args.data,
        args.out,
        val_dir=args.val_data,
        backbone=args.backbone,
        weights=args.weights,
        image_size=args.image_size,
        epochs=args.epochs,
        freeze_epochs=args.freeze_epochs,
        train_groups=args.train_groups,
        learning_rate=args.learning_rate,
        lr_mult=args.lr_mult,
        fine_tune_learning_rate=args.fine_tune_learning_rate,
        schedule=args.schedule,
        label_smoothing=args.label_smoothing,
        ema_momentum=args.ema or None,
        batch_size=args.batch_size,
        val_split=args.val_split,
        augment=_augment(args.augment),
        resize=args.resize,
        balance_classes=args.balance_classes,
        seed=args.seed,
        deterministic_ops=not args.nondeterministic,
        overwrite=args.overwrite,
    )
    accuracy = f"validation accuracy {result.report.accuracy:.1%}, " if result.report else ""
    print(f"Done in {result.seconds:.0f} s: {accuracy}run folder {result.out_dir}")
    return 0


def _lr_find(args: argparse.Namespace) -> int:
    from tfinetune.cli.runs import lr_find_run

    result = lr_find_run(
        args.data,
        args.out,
        backbone=args.backbone,
        weights=args.weights,
        image_size=args.image_size,
        train_groups=args.train_groups,
        num_steps=args.steps,
        start_lr=args.start_lr,
        end_lr=args.end_lr,
        batch_size=args.batch_size,
        seed=args.seed,
        overwrite=args.overwrite,
    )
    stopped = " (stopped early: the loss diverged)" if result.diverged else ""
    print(f"Swept {len(result.losses)} steps{stopped}. Suggested learning rates:")
    for name, rate in result.suggestions.items():
        print(f"  {name}: {rate:.2e}")
    print(f"Wrote lr_finder.png and lr_finder.json to {args.out}")
    return 0


def _convert(args: argparse.Namespace) -> int:
    from tfinetune.data.records import convert_folder

    manifest = convert_folder(
        args.data,
        args.out,
        val_split=args.val_split,
        test_split=args.test_split,
        seed=args.seed,
        shard_size=args.shard_size,
        verbose=sys.stdout.isatty(),
    )
    for name, count in manifest["counts"].items():
        print(f"{name}: {count} images in {len(manifest['shards'][name])} shard(s)")
    for bad in manifest["bad_files"]:
        print(f"skipped {bad['path']}: {bad['reason']}")
    print(f"Wrote {args.out}/dataset.json and the shards")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from tfinetune.cli.runs import evaluate_run

    report = evaluate_run(args.model, args.data, args.out, batch_size=args.batch_size, tta=args.tta)
    print(report)
    print(f"Wrote metrics.json, summary.md and figures to {args.out}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from tfinetune.data.files import find_bad_files
    from tfinetune.serving.inference import ExportedClassifier

    classifier = ExportedClassifier(args.model)
    missing = [p for p in args.images if not os.path.isfile(p)]
    bad = {b.path: b.reason for b in find_bad_files([p for p in args.images if p not in missing])}
    bad.update({p: "file not found" for p in missing})
    good = [p for p in args.images if p not in bad]
    probs = dict(zip(good, classifier.predict_files(good, tta=args.tta), strict=True))
    for path in args.images:
        if path in bad:
            print(json.dumps({"path": path, "error": bad[path]}))
        else:
            top = int(probs[path].argmax())
            label = classifier.class_names[top]
            print(
                json.dumps({"path": path, "label": label, "probability": float(probs[path][top])})
            )
    return 1 if bad else 0


def _backbones(args: argparse.Namespace) -> int:
    import keras

    from tfinetune.models.backbones import describe_backbone
    from tfinetune.models.catalogue import CATALOGUE

    names = args.names or sorted(CATALOGUE)
    progress = keras.utils.Progbar(len(names), unit_name="backbone", verbose=sys.stderr.isatty())
    rows = []
    for name in names:
        rows.append(describe_backbone(name))
        progress.add(1)
    print(
        f"{'name':<22}{'size':>6}{'parameters':>14}  {'normalisation':<15}{'groups':>7}  imagenet"
    )
    for r in rows:
        print(
            f"{r['name']:<22}{r['default_size']:>6}{r['parameters']:>14,}  "
            f"{r['normalization']:<15}{r['layer_groups']:>7}  {'yes' if r['imagenet'] else 'no'}"
        )
    return 0


def _demo(args: argparse.Namespace) -> int:
    from tfinetune.cli.demo import run_demo

    run_demo(args.out, weights=args.weights, labels_per_class=args.labels_per_class, seed=args.seed)
    return 0


def quiet_tensorflow(verbose: bool = False) -> None:
    """Import TensorFlow with its C++ start-up log (oneDNN, CUDA, CPU features) kept quiet.

    TensorFlow's libraries log while they load, before absl's logging is initialised, and
    such messages ignore every threshold (abseil-cpp#1718): so the process's stderr (file
    descriptor 2) points at the null device while TensorFlow is imported, and
    `TF_CPP_MIN_LOG_LEVEL=3` keeps later C++ messages (a failed `cuInit` on a machine
    without a GPU) out too. A `TF_CPP_MIN_LOG_LEVEL` the user set is kept. Python errors
    and warnings are not affected.

    Args:
        verbose: leave TensorFlow's logging alone.

    Example:
    >>> quiet_tensorflow(verbose=True)
    """
    if verbose:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: the arguments (default: `sys.argv[1:]`).

    Example:
    >>> main(["predict", "/no/such/model", "x.jpg"])  # doctest: +SKIP
    tfinetune: error: No SavedModel found at '/no/such/model' ...
    """
    args = _parser().parse_args(argv)
    quiet_tensorflow(args.verbose or os.environ.get(VERBOSE_ENV) == "1")
    handlers = {
        "train": _train,
        "lr-find": _lr_find,
        "convert": _convert,
        "evaluate": _evaluate,
        "predict": _predict,
        "backbones": _backbones,
        "demo": _demo,
    }
    try:
        return handlers[args.command](args)
    except (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError) as err:
        print(f"tfinetune: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
