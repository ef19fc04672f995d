"""Data cleaning: near-duplicates and leaks between splits, likely label errors, outliers.

- `features`: each image's perceptual hash and backbone embedding, in one pass.
- `detect`: the detectors (duplicate groups, confident learning, outliers).
- `find`: `find_data_issues`, which runs them all.
- `report`: the report folder (`issues.csv`, `report.md`, `summary.json`).
"""

from typing import Any

__all__ = ["DataIssues", "find_data_issues"]


def __getattr__(name: str) -> Any:
    # Imported on first use, so that the thresholds in `detect` load without TensorFlow.
    if name in __all__:
        from tfinetune.cleaning import find

        return getattr(find, name)
    raise AttributeError(f"module 'tfinetune.cleaning' has no attribute {name!r}")
