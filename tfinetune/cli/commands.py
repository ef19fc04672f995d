"""What each `tfinetune` command does, once its arguments are parsed: one function per command.

Each takes the parsed arguments, imports what it needs (TensorFlow only where the job needs
it), prints its result and returns the exit code; `tfinetune.cli.main` picks one and turns
errors into one line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from tfinetune.cli.values import parse_augment

EXIT_FAILED = 1


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
    if path.exists() and not args.force:
        raise FileExistsError(f"{str(path)!r} exists; choose a new file name, or add --force.")
    example = Experiment()
    example.data.train = "photos/train"
    write_text(path, "# A tfinetune experiment: tfinetune train --config " + path.name
               + " --out runs/first\n\n" + to_toml(example))  # fmt: skip
    print(f"Wrote {path}: edit data.train, then `tfinetune train --config {path} --out RUN`.")
    return 0


def _lr_find(args: argparse.Namespace) -> int:
    from tfinetune.runs.lr_find import lr_find_run

    result = lr_find_run(
        experiment_from_args(args),
        args.out,
        train_groups=args.train_groups,
        num_steps=args.steps,
        start_lr=args.start_lr,
        end_lr=args.end_lr,
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
        workers=args.workers,
        resume=args.resume,
        overwrite=args.overwrite,
    )
    for name, count in manifest["counts"].items():
        print(f"{name}: {count} images in {len(manifest['shards'][name])} shard(s)")
    for bad in manifest["bad_files"]:
        print(f"skipped {bad['path']}: {bad['reason']}")
    print(f"Wrote {args.out}/dataset.json and the shards")
    return 0


def _clean(args: argparse.Namespace) -> int:
    from tfinetune.cleaning import find_data_issues

    find_data_issues(
        args.data,
        args.val_data,
        args.out,
        backbone=args.backbone,
        weights=None if args.weights.lower() == "none" else args.weights,
        image_size=args.image_size,
        folds=args.folds,
        seed=args.seed,
        max_bits=args.max_bits,
        min_cosine=args.min_cosine,
        overwrite=args.overwrite,
        verbose=1,
    )
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from tfinetune.runs.evaluate import evaluate_run

    report = evaluate_run(
        args.model,
        args.out,
        data=args.data,
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
    paths = _files_in(args.images)
    missing = {p: "file not found" for p in paths if not os.path.isfile(p)}
    found = [p for p in paths if p not in missing]
    bad = {b.path: b.reason for b in find_bad_files(found, decode=decode)} | missing
    good = [p for p in paths if p not in bad]
    probs = dict(zip(good, classifier.predict_files(good, tta=args.tta), strict=True))
    for path in paths:
        if path in bad:
            print(json.dumps({"path": path, "error": bad[path]}))
        else:
            print(json.dumps({"path": path, **classifier.describe(probs[path], args.top_k)}))
    return 1 if bad else 0


def _files_in(arguments: list[str]) -> list[str]:
    """The files named, with a folder standing for every file in it (nested, sorted, junk
    such as `.DS_Store` left out)."""
    from tfinetune.data.images import is_junk

    files = []
    for argument in arguments:
        if not os.path.isdir(argument):
            files.append(argument)
            continue
        for folder, subfolders, names in os.walk(argument):
            subfolders[:] = sorted(d for d in subfolders if not is_junk(d))
            files += [os.path.join(folder, n) for n in sorted(names) if not is_junk(n)]
    return files


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
    # The catalogue's own facts: nothing is built, and neither Keras nor TensorFlow loaded.
    from tfinetune.models.catalogue import CATALOGUE, listing
    from tfinetune.models.specs import HUB_MODELS

    rows = [listing(name) for name in args.names or sorted(CATALOGUE)]
    print(
        f"{'name':<22}{'size':>6}{'parameters':>14}  {'normalisation':<15}{'groups':>7}  imagenet"
    )
    for r in rows:
        print(
            f"{r['name']:<22}{r['default_size']:>6}{r['parameters']:>14,}  "
            f"{r['normalization']:<15}{r['layer_groups']:>7}  {'yes' if r['imagenet'] else 'no'}"
        )
    if not args.names:
        print("\nTF Hub backbones (--backbone hub:<handle or SavedModel folder>), by input:")
        for kind, models in HUB_MODELS.items():
            for handle, contract in models:
                print(f"  {kind:<6}{handle}\n        {contract}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from tfinetune.cli.demo import run_demo

    run_demo(args.out, weights=args.weights, labels_per_class=args.labels_per_class, seed=args.seed)
    return 0


HANDLERS = {
    "train": _train,
    "distill": _train,
    "init": _init,
    "lr-find": _lr_find,
    "convert": _convert,
    "clean": _clean,
    "evaluate": _evaluate,
    "predict": _predict,
    "export": _export,
    "verify": _verify,
    "backbones": _backbones,
    "doctor": _doctor,
    "demo": _demo,
}
