"""Real text and sound: GloVe on AG News, YAMNet on spoken digits, through `tfinetune train`,
with the served model checked on every validation sentence and test clip."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from tfinetune.cli import main
from tfinetune.data.audio import decode_clip, scan_audio_folder
from tfinetune.data.text import read_text_csv
from tfinetune.models.saving import load_keras_model

from conftest import asset


def _served(run, name, inputs, batch=64):
    serve = tf.saved_model.load(str(run / "saved_model" / "1")).signatures["serving_default"]
    parts = [serve(**{name: tf.constant(inputs[i : i + batch])})["probabilities"].numpy()
             for i in range(0, len(inputs), batch)]  # fmt: skip
    return np.concatenate(parts)


def _head_stage_accuracy(run) -> float:
    import json

    history = json.loads((run / "history.json").read_text())
    first_stage_end = history["stages"][0]["end"]
    return history["history"]["val_accuracy"][first_stage_end - 1]


@pytest.mark.slow
def test_glove_fine_tuned_on_ag_news_reaches_86_percent_and_serves_raw_strings(tmp_path, capsys):
    text = asset("datasets", "text")
    hub = asset("hub", "glove_50d_5k_text_embedding")
    run = tmp_path / "run"
    args = ["train", "--csv", str(text / "ag_news_train.csv"), "--val-csv"]
    args += [str(text / "ag_news_val.csv"), "--backbone", f"hub:{hub}", "--out", str(run)]
    assert main(args) == 0
    out = capsys.readouterr().out
    accuracy = json.loads((run / "metrics.json").read_text())["accuracy"]
    head = _head_stage_accuracy(run)
    print(f"AG News val: frozen head {head:.4f}, fine-tuned {accuracy:.4f}")
    # The text recipe measured 0.863 / 0.857 / 0.866 over seeds 1-3, its frozen head 0.850 /
    # 0.843 (benchmarks/results/text_audio.json; the assets README: frozen 0.840, trainable
    # 0.852): 0.86 asks for the fine-tuning gain.
    assert "text recipe" in out and accuracy >= 0.86
    sentences = read_text_csv(text / "ag_news_val.csv").texts
    expected = load_keras_model(run / "model.keras").predict(tf.constant(sentences), verbose=0)
    served = _served(run, "text", sentences)
    assert np.abs(served - expected).max() <= 1e-4


@pytest.mark.slow
def test_yamnet_fine_tuned_on_spoken_digits_reaches_96_percent_and_serves_wav_bytes(
    tmp_path, capsys
):
    fsdd = asset("datasets", "fsdd")
    hub = asset("hub", "yamnet")
    run = tmp_path / "run"
    args = ["train", "--data", str(fsdd / "train"), "--val-data", str(fsdd / "test")]
    args += ["--backbone", f"hub:{hub}", "--out", str(run)]
    assert main(args) == 0
    out = capsys.readouterr().out
    accuracy = json.loads((run / "metrics.json").read_text())["accuracy"]
    head = _head_stage_accuracy(run)
    print(f"FSDD test: frozen head {head:.4f}, fine-tuned {accuracy:.4f}")
    # The audio recipe measured 0.972 and 0.980 (seeds 1, 2), its frozen head 0.52 and a
    # log-mel baseline without pretraining 0.93-0.94 (benchmarks/results/text_audio.json).
    assert "audio recipe" in out and accuracy >= 0.96
    files = scan_audio_folder(fsdd / "test")
    encoded = [tf.io.read_file(p).numpy() for p in files.paths]  # the bytes as stored
    model = load_keras_model(run / "model.keras")
    samples = model.input_shape[1]
    waves = tf.stack([decode_clip(e, 16000, samples) for e in encoded])
    expected = model.predict(waves, verbose=0)
    served = _served(run, "audio_bytes", encoded)
    assert np.abs(served - expected).max() <= 1e-4
