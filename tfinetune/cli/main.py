"""The `tfinetune` command line: train, lr-find, convert, evaluate, predict, export, verify,
backbones, demo.

Nothing here imports TensorFlow at module level: `--help` and argument errors answer at
once, and TensorFlow's C++ start-up log is kept quiet unless `--verbose` (or
`TFINETUNE_VERBOSE=1`) asks for it.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from tfinetune import use_backend
from tfinetune.cli.arguments import VERBOSE_ENV, build_parser, parse_augment

# Exit codes: 0 done, 1 failed (the environment or an unexpected error), 2 bad input
# (including argparse's own usage errors), 130 interrupted (Ctrl-C or SIGTERM).
EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 1, 2, 130
# A user's mistake: the message says what was wrong and what to do.
USER_ERRORS = (ValueError, TypeError, FileNotFoundError, FileExistsError, NotADirectoryError,
               IsADirectoryError, FloatingPointError)  # fmt: skip


def experiment_from_args(args: argparse.Namespace, base=None):
    """The experiment a `train` or `distill` command describes: its file (or `base`, else the
    defaults), then its flags, then its `--set` values."""
    from tfinetune.runs.experiment import Experiment, load_config, parse_assignment
    from tfinetune.runs.overrides import FLAGS, apply_flags

    config = getattr(args, "config", None)
    experiment = load_config(config) if config else base or Experiment()
    given = {flag: getattr(args, flag) for flag in FLAGS if hasattr(args, flag)}
    if not config and base is None and given.get("data"):
        # Text and sound start from their kind's recipe; the flags then change it.
        from tfinetune.runs.modalities import data_modality, with_recipe

        columns = (given.get("text_column") or "text", given.get("path_column") or "path")
        experiment, _ = with_recipe(experiment, data_modality(str(given["data"]), *columns))
    if "augment" in given:
        given["augment"] = parse_augment(given["augment"]) or "none"
    experiment = apply_flags(experiment, given)
    assignments = dict(parse_assignment(a) for a in getattr(args, "assignments", None) or [])
    experiment = experiment.with_values(assignments)
    if not experiment.data.train:
        raise ValueError(
            "No training data: pass --data DIR (or --csv FILE), or an experiment file with "
            "data.train (--config FILE)."
        )
    return experiment


def _train(args: argparse.Namespace) -> int:
    from tfinetune.atomic import partial_folder, written_kind
    from tfinetune.runs.experiment import load_config
    from tfinetune.runs.train import headline, train_run

    options = {"overwrite": getattr(args, "overwrite", False),
               "verbose": 0 if getattr(args, "quiet", False) else 1}  # fmt: skip
    if getattr(args, "resume", None):
        run, partial = Path(args.resume), partial_folder(args.resume)
        if written_kind(partial) != "run":
            if written_kind(run) == "run":
                print(f"{run} is a finished run: nothing to resume, nothing retrained.")
                return 0
            raise FileNotFoundError(
                f"{str(run)!r} is not a run to resume: there is no unfinished run "
                f"({partial.name}) beside it. Give the folder `tfinetune train --out` named."
            )
        experiment = experiment_from_args(args, base=load_config(partial / "config.toml"))
        options |= {"resume": True, "allow_changes": getattr(args, "allow_changes", False)}
    elif getattr(args, "out", None):
        run, experiment = Path(args.out), experiment_from_args(args)
    else:
        raise ValueError("Give --out RUN, the run folder to write (or --resume RUN).")
    result = train_run(experiment, run, **options)
    line = headline(result.report)
    print(
        f"Done in {result.seconds:.0f} s: {line + ', ' if line else ''}run folder {result.out_dir}"
    )
    return 0


def _init(args: argparse.Namespace) -> int:
    from tfinetune.atomic import write_text
    from tfinetune.runs.experiment import Experiment, to_toml

    path = Path(args.path)
    if path.exists():
        raise FileExistsError(f"{str(path)!r} exists; choose a new file name.")
    example = Experiment()
    example.data.train = "photos/train"
    write_text(path, "# A tfinetune experiment: tfinetune train --config " + path.name
               + " --out runs/first\n\n" + to_toml(example))  # fmt: skip
    print(f"Wrote {path}: edit data.train, then `tfinetune train --config {path} --out RUN`.")
    return 0


def _lr_find(args: argparse.Namespace) -> int:
    from tfinetune.runs.lr_find import lr_find_run

    result = lr_find_run(
        args.data,
        args.out,
        backbone=args.backbone,
        weights=None if args.weights == "none" else args.weights,
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
    from tfinetune.runs.evaluate import evaluate_run

    report = evaluate_run(
        args.model,
        args.data,
        args.out,
        batch_size=args.batch_size,
        tta=args.tta,
        overwrite=args.overwrite,
    )
    print(report)
    print(f"Wrote metrics.json, summary.md and figures to {args.out}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from tfinetune.data.audio import decode_audio
    from tfinetune.data.files import find_bad_files
    from tfinetune.data.images import decode_image
    from tfinetune.runs.modalities import print_text_predictions
    from tfinetune.serving.inference import load_classifier

    classifier = load_classifier(args.model)
    if classifier.modality == "text":
        return print_text_predictions(classifier, args.images)
    decode = {"audio": decode_audio}.get(classifier.modality, decode_image)
    missing = {p: "a folder, not a file" if os.path.isdir(p) else "file not found"
               for p in args.images if not os.path.isfile(p)}  # fmt: skip
    found = [p for p in args.images if p not in missing]
    bad = {b.path: b.reason for b in find_bad_files(found, decode=decode)} | missing
    good = [p for p in args.images if p not in bad]
    probs = dict(zip(good, classifier.predict_files(good, tta=args.tta), strict=True))
    for path in args.images:
        if path in bad:
            print(json.dumps({"path": path, "error": bad[path]}))
        else:
            print(json.dumps({"path": path, **classifier.describe(probs[path])}))
    return 1 if bad else 0


def _export(args: argparse.Namespace) -> int:
    from tfinetune.runs.export import export_run
    from tfinetune.serving.verify import VerificationError

    try:
        path, verification = export_run(
            args.run,
            args.out,
            format=args.format,
            version=args.version,
            quantize=args.quantize,
            top_k=args.top_k,
            data=args.data,
            overwrite=args.overwrite,
        )
    except VerificationError as err:
        print(f"tfinetune: error: {err}\nNothing was written.", file=sys.stderr)
        return EXIT_FAILED
    print(verification)
    print(f"Wrote {path}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from tfinetune.serving.verify import verify_artifact

    verification = verify_artifact(args.artifact, args.data, args.reference, raise_on_failure=False)
    print(verification)
    return 0 if verification.passed else EXIT_FAILED


def _doctor(args: argparse.Namespace) -> int:
    from tfinetune.cli.doctor import diagnose, format_diagnosis

    facts = diagnose()
    print(json.dumps(facts, indent=2) if args.json else format_diagnosis(facts))
    return 0


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
    if not args.names:
        from tfinetune.runs.modalities import print_hub_models

        print_hub_models()
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


def _after_interrupt(args: argparse.Namespace) -> str:
    """What an interrupt left: nothing half-written, and for a run, how to resume it."""
    run = getattr(args, "resume", None) or getattr(args, "out", None)
    if args.command in ("train", "distill") and run:
        from tfinetune.atomic import partial_folder

        if (partial_folder(run) / "checkpoints").is_dir():
            return f"resume from the last completed epoch with: tfinetune train --resume {run}"
    return "nothing was left half-written."


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: the arguments (default: `sys.argv[1:]`).

    Example:
    >>> main(["predict", "/no/such/model", "x.jpg"])  # doctest: +SKIP
    tfinetune: error: No SavedModel found at '/no/such/model' ...
    """
    args = build_parser().parse_args(argv)
    use_backend(getattr(args, "backend", None))  # before TensorFlow, which imports Keras
    quiet_tensorflow(args.verbose or os.environ.get(VERBOSE_ENV) == "1")
    handlers = {
        "train": _train,
        "distill": _train,
        "init": _init,
        "lr-find": _lr_find,
        "convert": _convert,
        "evaluate": _evaluate,
        "predict": _predict,
        "export": _export,
        "verify": _verify,
        "backbones": _backbones,
        "doctor": _doctor,
        "demo": _demo,
    }
    if args.debug:
        return handlers[args.command](args)
    try:
        with _sigterm_as_interrupt():
            return handlers[args.command](args)
    except KeyboardInterrupt:
        print(f"tfinetune: interrupted; {_after_interrupt(args)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except USER_ERRORS as err:
        print(f"tfinetune: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as err:
        print(f"tfinetune: error: {_describe_os_error(err)}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as err:  # anything else: one line, the traceback with --debug
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        print(
            f"tfinetune: error: {type(err).__name__}: {first} (run again with --debug for "
            "the traceback)",
            file=sys.stderr,
        )
        return EXIT_FAILED


def _describe_os_error(err: OSError) -> str:
    """One line for an error of the environment: what happened, where, and what to do."""
    where = f" ({err.filename})" if err.filename else ""
    hints = {
        errno.ENOSPC: "free some disk space, or write to another disk",
        errno.EACCES: "choose a folder you may write to, or fix its permissions",
        errno.EROFS: "choose a folder on a writable disk",
        errno.EDQUOT: "free some of your disk quota",
    }
    hint = hints.get(err.errno, "check the path and try again")
    return f"{err.strerror or err}{where}: {hint}."


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """Handle SIGTERM (a scheduler stopping the job) like Ctrl-C: clean up, exit 130.

    Both also ask the training guard to stop: an interrupt that Python delivers inside a
    destructor is lost, and the guard raises it again at the next batch.
    """

    def interrupt(signum, frame):
        guards = sys.modules.get("tfinetune.training.guards")
        if guards is not None:
            guards.request_stop()
        raise KeyboardInterrupt

    try:
        previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
