"""A run folder's README.md is a model card: its sections, its plots, no absolute path, and
commands that work pasted into a shell in the folder that holds the run."""

from __future__ import annotations

import json
import re
import shlex

from tfinetune.cli import main

SECTIONS = ("Model details", "Intended use and limits", "Training data", "Training procedure",
            "Evaluation", "How to use it")  # fmt: skip


def test_the_run_readme_is_a_model_card_with_relative_paths(trained_run):
    _, run = trained_run
    card = (run / "README.md").read_text()
    headings = re.findall(r"^## (.+)$", card, re.M)
    assert headings == list(SECTIONS)
    # every hyperparameter of the experiment, and the stages as a table
    assert "| `model.dropout` | `0.2` |" in card and "| `data.batch_size` | `8` |" in card
    assert re.search(r"^\| head \| 1 \| 1 \| 0.001 \| 1x \| constant \|$", card, re.M)
    # the training data's counts per class, and the skipped file
    assert re.search(r"^\| cross \| \d+ \| \d+ \|$", card, re.M)
    assert "Skipped (unreadable): 1;" in card
    # the per-class table of the evaluation, and every plot the run wrote, embedded
    assert "| class | precision | recall | F1 | support |" in card
    embedded = re.findall(r"!\[[^\]]+\]\(([^)]+)\)", card)
    assert "training_curves.png" in embedded and "confusion_matrix.png" in embedded
    for name in embedded:
        assert (run / name).is_file(), name
    assert sorted(embedded) == sorted(p.name for p in run.glob("*.png"))
    # no absolute path: the run can move (its export's record of the data too)
    assert str(run.parent) not in card and not re.search(r"(?<![\w.$])/(tmp|home|root)\b", card)
    contract = run / "saved_model" / "1" / "assets.extra" / "preprocessing.json"
    assert json.loads(contract.read_text())["training_data"] == "../data"


def test_the_cards_commands_work_from_the_runs_parent(trained_run, monkeypatch, capsys):
    data, run = trained_run
    card = (run / "README.md").read_text()
    commands = re.search(r"```bash\n(.*?)```", card, re.S).group(1).splitlines()
    monkeypatch.chdir(run.parent)
    predict = next(c for c in commands if c.startswith("tfinetune predict"))
    assert main(shlex.split(predict, comments=True)[1:]) == 0
    answer = json.loads(capsys.readouterr().out.splitlines()[0])
    assert len(answer["top"]) == 2 and answer["label"] in ("cross", "ring")
    evaluate = next(c for c in commands if c.startswith("tfinetune evaluate"))
    words = shlex.split(evaluate.replace("MORE_IMAGES", data.name), comments=True)
    assert main(words[1:]) == 0
    assert json.loads((run.parent / f"{run.name}-eval" / "metrics.json").read_text())
    again = next(c for c in commands if c.startswith("tfinetune train --config"))
    assert (run.parent / shlex.split(again)[3]).is_file()  # the run's config.toml
