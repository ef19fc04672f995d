"""The command line's flags: one parser builder per command, the flags in groups.

Nothing here loads TensorFlow: `tfinetune --help` and usage errors answer at once.
"""

from __future__ import annotations

import argparse

from tfinetune import __version__
from tfinetune.cleaning.detect import NEAR_DUPLICATE_COSINE
from tfinetune.cli.examples import epilog
from tfinetune.cli.parser import Parser
from tfinetune.cli.values import at_least, groups, hidden_units, positive_int
from tfinetune.data.hashes import NEAR_DUPLICATE_BITS
from tfinetune.logs import VERBOSE_ENV
from tfinetune.runs.flags import STAGE_FLAGS, SWITCHES, RunFlag, field_flags


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
    _add_clean(commands)
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


# argparse types by the type a run flag's field holds (its declaration: tfinetune.runs.flags)
KINDS = {float: float, str: str, list: hidden_units, "groups": groups}


def _add_run_flag(group, flag: RunFlag, **extra) -> None:
    """One run flag as its field declares it; a flag with alternatives (`--data` or
    `--csv`) becomes one argument per name, at most one of them given."""
    options = {"dest": flag.dest, **extra}
    if flag.kind is bool:
        options["action"] = "store_true"
    else:
        kind = at_least(flag.at_least) if flag.kind is int else KINDS[flag.kind]
        options.update(type=kind, choices=flag.choices)
    if len(flag.names) > 1:
        group = group.add_mutually_exclusive_group()
    for number, name in enumerate(flag.names):
        text = _run_help(flag) if number == 0 else f"the same as {flag.names[0]}"
        group.add_argument(name, help=text.replace("%", "%%"), **options)


def _run_help(flag: RunFlag) -> str:
    """The field's help, with the experiment's default where the help does not give one."""
    if flag.default in (None, "", False, []) or "default" in flag.help:
        return flag.help
    shown = ",".join(map(str, flag.default)) if isinstance(flag.default, list) else flag.default
    return f"{flag.help} (default: {shown})"


def _add_sections(command: argparse.ArgumentParser, sections: dict[str, str]) -> None:
    """The run flags of the experiment's sections, a group each ({section: title})."""
    flags = field_flags()
    for section, title in sections.items():
        group = command.add_argument_group(title)
        if section == "training":
            for flag in STAGE_FLAGS:
                _add_run_flag(group, flag)
        if section == "performance":
            _add_repeatability(group)
        for flag in flags:
            if flag.section == section:
                _add_run_flag(group, flag, required=flag.key == "distill.teacher")


RUN_SECTIONS = {"data": "data", "model": "model and head", "training": "training",
                "performance": "performance and repeatability"}  # fmt: skip


def _add_train(commands) -> None:
    # Flags left out are absent (SUPPRESS), so the experiment file's values stand.
    train = commands.add_parser(
        "train",
        help="fine-tune on a folder of class sub-folders or a CSV file",
        argument_default=argparse.SUPPRESS,
    )
    _add_sections(train, RUN_SECTIONS)
    _add_run_options(train)
    distill = commands.add_parser(
        "distill",
        help="train a (small) model from a trained run's predictions and the labels",
        argument_default=argparse.SUPPRESS,
    )
    _add_sections(distill, {"distill": "distillation", **RUN_SECTIONS})
    _add_run_options(distill)


def _add_repeatability(train) -> None:
    """--backend, and --nondeterministic or --deterministic (TensorFlow's op determinism)."""
    train.add_argument(
        "--backend",
        choices=("tensorflow", "jax"),
        help="Keras's backend for the training step (default: $KERAS_BACKEND, else "
        "tensorflow); the data pipeline and the exports run on TensorFlow either way",
    )
    repeatable = train.add_mutually_exclusive_group()
    for switch in SWITCHES:
        repeatable.add_argument(switch.names[0], action="store_true", help=switch.help)


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
    _add_sections(finder, {"data": "data", "model": "model and head"})
    _add_run_flag(finder, next(f for f in field_flags() if f.key == "seed"))
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
    convert.add_argument(
        "--workers", type=positive_int, default=None, help="shards written at once (default: CPUs)"
    )
    convert.add_argument(
        "--resume", action="store_true", help="finish an interrupted conversion into --out"
    )
    convert.add_argument("--overwrite", action="store_true", help="replace an earlier --out")


def _add_clean(commands) -> None:
    clean = commands.add_parser(
        "clean", help="find duplicates, leaks, likely label errors and outliers in image data"
    )
    clean.add_argument("data", help="training folder DIR/<class>/<images> or CSV")
    clean.add_argument("--val-data", help="validation folder or CSV, checked for leaks too")
    clean.add_argument("--out", default="clean-report", help="new folder for the report")
    clean.add_argument(
        "--backbone", default="mobilenet_v2", help="image backbone whose embeddings are compared"
    )
    clean.add_argument(
        "--weights", default="imagenet", help="the backbone's weights: imagenet or a file"
    )
    clean.add_argument(
        "--image-size", type=positive_int, help="embedding input size (default: the backbone's)"
    )
    clean.add_argument("--folds", type=positive_int, default=5, help="cross-validation folds")
    clean.add_argument("--seed", type=int, default=0, help="seeds the folds")
    clean.add_argument(
        "--max-bits", type=int, default=NEAR_DUPLICATE_BITS,
        help="perceptual hashes at most this many bits apart (of 64) are near-duplicates",
    )  # fmt: skip
    clean.add_argument(
        "--min-cosine", type=float, default=NEAR_DUPLICATE_COSINE,
        help="embeddings at least this similar are near-duplicates (above 1: hashes only)",
    )  # fmt: skip
    clean.add_argument("--overwrite", action="store_true", help="replace an earlier report")


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
