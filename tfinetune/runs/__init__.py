"""Whole runs over the five steps: what the command line drives, callable from Python.

- `schema`: typed dataclasses from and to plain values, every key and type checked.
- `experiment`: `Experiment`, the schema of an experiment file, read, written and checked.
- `flags`: the command-line flags of a run, made from the experiment's fields.
- `checks`: `check_values`, each value in its range or set before any data is read.
- `overrides`: `apply_flags`, command-line flags and `--set` on an experiment.
- `modalities`: the backbone and recipe a run uses for images, text or sound.
- `sources`: what a run reads: its data, a teacher, a trained run's model.
- `folder`: the run folder's record (config, environment, manifest).
- `card`: the run folder's `README.md`, a model card.
- `validation`: the validation report of a run, and `calibrate`.
- `build`: what a run builds before training: the backbone for its data, datasets, model.
- `skipped`: files that failed to decode while training or evaluating, named in the manifest.
- `workers`: several worker processes: the chief writes the run folder, the others scratch.
- `train`: `train_run`, a folder or CSV in and a complete run folder out.
- `evaluate`: `evaluate_run`, a model scored on labelled data.
- `export`: `export_run`, a run's model as a verified SavedModel or TFLite file.
- `lr_find`: `lr_find_run`, the learning-rate finder on the data and model a run trains.

Runs import every step (data, models, training, evaluation, serving) and never `cli`.
Importing this package does not import TensorFlow.
"""
