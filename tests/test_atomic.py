"""Outputs that appear complete or not at all, one writer per folder, overwrite semantics."""

import json
import subprocess
import sys

import pytest

from tfinetune.atomic import (
    MARKER,
    check_output_folder,
    folder_lock,
    replace_into,
    staged_folder,
    write_text,
)


def _files(folder):
    return sorted(p.name for p in folder.iterdir())


def test_a_failure_inside_a_staged_folder_leaves_the_earlier_folder_untouched(tmp_path):
    out = tmp_path / "run"
    with staged_folder(out, "run") as stage:
        (stage / "model.keras").write_text("first")
    with pytest.raises(RuntimeError, match="disk"), staged_folder(out, "run", overwrite=True) as s:
        (s / "model.keras").write_text("half")
        raise RuntimeError("disk went away")
    assert (out / "model.keras").read_text() == "first"
    assert _files(tmp_path) == ["run"]  # no temporary folder left beside it


def test_overwrite_replaces_a_folder_as_a_whole(tmp_path):
    out = tmp_path / "run"
    with staged_folder(out, "run") as stage:
        (stage / "metrics.json").write_text("{}")
        (stage / "model.keras").write_text("old")
    with staged_folder(out, "run", overwrite=True) as stage:
        (stage / "model.keras").write_text("new")
    assert _files(out) == [MARKER, "model.keras"]  # nothing of the old run survives
    assert json.loads((out / MARKER).read_text())["kind"] == "run"


def test_overwrite_never_removes_files_tfinetune_did_not_write(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="tfinetune did not write"):
        check_output_folder(mine, overwrite=True)
    with pytest.raises(FileExistsError, match="is not empty"):
        check_output_folder(mine, overwrite=False)
    assert (mine / "thesis.txt").read_text() == "keep"


def test_an_output_of_one_kind_never_replaces_another(tmp_path):
    run = tmp_path / "run"
    with staged_folder(run, "run") as stage:
        (stage / "metrics.json").write_text("{}")
    with pytest.raises(FileExistsError, match="holds a tfinetune run"):
        check_output_folder(run, overwrite=True, kind="evaluation")


def test_a_file_written_through_replace_into_appears_whole_or_not_at_all(tmp_path):
    target = tmp_path / "model.keras"
    write_text(target, "v1")

    def crash(path):
        path.write_text("partial")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        replace_into(target, crash, suffix=".keras")
    assert target.read_text() == "v1" and _files(tmp_path) == ["model.keras"]


def test_a_second_writer_is_refused_by_name_and_a_stale_lock_is_taken_over(tmp_path):
    out = tmp_path / "run"
    lock = tmp_path / ".run.lock"
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock.write_text(str(other.pid))
        refused = pytest.raises(FileExistsError, match=rf"process {other.pid}\) is writing")
        with refused, folder_lock(out):
            pass
    finally:
        other.kill()
        other.wait()
    with folder_lock(out):  # the process that held it is gone: the lock is taken over
        assert lock.read_text() != str(other.pid)
    assert not lock.exists()
