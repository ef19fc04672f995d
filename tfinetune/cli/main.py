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
import os
import signal
import sys
from collections.abc import Sequence

from tfinetune import use_backend
from tfinetune.cli.arguments import build_parser
from tfinetune.cli.commands import EXIT_FAILED, HANDLERS
from tfinetune.logs import VERBOSE_ENV, quiet_tensorflow, show_tensorflow_log

# Exit codes: 0 done, 1 failed (the environment or an unexpected error), 2 bad input
# (including argparse's own usage errors), 130 interrupted (Ctrl-C or SIGTERM).
EXIT_BAD_INPUT, EXIT_INTERRUPTED = 2, 130
# Commands that load neither TensorFlow nor Keras: they answer at once.
WITHOUT_TENSORFLOW = ("backbones",)
# A user's mistake: the message says what was wrong and what to do.
USER_ERRORS = (ValueError, TypeError, FileNotFoundError, FileExistsError, NotADirectoryError,
               IsADirectoryError, FloatingPointError)  # fmt: skip


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
    parser = build_parser()
    args = parser.parse_args(argv)
    use_backend(getattr(args, "backend", None))  # before TensorFlow, which imports Keras
    verbose = args.verbose or os.environ.get(VERBOSE_ENV) == "1"
    if verbose:
        show_tensorflow_log()
    elif args.command not in WITHOUT_TENSORFLOW:
        quiet_tensorflow()
    if args.debug:
        return HANDLERS[args.command](args)
    try:
        with _sigterm_as_interrupt():
            return HANDLERS[args.command](args)
    except KeyboardInterrupt:
        print(f"tfinetune: interrupted; {_after_interrupt(args)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except USER_ERRORS as err:
        print(f"tfinetune: error: {parser.in_flags(str(err))}", file=sys.stderr)
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
