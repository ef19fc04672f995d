"""The cleaning report folder: `issues.csv` for machines (`tfinetune train --exclude`),
`report.md` with a thumbnail grid per issue type for people, and `summary.json`."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from tfinetune.atomic import staged_folder
from tfinetune.cleaning.find import ISSUE_TYPES, REPORT_KIND, DataIssues
from tfinetune.data.exclude import EXCLUDE, ISSUE_COLUMNS
from tfinetune.evaluation.plots import thumbnail

GRID_SIZE = 24  # thumbnails shown per issue type
_WHAT = {
    "leak": "near-duplicates across splits (validation numbers read high)",
    "duplicate": "near-duplicates within a split",
    "label_issue": "likely wrong labels (confident learning on out-of-fold predictions)",
    "outlier": "far from every class (off-topic or unusual images)",
}


def summary(found: DataIssues) -> dict:
    """Counts per issue type: images listed, groups, and images the report would leave out.

    Args:
        found: what `find_data_issues` found.
    """
    out: dict = {"images": found.counts, "seconds": round(found.seconds, 1)}
    for issue in ISSUE_TYPES:
        rows = found.of(issue)
        out[issue] = {
            "images": len(rows),
            "groups": len({r["group"] for r in rows if r["group"]}),
            "to_exclude": sum(r["action"] == EXCLUDE for r in rows),
        }
    return out


def summary_lines(found: DataIssues) -> list[str]:
    """One line per issue type, as `tfinetune clean` prints them.

    Args:
        found: what `find_data_issues` found.
    """
    counts = summary(found)
    lines = []
    for issue in ISSUE_TYPES:
        c = counts[issue]
        groups = f" in {c['groups']} groups" if c["groups"] else ""
        lines.append(f"{issue:12s} {c['images']:5d} images{groups}, {c['to_exclude']} to "
                     f"exclude: {_WHAT[issue]}")  # fmt: skip
    return lines


def _grid(rows: list[dict], title: str, path: Path) -> None:
    shown = rows[:GRID_SIZE]
    cols = min(6, max(len(shown), 1))
    fig = Figure(figsize=(2.4 * cols, 2.8 * max(1, -(-len(shown) // cols))), layout="constrained")
    axes = np.atleast_1d(fig.subplots(max(1, -(-len(shown) // cols)), cols)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, row in zip(axes, shown, strict=False):
        ax.imshow(thumbnail(row["path"]))
        name = os.path.basename(row["path"])[-22:]
        caption = f"{name}\n{row['split']} {row['label']}"
        caption += f" -> {row['suggested_label']}" if row["suggested_label"] else ""
        caption += f"\ngroup {row['group']}" if row["group"] else f"\nscore {row['score']}"
        ax.set_title(caption, fontsize=7)
    fig.suptitle(title)
    fig.savefig(path, dpi=80)


def write_report(
    found: DataIssues, out: str | os.PathLike, overwrite: bool = False, verbose: int = 1
) -> Path:
    """Write the report folder, all at once (nothing under its name until it is complete).

    Args:
        found: what `find_data_issues` found.
        out: the report folder.
        overwrite: replace an earlier report in `out`.
        verbose: print the summary lines and where the report is.
    """
    with staged_folder(out, REPORT_KIND, overwrite) as stage:
        text = io.StringIO()
        writer = csv.DictWriter(text, ISSUE_COLUMNS)
        writer.writeheader()
        writer.writerows(found.rows)
        (stage / "issues.csv").write_text(text.getvalue(), encoding="utf-8")
        (stage / "summary.json").write_text(json.dumps(summary(found), indent=2) + "\n")
        page = ["# Data issues", "", f"{sum(found.counts.values())} images "
                f"({', '.join(f'{n} {s}' for s, n in found.counts.items())}) in "
                f"{found.seconds:.0f} s. Nothing in the data folders was changed.", "", "```",
                *summary_lines(found), "```", "",
                "`tfinetune train --exclude issues.csv` leaves out the rows whose action is "
                "`exclude`; edit a row's action to keep its file.", ""]  # fmt: skip
        for issue in ISSUE_TYPES:
            rows = found.of(issue)
            if rows:
                _grid(rows, f"{issue}: {_WHAT[issue]}", stage / f"{issue}.png")
                page += [f"## {issue} ({len(rows)})", "", f"![{issue}]({issue}.png)", ""]
        (stage / "report.md").write_text("\n".join(page), encoding="utf-8")
    if verbose:
        print("\n".join(summary_lines(found)))
        print(f"Report: {Path(out) / 'report.md'}; leave them out with: tfinetune train "
              f"--exclude {Path(out) / 'issues.csv'}")  # fmt: skip
    return Path(out)
