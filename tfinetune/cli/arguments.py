"""The command line's flags: one parser builder per command, the flags in groups.

Nothing here loads TensorFlow: `tfinetune --help` and usage errors answer at once.
"""

from __future__ import annotations

import argparse

from tfinetune import __version__
from tfinetune.cli.examples import epilog
from tfinetune.cli.parser import Parser
from tfinetune.cli.values import groups, hidden_units, positive_int, weights, whole_number
from tfinetune.logs import VERBOSE_ENV


def build_parser() -> Parser:
    """The `tfinetune` argument parser, with a sub-command per job.

    Example:
    >>> build_parser().parse_args(["predict", "run", "a.jpg", "--debug"]).debug
    True
    """
    parser = Parser(
        prog="tfinetune",
        description="Fine-tune pretrained image models with Keras 3 and ship them to TF Serving.",
    )
    parser.add_argument("--version", action="version", version=f"tfinetune {__version__}")
    _add_global_flags(parser, default=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train(commands)
    init = commands.add_parser("init", help="write an example experiment file, with comments")
    init.add_argument("path", help="the .toml file to write")
    init.add_argument("--force", action="store_true", help="replace an existing file")
    _add_lr_find(commands)
    _add_convert(commands)
    _add_evaluate_and_predict(commands)
    _add_export_and_verify(commands)
    _add_backbones_and_demo(commands)
    parser.commands = dict(commands.choices)
    for name, command in parser.commands.items():
        _add_global_flags(command, default=argparse.SUPPRESS)  # also: tfinetune train --debug
        command.epilog = epilog(name)
    return parser


def _add_global_flags(parser: argparse.ArgumentParser, default) -> None:
    """--verbose and --debug (on a command, absent unless given: the top level's stand)."""
    parser.add_argument(
        "--verbose",
        action="store_true",
        default=default,
        help=f"show TensorFlow's own log messages (also: {VERBOSE_ENV}=1)",
    )
    parser.add_argument(
        "--debug", action="store_true", default=default, help="show the full traceback of an error"
    )


def _add_model_options(command, defaults: bool = True) -> None:
    """--backbone, --weights, --image-size (without defaults for `train`: its experiment's)."""
    default = {"default": "mobilenet_v2"} if defaults else {}
    command.add_argument("--backbone", **default, help="catalogue name")
    default = {"default": "imagenet"} if defaults else {}
    command.add_argument(
        "--weights", **default, type=weights, help="imagenet, a weights file, or none"
    )
    command.add_argument(
        "--image-size", type=positive_int, help="input size (default: the backbone's)"
    )


def _add_data_and_head(command: argparse.ArgumentParser) -> None:
    """The data and head flags of `train` and `distill` (their defaults: the experiment's)."""
    data = command.add_argument_group("data")
    sources = data.add_mutually_exclusive_group()
    sources.add_argument("--data", help="training folder: DIR/<class>/<images or WAV files>")
    sources.add_argument(
        "--csv",
        dest="data",
        help="training CSV: a path (or text) column and a label (or number) column",
    )
    val = data.add_mutually_exclusive_group()
    val.add_argument("--val-data", help="validation folder (default: hold out --val-split)")
    val.add_argument("--val-csv", dest="val_data", help="validation CSV, with the same columns")
    data.add_argument(
        "--task",
        choices=("single_label", "multi_label", "regression"),
        help="what a CSV's label column holds (default: multi_label with --label-delim, "
        "else single_label)",
    )
    data.add_argument(
        "--label-delim", help="separator of several labels in one CSV cell (multi-label)"
    )
    data.add_argument("--path-column", help="the CSV's image path column (path)")
    data.add_argument("--label-column", help="the CSV's label column (label)")
    data.add_argument("--text-column", help="a text CSV's text column (text)")
    data.add_argument(
        "--clip-seconds", type=float, help="sound clips' length (default: the backbone's)"
    )
    model = command.add_argument_group("model and head")
    _add_model_options(model, defaults=False)
    model.add_argument(
        "--pooling",
        choices=("avg", "max", "avgmax", "attention"),
        help="how the head pools the backbone's features (avg; attention: sound)",
    )
    model.add_argument("--hidden-units", type=hidden_units, help="hidden head layers, e.g. 256,128")
    model.add_argument("--head-dropout", type=float, help="(0.2)")
    model.add_argument(
        "--head-batchnorm", action="store_true", help="BatchNormalization after hidden layers"
    )


def _add_train(commands) -> None:
    # Flags left out are absent (SUPPRESS), so the experiment file's values stand.
    train = commands.add_parser(
        "train",
        help="fine-tune on a folder of class sub-folders or a CSV file",
        argument_default=argparse.SUPPRESS,
    )
    _add_data_and_head(train)
    _add_training_options(train)
    distill = commands.add_parser(
        "distill",
        help="train a (small) model from a trained run's predictions and the labels",
        argument_default=argparse.SUPPRESS,
    )
    distill.add_argument("--teacher", required=True, help="a run folder of `tfinetune train`")
    distill.add_argument(
        "--temperature", type=float, help="softens the teacher's and student's outputs (2)"
    )
    distill.add_argument(
        "--alpha", type=float, help="the labels' share of the loss (teacher: 1 - alpha) (0.5)"
    )
    _add_data_and_head(distill)
    _add_training_options(distill)


def _add_repeatability(train) -> None:
    """--backend, and --nondeterministic / --deterministic (TensorFlow's op determinism)."""
    train.add_argument(
        "--backend",
        choices=("tensorflow", "jax"),
        help="Keras's backend for the training step (default: $KERAS_BACKEND, else "
        "tensorflow); the data pipeline and the exports run on TensorFlow either way",
    )
    repeatable = train.add_mutually_exclusive_group()
    repeatable.add_argument(
        "--nondeterministic",
        action="store_true",
        help="allow nondeterministic TensorFlow ops on a CPU too (runs not repeatable)",
    )
    repeatable.add_argument(
        "--deterministic",
        action="store_true",
        help="deterministic TensorFlow ops on a GPU too: repeatable runs, but Keras then "
        "compiles without XLA (default: on a CPU only)",
    )


def _add_training_options(command: argparse.ArgumentParser) -> None:
    train = command.add_argument_group("training")
    train.add_argument(
        "--epochs", type=whole_number, help="epochs of the last stage, the backbone unfrozen (10)"
    )
    train.add_argument("--freeze-epochs", type=whole_number, help="epochs of the head alone (4)")
    train.add_argument(
        "--train-groups",
        type=groups,
        help="groups trained in the last stage, counting the head ('all'; 5: head + 4 blocks)",
    )
    train.add_argument(
        "--learning-rate", "--lr", type=float, help="the head stage's learning rate (1e-3)"
    )
    train.add_argument(
        "--lr-mult", type=float, help="the last stage's spread: head rate / lowest group's (10)"
    )
    train.add_argument(
        "--fine-tune-learning-rate",
        type=float,
        help="the head's rate in the last stage (2e-4; with --learning-rate alone, half of that)",
    )
    train.add_argument(
        "--schedule",
        choices=("constant", "warmup_cosine", "one_cycle"),
        help="the last stage's learning-rate schedule (warmup_cosine)",
    )
    train.add_argument(
        "--train-bn", action="store_true", help="train BatchNormalization in unfrozen groups"
    )
    train.add_argument("--label-smoothing", type=float, help="(0.1)")
    train.add_argument("--ema", type=float, help="weight-average momentum; 0 trains without it")
    train.add_argument("--batch-size", type=positive_int, help="(32)")
    train.add_argument("--val-split", type=float, help="(0.2)")
    train.add_argument(
        "--augment",
        help="none, light, medium, heavy, or layer names with commas (flip,rotation,cutmix)",
    )
    train.add_argument(
        "--resize",
        choices=("stretch", "crop", "pad"),
        help="how images reach the input size: stretch, centre crop or pad (stretch)",
    )
    train.add_argument(
        "--balance-classes", action="store_true", help="weight the loss by inverse class counts"
    )
    train.add_argument("--seed", type=int, help="(1337)")
    _add_performance(command.add_argument_group("performance and repeatability"))
    _add_run_options(command)


def _add_performance(performance) -> None:  # --backend, determinism, precision, XLA, strategy
    _add_repeatability(performance)
    performance.add_argument(
        "--precision",
        choices=("auto", "float32", "mixed_float16", "mixed_bfloat16"),
        help="compute precision while training (auto: per device, see tfinetune doctor)",
    )
    performance.add_argument(
        "--jit-compile", choices=("auto", "true", "false"), help="XLA for the training step"
    )
    performance.add_argument(
        "--strategy",
        choices=("auto", "default", "mirrored", "multi_worker", "tpu"),
        help="tf.distribute strategy (auto: every local GPU, or a TPU); --batch-size per replica",
    )


def _add_run_options(train: argparse.ArgumentParser) -> None:
    """The experiment file, the run folder, resuming and quiet."""
    train = train.add_argument_group("experiment file and run folder")
    _add_experiment_file(train)
    train.add_argument("--out", help="run folder to write")
    train.add_argument("--overwrite", action="store_true", help="allow a non-empty --out")
    train.add_argument(
        "--resume",
        metavar="RUN",
        help="continue an interrupted run (RUN.partial) from its last completed epoch",
    )
    train.add_argument(
        "--allow-changes",
        action="store_true",
        help="with --resume: accept a changed experiment (flags, --set, --config) or data",
    )
    train.add_argument("--quiet", action="store_true", help="no progress bars, the result only")


def _add_experiment_file(command) -> None:
    """--config FILE and --set KEY=VALUE (the flags override the file, --set the flags)."""
    command.add_argument(
        "--config", help="an experiment file (TOML; `tfinetune init` writes one); flags override"
    )
    command.add_argument(
        "--set", dest="assignments", action="append", metavar="KEY=VALUE",
        help="override one experiment value, e.g. --set stages.2.epochs=3 (repeatable)",
    )  # fmt: skip


def _add_lr_find(commands) -> None:
    # The data, model and head flags, --config and --set are train's (left out: the
    # experiment's); the sweep's own flags have their defaults here.
    finder = commands.add_parser(
        "lr-find",
        help="sweep the learning rate and suggest one, on train's data and model flags",
        argument_default=argparse.SUPPRESS,
    )
    _add_data_and_head(finder)
    for flag, kind, text in (("--batch-size", positive_int, "(32)"), ("--seed", int, "(1337)")):
        finder.add_argument(flag, type=kind, help=text)
    finder.add_argument("--augment", help="as for train: none, light, medium, heavy (light)")
    sweep = (("--train-groups", groups, 1, "layer groups that train (1: the head; 'all')"),
             ("--steps", positive_int, 100, "batches in the sweep"),
             ("--start-lr", float, 1e-7, "the sweep's first rate"),
             ("--end-lr", float, 10.0, "the sweep's last rate"))  # fmt: skip
    group = finder.add_argument_group("the sweep")
    for flag, kind, default, text in sweep:
        group.add_argument(flag, type=kind, default=default, help=text)
    _add_experiment_file(finder.add_argument_group("experiment file and output"))
    finder.add_argument("--out", required=True, help="folder for lr_finder.png and .json")
    finder.add_argument("--overwrite", action="store_true", default=False, help="replace --out")


def _add_convert(commands) -> None:
    convert = commands.add_parser("convert", help="write a folder as split TFRecord shards")
    convert.add_argument("--data", required=True, help="folder: DIR/<class>/<images>")
    convert.add_argument("--out", required=True, help="new folder for the shards")
    convert.add_argument(
        "--val-split", type=float, default=0.2, help="share of each class for validation"
    )
    convert.add_argument(
        "--test-split", type=float, default=0.0, help="share of each class for testing"
    )
    convert.add_argument("--shard-size", type=positive_int, default=1000, help="images per shard")
    convert.add_argument("--seed", type=int, default=1337, help="seeds the split")


def _add_labelled(command, purpose: str, required: bool = False) -> None:
    """--data DIR or --csv FILE (one of them), as train names its data."""
    data = command.add_mutually_exclusive_group(required=required)
    data.add_argument("--data", help=f"labelled folder DIR/<class>/<files> {purpose}")
    data.add_argument("--csv", dest="data", help=f"CSV with the run's columns {purpose}")


MODEL_HELP = "a run folder, a SavedModel (version or base folder), a .keras or a .tflite file"


def _add_evaluate_and_predict(commands) -> None:
    evaluate = commands.add_parser("evaluate", help="metrics of a model on a labelled folder")
    evaluate.add_argument("model", help=MODEL_HELP)
    _add_labelled(evaluate, "to score", required=True)
    evaluate.add_argument("--out", required=True, help="folder for metrics.json")
    evaluate.add_argument("--batch-size", type=positive_int, default=32, help="images per batch")
    evaluate.add_argument(
        "--tta",
        action="store_true",
        help="average with mirrored images (a model trained with evaluation.tta already does)",
    )
    evaluate.add_argument(
        "--overwrite", action="store_true", help="replace an earlier evaluation in --out"
    )

    predict = commands.add_parser("predict", help="print one JSON line per image, clip or text")
    predict.add_argument("model", help=MODEL_HELP)
    predict.add_argument(
        "images",
        nargs="+",
        help="image or sound files, or folders of them; for a text model, texts (-: one per "
        "line of stdin)",
    )
    predict.add_argument(
        "--top-k",
        type=positive_int,
        default=1,
        help='also list the K likeliest classes of each file, under "top" (default: 1)',
    )
    predict.add_argument(
        "--tta",
        action="store_true",
        help="average with mirrored images (a model trained with evaluation.tta already does)",
    )


def _add_export_and_verify(commands) -> None:
    export = commands.add_parser(
        "export", help="a run's model for TF Serving or TFLite, verified on real images"
    )
    export.add_argument("run", help="a run folder of `tfinetune train` (or its model.keras)")
    export.add_argument(
        "--format", choices=("saved_model", "tflite"), default="saved_model", help="the artifact"
    )
    export.add_argument(
        "--out",
        required=True,
        help="saved_model: the model base folder BASE/NAME (versions go inside); "
        "tflite: the folder for model.tflite and labels.txt",
    )
    export.add_argument(
        "--version", type=positive_int, help="the SavedModel version (default: the next free)"
    )
    export.add_argument(
        "--quantize",
        choices=("float32", "float16", "dynamic", "int8"),
        default="float32",
        help="TFLite weights (and, with int8, activations and a uint8 input)",
    )
    export.add_argument(
        "--top-k", type=positive_int, default=5, help="classes in the top_k_* outputs"
    )
    _add_labelled(export, "to verify on (default: the run's validation data)")
    export.add_argument(
        "--overwrite", action="store_true", help="replace an existing version or TFLite folder"
    )

    verify = commands.add_parser(
        "verify", help="check an artifact against its Keras model, in a fresh process"
    )
    verify.add_argument("artifact", help="a SavedModel folder, a .tflite file or folder")
    _add_labelled(verify, "to compare on", required=True)
    verify.add_argument(
        "--reference", help="the Keras model to compare with (default: the run's model.keras)"
    )


def _add_backbones_and_demo(commands) -> None:
    backbones = commands.add_parser("backbones", help="list the backbone catalogue")
    backbones.add_argument("names", nargs="*", help="only these backbones (default: all)")

    doctor = commands.add_parser(
        "doctor", help="versions, devices, the policy `auto` chooses here, offline weights"
    )
    doctor.add_argument("--json", action="store_true", help="print the facts as JSON")

    demo = commands.add_parser("demo", help="the whole workflow offline on data it makes")
    demo.add_argument("--out", default="tfinetune-demo", help="folder to write")
    demo.add_argument("--weights", help="ImageNet MobileNetV2 weights file to fine-tune instead")
    demo.add_argument("--labels-per-class", type=positive_int, default=20, help="images per class")
    demo.add_argument("--seed", type=int, default=0, help="seeds the data and the training")
