"""The `tfinetune` command line, and the whole runs it drives over the public functions.

- `arguments`: the argument parser of each command (standard library only).
- `main`: runs a command, with one-line errors and exit codes; imports TensorFlow only
  once a command runs.
- `runs`: `train_run` (a folder or CSV in, a run folder out; distillation with a teacher)
  and `evaluate_run`; `run_data`: what a run reads (data, a teacher).
- `lr_find`: `lr_find_run`, the learning-rate finder over a folder.
- `demo`: `tfinetune demo`, the whole workflow offline.

Importing this package does not import TensorFlow.
"""

from tfinetune.cli.main import main

__all__ = ["main"]
