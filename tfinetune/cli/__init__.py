"""The `tfinetune` command line: argument parsing, printing and the demo, over `tfinetune.runs`.

- `arguments`: the argument parser of each command (standard library only).
- `main`: runs a command, with one-line errors and exit codes; imports TensorFlow only
  once a command runs.
- `doctor`: `tfinetune doctor`, what this machine offers and what a run would use.
- `demo`: `tfinetune demo`, the whole workflow offline.

Nothing here is called from Python code or notebooks: they use `tfinetune.runs` (and the
public names in `tfinetune`). Importing this package does not import TensorFlow.
"""

from tfinetune.cli.main import main

__all__ = ["main"]
