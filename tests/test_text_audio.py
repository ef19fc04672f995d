"""Text and audio: CSV and sound-folder data, hub text/audio backbones in blocks, exports."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from tiny_hub import save_tiny_audio, save_tiny_text

from tfinetune import build_classifier, export_saved_model, fine_tune
from tfinetune.data.audio import (
    audio_dataset,
    decode_clip,
    resample,
    scan_audio_folder,
    write_tone,
)
from tfinetune.data.text import LabelledTexts, read_text_csv, text_dataset, text_datasets
from tfinetune.models.classifier import find_backbone, modality_of
from tfinetune.training.freezing import freeze_to, layer_groups


@pytest.fixture(scope="module")
def tiny_text(tmp_path_factory):
    return save_tiny_text(tmp_path_factory.mktemp("hub") / "text")


@pytest.fixture(scope="module")
def tiny_audio(tmp_path_factory):
    return save_tiny_audio(tmp_path_factory.mktemp("hub") / "audio")


def _texts(n=48):
    rng = np.random.default_rng(0)
    good, bad = ["great", "lovely", "fine", "superb"], ["awful", "broken", "poor", "bad"]
    texts, labels = [], []
    for i in range(n):
        words = good if i % 2 else bad
        texts.append(" ".join(rng.choice(words, 3)) + " product")
        labels.append(i % 2)
    return LabelledTexts(texts, labels, ["negative", "positive"])


def _hub(model):
    return find_backbone(model).get_layer("hub")


# === Text ===


def test_text_hub_model_has_blocks_and_staged_unfreezing_trains_only_the_top(tiny_text):
    model = build_classifier(f"hub:{tiny_text}", 2, dropout=0.0)
    assert modality_of(model) == "text" and model.input.dtype == "string"
    assert [g.name for g in layer_groups(model)] == ["stem", "layer1", "layer2", "head"]
    freeze_to(model, 2)  # layer2 and the head
    hub = _hub(model)
    assert sorted(w.name for w in hub.trainable_weights) == ["layer2_kernel"]
    before = {w.name: w.numpy().copy() for w in hub.weights}
    data = text_dataset(_texts(), batch_size=8, training=True, seed=1)
    fine_tune(model, data, freeze_epochs=0, epochs=2, train_groups=2, verbose=0)
    after = {w.name: w.numpy() for w in hub.weights}
    assert not np.array_equal(after["layer2_kernel"], before["layer2_kernel"])
    np.testing.assert_array_equal(after["layer1_kernel"], before["layer1_kernel"])
    np.testing.assert_array_equal(after["embeddings"], before["embeddings"])
    # The training flag reached the SavedModel in fit (12 batches), not in predict.
    calls = int(after["calls_in_training"])
    assert calls == 12
    model.predict(tf.constant(["a great product"]), verbose=0)
    assert {w.name: int(w.numpy()) for w in hub.weights if w.ndim == 0} == {
        "calls_in_training": calls
    }


def test_text_model_learns_from_a_csv_and_exports_from_raw_strings(tiny_text, tmp_path):
    rows = _texts(64)
    lines = ["text,label"] + [
        f'"{t}, really",{rows.class_names[y]}' for t, y in zip(rows.texts, rows.labels, strict=True)
    ]
    (tmp_path / "reviews.csv").write_text("\n".join([*lines, ",positive", '"  ",negative']) + "\n")
    texts = read_text_csv(tmp_path / "reviews.csv")
    assert len(texts) == 64 and [b.reason for b in texts.skipped] == ["empty text"] * 2
    data = text_datasets(texts, val_split=0.25, batch_size=8, seed=3)
    assert len(data.train_files) == 48 and len(data.val_files) == 16
    model = build_classifier(f"hub:{tiny_text}", 2, dropout=0.0)
    freeze_to(model, len(layer_groups(model)))
    history = fine_tune(model, data.train, data.val, freeze_epochs=0, epochs=8,
                        fine_tune_learning_rate=0.03, train_groups=4, verbose=0)  # fmt: skip
    assert history.history["val_accuracy"][-1] >= 0.9  # two word lists: easy when it learns
    sentences = ["lovely superb product", "awful broken product", "", "Ünïcode, fine!"]
    path = export_saved_model(model, tmp_path / "export", texts.class_names)
    served = tf.saved_model.load(str(path)).signatures["serving_default"](
        text=tf.constant(sentences)
    )
    expected = model.predict(tf.constant(sentences), verbose=0)
    np.testing.assert_allclose(served["probabilities"].numpy(), expected, atol=1e-5)
    assert served["label"].numpy()[:2].tolist() == [b"positive", b"negative"]


def test_text_csv_errors_name_the_problem(tmp_path):
    (tmp_path / "a.csv").write_text("sentence,label\nhello,x\n")
    with pytest.raises(
        ValueError, match=r"no column 'text'.*\['sentence', 'label'\].*text_column="
    ):
        read_text_csv(tmp_path / "a.csv")
    assert read_text_csv(tmp_path / "a.csv", text_column="sentence").texts == ["hello"]
    (tmp_path / "b.csv").write_bytes("text,label\ncaf\xe9,x\n".encode("latin-1"))
    with pytest.raises(ValueError, match="is not UTF-8 text"):
        read_text_csv(tmp_path / "b.csv")
    (tmp_path / "c.csv").write_text("text,label\n,x\n")
    with pytest.raises(ValueError, match="no row with both a text and a label"):
        read_text_csv(tmp_path / "c.csv")
    (tmp_path / "d.csv").write_text("text,label\nnews,sport|world\nmore,world\n")
    multi = read_text_csv(tmp_path / "d.csv", label_delim="|")
    assert multi.task == "multi_label" and multi.labels == [(0, 1), (1,)]


# === Audio ===


def _tones(root, per_class=12):
    for i in range(per_class):
        write_tone(root / "low" / f"{i}.wav", 300 + 10 * i, seconds=0.3 + 0.02 * i, seed=i)
        write_tone(root / "high" / f"{i}.wav", 2000 + 40 * i, seconds=0.4, rate=16000, seed=i)
    return root


def test_audio_folder_skips_bad_files_and_converts_stereo_44k(tmp_path):
    root = _tones(tmp_path / "sounds", 3)
    (root / "low" / "notes.wav").write_text("not a sound file")
    (root / "high" / "song.flac").write_bytes(b"fLaC\x00\x00\x00\x22rest")
    (root / "high" / "cut.wav").write_bytes((root / "high" / "0.wav").read_bytes()[:30])
    write_tone(root / "high" / "stereo.wav", 1000, seconds=0.5, rate=44100, channels=2)
    files = scan_audio_folder(root)
    reasons = {p.rsplit("/", 1)[-1]: r for p, r in ((b.path, b.reason) for b in files.bad_files)}
    assert set(reasons) == {"notes.wav", "song.flac", "cut.wav"}
    assert reasons["notes.wav"].startswith("not a sound file")
    assert "FLAC is not supported: convert it to WAV" in reasons["song.flac"]
    assert reasons["cut.wav"].startswith("cannot be decoded")
    stereo = [p for p in files.paths if p.endswith("stereo.wav")]
    assert stereo, "a stereo 44.1 kHz file is converted, not refused"
    wave = decode_clip(tf.io.read_file(stereo[0]), 16000).numpy()
    assert wave.shape == (8000,)  # 0.5 s at 16 kHz, one channel
    spectrum = np.abs(np.fft.rfft(wave))
    assert abs(np.argmax(spectrum) * 16000 / len(wave) - 1000) <= 2  # the tone kept its pitch


def test_resampling_down_removes_what_the_new_rate_cannot_hold():
    rate = 48000
    t = np.arange(rate) / rate
    wave = np.sin(2 * np.pi * 1000 * t) + np.sin(2 * np.pi * 12000 * t)  # 12 kHz > 8 kHz Nyquist
    down = resample(tf.constant(wave, tf.float32), rate, 16000).numpy()
    spectrum = np.abs(np.fft.rfft(down)) / len(down)
    assert spectrum[1000] > 0.45  # the 1 kHz tone stays (amplitude 1 -> 0.5 per bin)
    assert spectrum.max() == spectrum[1000] and spectrum[4000] < 1e-3  # no alias at 4 kHz


def test_audio_hub_model_pools_frames_leaves_unused_logits_out_and_trains_blocks(
    tiny_audio, tmp_path
):
    model = build_classifier(f"hub:{tiny_audio}", 2, clip_seconds=0.5, pooling="attention")
    assert modality_of(model) == "audio" and model.input_shape == (None, 8000)
    assert [g.name for g in layer_groups(model)] == ["stem", "layer1", "layer2", "head"]
    hub = _hub(model)
    assert "logits_kernel" not in [w.name for w in hub.weights]  # never gets a gradient
    files = scan_audio_folder(_tones(tmp_path / "sounds"))
    train = audio_dataset(files, rate=16000, samples=8000, batch_size=8, training=True, seed=2)
    before = {w.name: w.numpy().copy() for w in hub.weights}
    history = fine_tune(model, train, freeze_epochs=0, epochs=6, fine_tune_learning_rate=0.01,
                        train_groups=2, verbose=0)  # fmt: skip
    after = {w.name: w.numpy() for w in hub.weights}
    np.testing.assert_array_equal(after["layer1_conv_kernel"], before["layer1_conv_kernel"])
    assert not np.array_equal(after["layer2_conv_kernel"], before["layer2_conv_kernel"])
    assert int(after["calls_in_training"]) > 0  # the flag reached the SavedModel, per clip
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_audio_export_takes_wav_bytes_at_any_rate_and_agrees_with_keras(tiny_audio, tmp_path):
    model = build_classifier(f"hub:{tiny_audio}", 2, clip_seconds=0.5)
    root = _tones(tmp_path / "sounds", 2)
    write_tone(root / "high" / "stereo.wav", 2100, seconds=0.7, rate=44100, channels=2)
    files = scan_audio_folder(root)
    path = export_saved_model(model, tmp_path / "export", files.class_names)
    loaded = tf.saved_model.load(str(path))
    encoded = [tf.io.read_file(p) for p in files.paths]
    served = loaded.signatures["serving_default"](audio_bytes=tf.stack(encoded))
    waves = tf.stack([decode_clip(e, 16000, 8000) for e in encoded])
    expected = model.predict(waves, verbose=0)
    np.testing.assert_allclose(served["probabilities"].numpy(), expected, atol=1e-5)
    again = loaded.signatures["serve_waveforms"](waveforms=waves)
    np.testing.assert_allclose(again["probabilities"].numpy(), expected, atol=1e-5)
