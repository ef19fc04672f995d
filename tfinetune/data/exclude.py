"""Files a person chose to leave out of a run: an `issues.csv` from `tfinetune clean`, or a
plain list of paths. Nothing is deleted or moved; the run's manifest names each file left
out, with the reason."""

from __future__ import annotations

import csv
import os
from pathlib import Path

# The columns `tfinetune clean` writes to issues.csv, in order.
ISSUE_COLUMNS = ("path", "split", "issue", "score", "label", "suggested_label", "group",
                 "action", "detail")  # fmt: skip
EXCLUDE = "exclude"


def read_exclusions(path: str | os.PathLike) -> dict[str, str]:
    """The files to leave out, by real path, with their issues, from a CSV with a `path` column.

    With an `action` column (an `issues.csv` from `tfinetune clean`), only rows whose action
    is `exclude` count: edit a row's action to keep its file. Relative paths are relative to
    the CSV's folder.

    Args:
        path: the CSV file.

    Example:
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> p = os.path.join(d, "issues.csv")
    >>> _ = open(p, "w").write("path,issue,action\\na.jpg,leak,exclude\\nb.jpg,outlier,review\\n")
    >>> [(os.path.basename(k), v) for k, v in read_exclusions(p).items()]
    [('a.jpg', 'excluded by issues.csv: leak')]
    """
    source = Path(path)
    try:
        with open(source, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
            columns = rows[0].keys() if rows else []
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ValueError(
            f"Cannot read the exclusion list {str(path)!r} ({type(err).__name__}: {err}). Pass "
            "the issues.csv that `tfinetune clean` wrote, or a CSV with a `path` column."
        ) from err
    if rows and "path" not in columns:
        raise ValueError(
            f"The exclusion list {str(path)!r} has no `path` column (columns: "
            f"{', '.join(columns)}). Pass the issues.csv that `tfinetune clean` wrote, or a "
            "CSV with a `path` column."
        )
    issues: dict[str, list[str]] = {}
    for row in rows:
        if "action" in row and (row["action"] or "").strip() != EXCLUDE:
            continue
        file = Path(row["path"] or "")
        real = os.path.realpath(file if file.is_absolute() else source.parent / file)
        found = issues.setdefault(real, [])
        issue = (row.get("issue") or "listed").strip()
        found += [] if issue in found else [issue]
    return {
        path: f"excluded by {source.name}: {', '.join(found)}" for path, found in issues.items()
    }
