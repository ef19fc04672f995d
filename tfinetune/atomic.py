"""Writing so that nothing is half-written: files and folders appear complete or not at all.

- `write_text` and `replace_into` write under a temporary name beside the target and rename
  it into place (a rename within a folder is atomic on POSIX file systems).
- `staged_folder` builds a whole output folder under a hidden temporary name and moves it
  into place at the end; a failed or interrupted command leaves the previous folder as it
  was. `overwrite` replaces only a folder tfinetune wrote (it holds `MARKER`), as a whole.
- `folder_lock` lets one command at a time write a folder; another gets a clear refusal
  naming the process that holds it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

# Every folder tfinetune writes holds this file, saying what wrote it.
MARKER = ".tfinetune"


def _temporary_beside(path: Path, suffix: str = "") -> Path:
    return path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}{suffix}"


def replace_into(
    path: str | os.PathLike, write: Callable[[Path], object], suffix: str = ""
) -> Path:
    """Call `write(temporary_path)`, then rename the result to `path`; clean up on failure.

    Args:
        path: the final file name.
        write: writes the file it is given (for example `model.save`).
        suffix: an ending the temporary name must keep (Keras wants `.keras`).

    Example:
    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "x.txt"
    >>> replace_into(p, lambda t: t.write_text("done")).read_text()
    'done'
    """
    path = Path(path)
    temporary = _temporary_beside(path, suffix)
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            _remove(temporary)
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write a text file atomically.

    Args:
        path: the file.
        text: its content.

    Example:
    >>> import tempfile
    >>> write_text(Path(tempfile.mkdtemp()) / "a.txt", "hi").read_text()
    'hi'
    """
    return replace_into(path, lambda t: t.write_text(text))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def written_by_tfinetune(folder: str | os.PathLike) -> bool:
    """Whether a folder is one tfinetune wrote (it holds the marker file).

    Args:
        folder: the folder.

    Example:
    >>> written_by_tfinetune("/no/such/folder")
    False
    """
    return (Path(folder) / MARKER).is_file()


def written_kind(folder: str | os.PathLike) -> str | None:
    """What tfinetune wrote a folder as ("run", "evaluation", ...), or None.

    Args:
        folder: the folder.

    Example:
    >>> written_kind("/no/such/folder") is None
    True
    """
    try:
        return json.loads((Path(folder) / MARKER).read_text()).get("kind")
    except (OSError, ValueError, AttributeError):
        return None


def check_output_folder(
    folder: str | os.PathLike, overwrite: bool, kind: str | None = None
) -> Path:
    """Refuse an output folder that cannot be written: a file, or a folder not to replace.

    A missing or empty folder is fine; a non-empty one only with `overwrite`, and only when
    tfinetune wrote it, as the same `kind` of output (so a user's own files, or a training
    run under an evaluation, are never removed).

    Args:
        folder: the output folder.
        overwrite: replace a folder tfinetune wrote before.
        kind: the kind of output about to be written; a folder of another kind is refused.

    Example:
    >>> import tempfile
    >>> check_output_folder(tempfile.mkdtemp(), overwrite=False).is_dir()
    True
    """
    out = Path(folder)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"Output folder {str(out)!r} is a file. Choose a folder.")
    if out.is_dir() and any(out.iterdir()):
        found = written_kind(out)
        if found is not None and kind is not None and found != kind:
            raise FileExistsError(
                f"Output folder {str(out)!r} holds a tfinetune {found}, which this {kind} "
                "will not replace. Choose another folder."
            )
        if not overwrite:
            raise FileExistsError(
                f"Output folder {str(out)!r} is not empty. Choose a new folder or pass "
                "overwrite=True to replace an earlier tfinetune output."
            )
        if found is None:
            raise FileExistsError(
                f"Output folder {str(out)!r} holds files tfinetune did not write, so "
                "--overwrite will not remove them. Choose a new folder or empty it yourself."
            )
    return out


@contextlib.contextmanager
def staged_folder(folder: str | os.PathLike, kind: str, overwrite: bool = False) -> Iterator[Path]:
    """Build an output folder under a temporary name; move it into place when complete.

    On success the folder appears under its name with everything in it (an earlier one,
    with `overwrite`, is replaced as a whole). On any error or interrupt the temporary
    folder is removed and an earlier folder stays as it was.

    Args:
        folder: the final folder.
        kind: what writes it ("run", "evaluation", ...), recorded in the marker file.
        overwrite: replace an earlier folder that tfinetune wrote as the same kind.

    Example:
    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "out"
    >>> with staged_folder(target, "example") as stage:
    ...     _ = (stage / "a.txt").write_text("a")
    >>> sorted(p.name for p in target.iterdir())
    ['.tfinetune', 'a.txt']
    """
    out = check_output_folder(folder, overwrite, kind)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = _temporary_beside(out)
    stage.mkdir()
    try:
        _mark(stage, kind)
        yield stage
        _move_into_place(stage, out)
    finally:
        if stage.exists():
            _remove(stage)


def _mark(folder: Path, kind: str) -> None:
    (folder / MARKER).write_text(json.dumps({"written_by": "tfinetune", "kind": kind}) + "\n")


def _move_into_place(stage: Path, out: Path) -> None:
    """Rename a finished folder to its name, replacing an earlier one as a whole."""
    old = _temporary_beside(out, ".old")
    if out.exists():
        os.replace(out, old)
    os.replace(stage, out)
    _remove(old)


def partial_folder(folder: str | os.PathLike) -> Path:
    """Where an unfinished output waits to be resumed: `NAME.partial` beside `NAME`.

    Args:
        folder: the output's final folder.

    Example:
    >>> partial_folder("runs/flowers").name
    'flowers.partial'
    """
    out = Path(folder)
    return out.parent / f"{out.name}.partial"


@contextlib.contextmanager
def resumable_folder(
    folder: str | os.PathLike,
    kind: str,
    overwrite: bool = False,
    resume: bool = False,
    keep: str = "checkpoints",
) -> Iterator[Path]:
    """Like `staged_folder`, but under `NAME.partial`, kept when it holds `keep` to resume.

    The folder is built as `NAME.partial` beside `NAME` and renamed to `NAME` when complete.
    On an error, an interrupt or a kill, it stays if it holds `keep` (a checkpoint folder),
    so that `resume=True` continues in it; otherwise it is removed. An earlier `NAME` stays
    as it was until the new one is complete.

    Args:
        folder: the final folder.
        kind: what writes it, recorded in the marker file.
        overwrite: replace an earlier `NAME`, and start over an unfinished `NAME.partial`.
        resume: continue in the existing `NAME.partial`.
        keep: the entry whose presence makes an unfinished folder worth keeping.

    Example:
    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "run"
    >>> with resumable_folder(target, "example") as stage:
    ...     stage.name
    'run.partial'
    >>> target.is_dir()
    True
    """
    out, partial = Path(folder), partial_folder(folder)
    if resume:
        if written_kind(partial) != kind:
            done = f"; {str(out)!r} is a finished {kind}" if written_kind(out) == kind else ""
            raise FileNotFoundError(
                f"Nothing to resume at {str(out)!r}: no unfinished {kind} "
                f"({partial.name}) beside it{done}."
            )
    else:
        check_output_folder(out, overwrite, kind)
        if partial.exists():
            if not overwrite or written_kind(partial) != kind:
                raise FileExistsError(
                    f"An unfinished {kind} waits in {str(partial)!r}: resume it (--resume "
                    f"{out}), or pass --overwrite to start again."
                )
            _remove(partial)
        partial.mkdir(parents=True)
        _mark(partial, kind)
    try:
        yield partial
        _move_into_place(partial, out)
    except BaseException:
        if not (partial / keep).exists():
            _remove(partial)
        raise


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike) -> Iterator[None]:
    """Let one process at a time write `folder` (a lock file beside it holds its PID).

    A lock left by a process that no longer runs is taken over.

    Args:
        folder: the folder to write.

    Example:
    >>> import tempfile
    >>> with folder_lock(Path(tempfile.mkdtemp()) / "out"):
    ...     pass
    """
    target = Path(folder)
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = target.parent / f".{target.name}.lock"
    for _ in range(2):
        try:
            descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            try:
                holder = int(lock.read_text().strip() or 0)
            except (OSError, ValueError):
                holder = 0
            if holder and _process_alive(holder):
                raise FileExistsError(
                    f"Another tfinetune command (process {holder}) is writing "
                    f"{str(target)!r}. Wait for it to finish, or choose another folder."
                ) from None
            lock.unlink(missing_ok=True)  # left by a process that is gone
    else:
        raise FileExistsError(f"Could not lock {str(target)!r}: {str(lock)!r} keeps coming back.")
    try:
        os.write(descriptor, str(os.getpid()).encode())
        os.close(descriptor)
        yield
    finally:
        lock.unlink(missing_ok=True)
