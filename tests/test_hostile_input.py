"""Odd and hostile input files (#37): CSV tables and WAV files are decoded, or refused with
the file and the line or the reason, within bounded memory, never silently mis-read."""

from __future__ import annotations

import csv
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from tfinetune.cli import main
from tfinetune.data.audio import decode_clip, scan_audio_folder
from tfinetune.data.synthetic import write_shapes_folder
from tfinetune.data.tables import parse_labels, read_csv_files
from tfinetune.data.wav import read_wav

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


# === WAV files ===


def _wav(payload: bytes, *, rate=16000, channels=1, bits=16, form=1, claim=None,
         extensible=False, extra=b"") -> bytes:  # fmt: skip
    """A WAV file: a fmt chunk (plain or WAVE_FORMAT_EXTENSIBLE), extra chunks, the data."""
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", 0xFFFE if extensible else form, channels, rate, rate * block,
                      block, bits)  # fmt: skip
    if extensible:  # cbSize, valid bits, channel mask, then the sub-format GUID
        fmt += struct.pack("<HHI", 22, bits, 0) + struct.pack("<H", form) + bytes(14)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + extra
    body += b"data" + struct.pack("<I", len(payload) if claim is None else claim) + payload
    return b"RIFF" + struct.pack("<I", len(body)) + body


TONE = np.sin(2 * np.pi * 440 * np.arange(800) / 8000) * 0.5  # 0.1 s at 8 kHz


def _encodings() -> dict[str, tuple[bytes, float]]:
    """The same tone in every encoding, with the quantisation step of each (float32 holds
    24 bits, so 32-bit PCM comes back to 1e-7)."""
    pcm8 = np.round(TONE * 128 + 128).astype("u1").tobytes()
    pcm16 = np.round(TONE * 2**15).astype("<i2").tobytes()
    pcm24 = np.round(TONE * 2**23).astype("<i4").view("u1").reshape(-1, 4)[:, :3].tobytes()
    pcm32 = np.round(TONE * 2**31).astype("<i4").tobytes()
    listed = b"LIST" + struct.pack("<I", 5) + b"abcde\x00"  # odd size: a pad byte follows
    return {
        "pcm8": (_wav(pcm8, bits=8, rate=8000), 1 / 128),
        "pcm16": (_wav(pcm16, rate=8000), 2**-15),
        "pcm24": (_wav(pcm24, bits=24, rate=8000), 2**-23),
        "pcm32": (_wav(pcm32, bits=32, rate=8000), 1e-7),
        "float32": (_wav(TONE.astype("<f4").tobytes(), bits=32, form=3, rate=8000), 1e-7),
        "extensible pcm24": (_wav(pcm24, bits=24, rate=8000, extensible=True), 2**-23),
        "LIST chunk first": (_wav(pcm16, rate=8000, extra=listed), 2**-15),
    }


@pytest.mark.parametrize("name", list(_encodings()))
def test_every_common_wav_encoding_decodes_to_the_same_tone(name):
    """Before: anything but 16-bit PCM was skipped as 'Can only read 16-bit WAV files'."""
    encoded, step = _encodings()[name]
    audio, rate = read_wav(tf.constant(encoded))
    assert int(rate) == 8000 and audio.shape == (800, 1)
    assert np.abs(audio.numpy()[:, 0] - TONE).max() <= step


def test_six_channels_at_96_khz_are_mixed_to_mono_and_resampled():
    channels = np.stack([TONE * (i % 2) for i in range(6)], axis=1)  # tone on 3 of 6
    wav = _wav(np.round(channels * 2**15).astype("<i2").tobytes(), rate=96000, channels=6)
    clip = decode_clip(tf.constant(wav), 16000)
    assert clip.shape == (800 * 16000 // 96000,)
    assert abs(float(tf.reduce_max(tf.abs(clip))) - 0.25) < 0.01  # half the channels: half


def test_a_header_claiming_2_31_bytes_is_refused_and_a_streamed_size_reads_to_the_end():
    """Nothing is allocated from the claim: a claim beyond the file is a file cut short,
    and the sizes streaming writers leave (0, 0xFFFFFFFF) mean "to the end of the file"."""
    payload = np.round(TONE * 2**15).astype("<i2").tobytes()
    with pytest.raises(tf.errors.InvalidArgumentError, match="the WAV file is cut short"):
        read_wav(tf.constant(_wav(payload, claim=2**31)))
    for claim in (0, 0xFFFFFFFF):
        assert read_wav(tf.constant(_wav(payload, claim=claim)))[0].shape == (800, 1)


@pytest.mark.parametrize(
    "encoded, message",
    [
        (b"", "not a WAV file: no RIFF/WAVE header"),
        (b"RIFF\x04\x00\x00\x00WAVE", "no fmt or data chunk"),
        (_wav(bytes(16), bits=12), "unsupported WAV encoding"),
        (_wav(bytes(16), form=6, bits=8), "unsupported WAV encoding"),  # A-law
        (_wav(bytes(16), rate=0), "a sample rate of 0"),
    ],
)
def test_broken_or_unsupported_wavs_are_refused_with_the_reason(encoded, message):
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        read_wav(tf.constant(encoded))


def test_a_two_hour_file_is_refused_before_decoding_with_bounded_memory(tmp_path):
    """Two hours of 16 kHz 16-bit mono (230 MB): refused by the sample limit, in a fresh
    process whose peak memory grows by less than twice the file."""
    path = tmp_path / "long.wav"
    frames = 2 * 3600 * 16000
    with open(path, "wb") as f:
        f.write(_wav(b"", claim=frames * 2))
        f.truncate(44 + frames * 2)  # a sparse file of silence
    code = textwrap.dedent(f"""
        import resource, tensorflow as tf
        from tfinetune.data.audio import decode_audio
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            decode_audio(tf.io.read_file({str(path)!r}))
            print("decoded")
        except tf.errors.InvalidArgumentError as err:
            print(err.message.splitlines()[0])
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, check=True)  # fmt: skip
    message, grown_mb = done.stdout.strip().splitlines()[-2:]
    assert "more than 57600000 samples" in message and "TFINETUNE_MAX_AUDIO_SECONDS" in message
    assert int(grown_mb) < 2 * 230, grown_mb


def test_a_training_scan_reports_an_unsupported_wav_with_its_reason(tmp_path):
    for name in ("yes", "no"):
        (tmp_path / name).mkdir()
        for i in range(2):
            (tmp_path / name / f"{i}.wav").write_bytes(_encodings()["pcm24"][0])
    (tmp_path / "no" / "alaw.wav").write_bytes(_wav(bytes(16), form=6, bits=8))
    files = scan_audio_folder(tmp_path)
    assert len(files) == 4
    assert [(b.path.endswith("alaw.wav"), "unsupported WAV encoding" in b.reason)
            for b in files.bad_files] == [(True, True)]  # fmt: skip


@pytest.mark.parametrize("value", ["0", "-5", "lots"])
def test_a_limit_set_to_nonsense_is_one_clear_error(monkeypatch, value):
    from tfinetune.data.headers import max_pixels
    from tfinetune.data.text import max_text_bytes
    from tfinetune.data.wav import max_audio_samples

    for name, read in (("TFINETUNE_MAX_PIXELS", max_pixels),
                       ("TFINETUNE_MAX_TEXT_BYTES", max_text_bytes),
                       ("TFINETUNE_MAX_AUDIO_SECONDS", max_audio_samples)):  # fmt: skip
        monkeypatch.setenv(name, value)
        with pytest.raises(ValueError, match=rf"\${name} must be .* above 0. Received: '{value}'"):
            read()
    monkeypatch.setenv("TFINETUNE_MAX_AUDIO_SECONDS", "0.5")
    assert max_audio_samples() == 48000
