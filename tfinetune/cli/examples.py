"""One example per command, shown at the end of its `--help` (and checked by the tests)."""

from __future__ import annotations

EXAMPLES = {
    "train": "tfinetune train --data flower_photos --out runs/flowers",
    "distill": "tfinetune distill --teacher runs/flowers --data flower_photos "
    "--backbone mobilenet_v2_035 --out runs/small",
    "init": "tfinetune init flowers.toml && tfinetune train --config flowers.toml --out runs/f",
    "lr-find": "tfinetune lr-find --data flower_photos --out runs/lr",
    "clean": "tfinetune clean flower_photos/train --val-data flower_photos/val --out issues && "
    "tfinetune train --data flower_photos/train --exclude issues/issues.csv --out runs/clean",
    "convert": "tfinetune convert --data flower_photos --out flower_records --val-split 0.2",
    "evaluate": "tfinetune evaluate runs/flowers --data more_photos --out runs/flowers-eval",
    "predict": "tfinetune predict runs/flowers photos/ --top-k 3",
    "export": "tfinetune export runs/flowers --out models/flowers   # models/flowers/1/",
    "verify": "tfinetune verify models/flowers/1 --data more_photos",
    "backbones": "tfinetune backbones mobilenet_v2 efficientnet_b0",
    "doctor": "tfinetune doctor --json",
    "demo": "tfinetune demo --out tfinetune-demo",
}


def epilog(command: str) -> str:
    """The text under a command's flags in its `--help`.

    Args:
        command: the command's name.

    Example:
    >>> epilog("doctor")
    'example:\\n  tfinetune doctor --json'
    """
    return f"example:\n  {EXAMPLES[command]}"
