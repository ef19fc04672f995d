"""Odd and hostile input files (#37): CSV tables and WAV files are decoded, or refused with
the file and the line or the reason, within bounded memory, never silently mis-read."""

from __future__ import annotations

import csv

import pytest

from tfinetune.cli import main
from tfinetune.data.synthetic import write_shapes_folder
from tfinetune.data.tables import parse_labels, read_csv_files

TINY = ["--backbone", "convnet_tiny", "--weights", "none", "--image-size", "32"]
TINY += ["--epochs", "0", "--freeze-epochs", "1", "--quiet"]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = write_shapes_folder(tmp_path_factory.mktemp("csv") / "img", ["ring", "cross"], 4,
                               size=32)  # fmt: skip
    return sorted(root.rglob("*.png"))


def _table(tmp_path, images, extra: bytes) -> str:
    rows = "".join(f"{p},{p.parent.name}\n" for p in images).encode()
    path = tmp_path / "labels.csv"
    path.write_bytes(b"path,label\n" + rows + extra)
    return str(path)


def test_a_quoted_newline_in_a_label_is_refused_with_its_row(images, tmp_path, capsys):
    """Before: the class 'ri\\nng' was accepted and labels.txt gained a line per part, so the
    served labels no longer matched the model's outputs."""
    table = _table(tmp_path, images, f'{images[0]},"ri\nng"\n'.encode())
    assert main(["train", "--csv", table, "--out", str(tmp_path / "run"), *TINY]) == 2
    err = capsys.readouterr().err
    assert f"Row 9 ('{images[0]}'): Class name 'ri\\nng' cannot be stored one per line" in err
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match=r"Row 2 \('b'\): Class name ' dog'"):
        parse_labels(["a", "b"], ["cat", " dog"])


def test_a_field_over_the_csv_limit_is_refused_with_its_line(images, tmp_path):
    table = _table(tmp_path, images, b"x" * (10 * 2**20) + b",ring\n")
    limit = csv.field_size_limit()
    with pytest.raises(ValueError, match=rf"labels.csv', line 10: field larger than field limit "
                       rf"\({limit}\)\. Fix that line"):  # fmt: skip
        read_csv_files(table)


def test_nul_bytes_in_a_path_are_a_file_not_found_not_a_crash(images, tmp_path):
    files = read_csv_files(_table(tmp_path, images, b"a\x00b.png,ring\n"))
    assert len(files) == len(images)
    assert [(b.path.endswith("a\x00b.png"), b.reason) for b in files.bad_files] == [
        (True, "file not found")
    ]
