"""A run folder's `README.md`, written as a model card.

The sections follow Hugging Face's model cards: model details (with the base weights and
where their licence is stated), intended use and limits, training data, training procedure
(every hyperparameter), evaluation (the per-class table and the plots, embedded) and how to
use it. Every path in it is relative: to the run folder for its files, to the folder that
holds the run for the commands, which work pasted into a shell there.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

from tfinetune.atomic import write_text
from tfinetune.data.datasets import ImageData
from tfinetune.runs.experiment import Experiment
from tfinetune.runs.folder import flat

# The evaluation's figures, in the order the card shows them, with what each shows.
PLOTS = (
    ("training_curves.png", "Training curves (stage boundaries marked)"),
    ("confusion_matrix.png", "Confusion matrix on the validation data"),
    ("reliability.png", "Reliability diagram"),
    ("top_losses.png", "The validation examples the model is most wrong about"),
    ("predictions.png", "Predictions on validation examples"),
)
WEIGHTS_LICENCE = (
    "the ImageNet weights Keras publishes for `keras.applications` (each model's page at "
    "https://keras.io/api/applications/ names its paper and source; the weights' terms are "
    "those of that source, and ImageNet's terms of access apply to what was trained on it)"
)


def relative(path: str | os.PathLike, start: str | os.PathLike) -> str:
    """`path` relative to `start` (as `os.path.relpath`), unchanged when it is not a path.

    Args:
        path: a file or folder.
        start: the folder it is told from.

    Example:
    >>> relative("/data/photos/train", "/data/runs")
    '../photos/train'
    """
    text = os.fspath(path)
    if not text or "://" in text or text.startswith(("hub:", "tfds:")):
        return text
    return os.path.relpath(text, os.fspath(start))


def _details(experiment: Experiment, data: ImageData, facts: dict) -> str:
    m = experiment.model
    if m.weights == "imagenet" and not m.backbone.startswith("hub:"):
        weights = f"ImageNet: {WEIGHTS_LICENCE}"
    elif m.backbone.startswith("hub:"):
        weights = "the TF Hub / Kaggle model's own (its page states its licence)"
    else:
        weights = f"`{m.weights}`" if m.weights != "none" else "none (trained from scratch)"
    names = ", ".join(data.class_names[:30]) + (" ..." if len(data.class_names) > 30 else "")
    return f"""## Model details

- Task: {data.task.replace("_", "-")} ({facts.get("modality", "image")}), {len(data.class_names)} {
        "target" if data.task == "regression" else "classes"
    }: {names}
- Backbone: `{m.backbone}`; base weights: {weights}
- Head: {m.pooling} pooling, hidden layers {m.hidden_units or "none"}, dropout {m.dropout}
- Files: `model.keras` (Keras 3), `saved_model/1/` (TF Serving), `labels.txt`
"""


def _intended_use(data: ImageData, facts: dict) -> str:
    kind = {"text": "texts", "audio": "sound clips"}.get(facts.get("modality", ""), "images")
    what = "a value" if data.task == "regression" else "one or more of the classes above"
    return f"""## Intended use and limits

It answers {what} for {kind} like those it was trained on. It knows no other classes: an
input of something else still gets one of these answers. Its accuracy on other data (other
cameras, lighting, sources) is not known until measured: `tfinetune evaluate` does that.
Read the per-class numbers below with their support (the validation examples of each).
"""


def _training_data(experiment: Experiment, data: ImageData, parent: Path) -> str:
    lines = ["## Training data", ""]
    train = relative(experiment.data.train, parent)
    val = relative(experiment.data.val, parent) if experiment.data.val else ""
    held = f"`{val}`" if val else f"{experiment.data.val_split:.0%} of it held out"
    lines.append(f"From `{train}` (validation: {held}), listed file by file in `manifest.csv`.")
    lines.append("")
    splits = [(s, f) for s in ("train", "val", "test")
              if (f := getattr(data, f"{s}_files") or data.records.get(s))]  # fmt: skip
    if data.task == "single_label" and splits:
        lines += ["| class | " + " | ".join(s for s, _ in splits) + " |",
                  "|---|" + "---:|" * len(splits)]  # fmt: skip
        counts = [Counter(int(label) for label in f.labels) for _, f in splits]
        for i, name in enumerate(data.class_names):
            lines.append(f"| {name} | " + " | ".join(str(c[i]) for c in counts) + " |")
    else:
        lines.append(", ".join(f"{len(f)} {s}" for s, f in splits) + " examples.")
    lines += ["", f"Skipped (unreadable): {len(data.bad_files)}; failed to decode while "
              f"training: {len(data.skipped_in_training)}, while evaluating: "
              f"{len(data.skipped_in_validation)}; excluded (`--exclude`): "
              f"{len(data.excluded)}; ignored (hidden or system files): "
              f"{len(data.ignored)}."]  # fmt: skip
    if data.leaks:
        lines += ["", f"**Leak:** {len(data.leaks)} held-out image(s) are near-duplicates of "
                  "training images (perceptual hash), so held-out numbers read high."]  # fmt: skip
    return "\n".join(lines) + "\n"


def _procedure(experiment: Experiment, facts: dict) -> str:
    stages = ["| stage | epochs | groups trained | learning rate | spread | schedule |",
              "|---|---:|---:|---:|---:|---|"]  # fmt: skip
    for s in experiment.stages:
        stages.append(f"| {s.name} | {s.epochs} | {s.train_groups} | {s.learning_rate:g} | "
                      f"{s.lr_mult:g}x | {s.schedule} |")  # fmt: skip
    values = flat(experiment.to_dict())
    rest = [f"| `{k}` | `{json.dumps(v)}` |" for k, v in values.items()
            if not k.startswith(("stages.", "data.train", "data.val", "distill"))]  # fmt: skip
    p = facts.get("performance", {})
    how = (f"{p.get('precision', '?')}, XLA {'on' if p.get('jit_compile') else 'off'}, "
           f"{p.get('replicas', 1)} replica(s), global batch {p.get('global_batch', '?')}, "
           f"Keras backend {p.get('backend', 'tensorflow')}")  # fmt: skip
    return "\n".join([
        "## Training procedure", "",
        f"Fine-tuned in stages (seed {experiment.seed}; {how}); {facts['seconds']:.0f} s in all.",
        "", *stages, "", "Every other setting (`config.toml` holds them all):", "",
        "| key | value |", "|---|---|", *rest,
    ]) + "\n"  # fmt: skip


def _evaluation(out: Path, facts: dict) -> str:
    summary = out / "summary.md"
    body = summary.read_text().split("\n", 1)[1].strip() if summary.is_file() else ""
    lines = ["## Evaluation", "", f"**{facts['headline'] or 'No validation data.'}**", ""]
    lines += [body, ""] if body else []
    lines += [f"![{what}]({name})" for name, what in PLOTS if (out / name).is_file()]
    return "\n".join(lines) + "\n"


def _how_to_use(final: Path, data: ImageData, facts: dict) -> str:
    run = final.name
    val = data.val_files
    modality = facts.get("modality", "image")
    example = relative(val.paths[0], final.parent) if val and val.paths else "IMAGE"
    evaluate = "--data MORE_IMAGES --out {run}-eval   # or --csv FILE"
    last = f"tfinetune export {run} --format tflite --out {run}-tflite"
    if modality == "text":
        example = json.dumps(val.texts[0][:60]) if val else '"a sentence"'
        evaluate = "--csv MORE_TEXTS.csv --out {run}-eval"
        last = f"tfinetune predict {run} - < sentences.txt   # one per line"
    elif modality == "audio":
        evaluate = "--data MORE_SOUNDS --out {run}-eval"
        last = f"tfinetune predict {run} *.wav   # any sample rate, mono or stereo"
    return f"""## How to use it

From the folder that holds `{run}/`:

```bash
tfinetune predict {run} {example} --top-k 3
tfinetune evaluate {run} {evaluate.format(run=run)}
{last}
tfinetune train --config {run}/config.toml --out {run}-again  # the same experiment again
docker run -p 8501:8501 -v "$PWD/{run}/saved_model:/models/{run}" \\
  -e MODEL_NAME={run} tensorflow/serving                  # TF Serving, REST on :8501
```

In Python: `keras.saving.load_model("{run}/model.keras")` after `import tfinetune`, or
`tfinetune.load_classifier("{run}")` for predictions by file name.
"""


def write_model_card(
    out: Path, final: Path, experiment: Experiment, data: ImageData, facts: dict
) -> Path:
    """Write the run's `README.md` as a model card (see the module's note).

    Args:
        out: the folder being written (its evaluation already in it).
        final: the run folder's final path (its name and parent, for the commands).
        experiment: the resolved experiment.
        data: the run's datasets.
        facts: `headline` (the result line), `seconds`, `performance` (how it trained) and
            `modality` ("image", "text" or "audio").
    """
    text = "\n".join([
        f"# `{final.name}`: a fine-tuned {experiment.model.backbone}", "",
        "A model card written by `tfinetune train`.", "",
        _details(experiment, data, facts), _intended_use(data, facts),
        _training_data(experiment, data, final.parent), _procedure(experiment, facts),
        _evaluation(out, facts), _how_to_use(final, data, facts),
    ])  # fmt: skip
    return write_text(out / "README.md", text)
