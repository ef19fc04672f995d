"""The `tfinetune` command line: argument parsing, printing and the demo, over `tfinetune.runs`.

- `arguments`: the flags of each command (no TensorFlow), with `values`, the types that
  turn a flag's text into its value, and `parser`, the parser that answers a mistake in
  one line with the close match and tells Python-worded messages in flags.
- `commands`: what each command does once its arguments are parsed; `examples`, the
  example each command's `--help` ends with.
- `main`: runs a command, with one-line errors and exit codes; imports TensorFlow only
  once a command runs.
- `doctor`: `tfinetune doctor`, what this machine offers and what a run would use.
- `demo`: `tfinetune demo`, the whole workflow offline.

Nothing here is called from Python code or notebooks: they use `tfinetune.runs` (and the
public names in `tfinetune`). Importing this package does not import TensorFlow.
"""

from tfinetune.cli.main import main

__all__ = ["main"]
