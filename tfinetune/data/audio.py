"""Sound clips: WAV files decoded, mixed to mono, resampled and cut to a clip, in the graph.

Every step is a TensorFlow op, so the same code runs in the `tf.data` pipeline and inside an
exported model's serving signature (WAV bytes in). Resampling is band-limited: the spectrum is
cut or zero-padded to the new rate (as `scipy.signal.resample` does), so downsampling does not
alias.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfinetune.data.files import LabelledFiles, find_bad_files
from tfinetune.data.folders import (
    check_every_class_kept_files,
    check_root,
    folder_class_names,
    list_class_files,
    read_header,
)
from tfinetune.data.images import is_junk
from tfinetune.data.wav import read_wav

AUDIO_KINDS = "sound files (WAV)"
_OTHER_AUDIO = {b"fLaC": "FLAC", b"OggS": "Ogg", b"ID3": "MP3", b"\xff\xfb": "MP3"}


def classify_audio_file(path: str | os.PathLike) -> str | None:
    """None for a WAV file, else the reason to skip the file.

    Args:
        path: the file.

    Example:
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "notes.wav")
    >>> _ = open(p, "w").write("not a sound")
    >>> classify_audio_file(p)
    "not a sound file: the content starts with b'not a so'"
    """
    header, reason = read_header(path, 12)
    if reason:
        return reason
    if header[:4] == b"RIFF" and header[8:12] == b"WAVE":
        return None
    for magic, name in _OTHER_AUDIO.items():
        if header.startswith(magic):
            return f"{name} is not supported: convert it to WAV (ffmpeg -i in out.wav)"
    return f"not a sound file: the content starts with {header[:8]!r}"


def decode_audio(encoded: tf.Tensor) -> tf.Tensor:
    """Decode a WAV file's bytes to a mono `float32 [samples]` waveform in [-1, 1].

    Channels are averaged; the waveform stays at the file's own sample rate. See
    `tfinetune.data.wav.read_wav` for the encodings read and the bounds.

    Args:
        encoded: a scalar string: the file's bytes.
    """
    audio, _ = read_wav(encoded)
    return tf.reduce_mean(audio, axis=-1)


def resample(waveform: tf.Tensor, from_rate: tf.Tensor, to_rate: int) -> tf.Tensor:
    """Band-limited resampling of a 1-D waveform (its spectrum cut or zero-padded).

    Args:
        waveform: `float32 [samples]`.
        from_rate: its sample rate (a scalar tensor or int).
        to_rate: the rate wanted.

    Example:
    >>> t = np.arange(8000) / 8000
    >>> up = resample(tf.constant(np.sin(2 * np.pi * 440 * t), tf.float32), 8000, 16000)
    >>> int(up.shape[0]), bool(abs(float(up[1]) - np.sin(2 * np.pi * 440 / 16000)) < 1e-3)
    (16000, True)
    """
    from_rate = tf.cast(from_rate, tf.int64)
    length = tf.cast(tf.shape(waveform)[0], tf.int64)
    new = tf.maximum((length * to_rate + from_rate // 2) // from_rate, 1)

    def convert():
        spectrum = tf.signal.rfft(waveform)
        bins = tf.cast(new // 2 + 1, tf.int32)
        have = tf.shape(spectrum)[0]
        spectrum = tf.concat(
            [spectrum[:bins], tf.zeros([tf.maximum(bins - have, 0)], spectrum.dtype)], axis=0
        )
        out = tf.signal.irfft(spectrum, fft_length=[tf.cast(new, tf.int32)])
        return out * tf.cast(new, tf.float32) / tf.cast(tf.maximum(length, 1), tf.float32)

    same = tf.logical_or(tf.equal(from_rate, to_rate), tf.equal(length, 0))
    return tf.cond(same, lambda: waveform, convert)


def fit_length(waveform: tf.Tensor, samples: int, start: tf.Tensor | None = None) -> tf.Tensor:
    """Cut a waveform to `samples`, or pad it with silence; at `start` or centred.

    Args:
        waveform: `float32 [n]`.
        samples: the clip length.
        start: where the clip starts in the waveform (negative: silence before it); by
            default a longer waveform is cut around its centre and a shorter one padded at
            the end.

    Example:
    >>> fit_length(tf.constant([1.0, 2.0, 3.0, 4.0]), 2).numpy().tolist()
    [2.0, 3.0]
    >>> fit_length(tf.constant([1.0]), 3).numpy().tolist()
    [1.0, 0.0, 0.0]
    """
    n = tf.shape(waveform)[0]
    if start is None:
        start = tf.maximum(n - samples, 0) // 2
    start = tf.cast(start, tf.int32)
    pad_before = tf.maximum(-start, 0)
    piece = waveform[tf.maximum(start, 0) : tf.maximum(start, 0) + samples - pad_before]
    pad_after = samples - pad_before - tf.shape(piece)[0]
    return tf.reshape(tf.pad(piece, [[pad_before, pad_after]]), [samples])


def decode_clip(encoded: tf.Tensor, rate: int, samples: int | None = None) -> tf.Tensor:
    """WAV bytes to a mono waveform at `rate`, fitted to `samples` when given.

    Args:
        encoded: a scalar string: the file's bytes.
        rate: the model's sample rate.
        samples: the clip length (None: the whole waveform).
    """
    audio, file_rate = read_wav(encoded)
    waveform = resample(tf.reduce_mean(audio, axis=-1), file_rate, rate)
    return waveform if samples is None else fit_length(waveform, samples)


def scan_audio_folder(
    directory: str | os.PathLike,
    class_names: Sequence[str] | None = None,
    verify: bool = True,
    verbose: int = 0,
) -> LabelledFiles:
    """List a folder with one sub-folder per class of sound files; report unreadable files.

    Args:
        directory: the folder holding one sub-folder per class.
        class_names: the expected classes (a training set's), in label order.
        verify: decode every file once to find corrupt ones.
        verbose: show a progress bar while verifying.

    Example:
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> _ = write_tone(root / "low" / "a.wav", 220), write_tone(root / "high" / "a.wav", 880)
    >>> scan_audio_folder(root).class_names
    ['high', 'low']
    """
    root = check_root(directory)
    class_names = folder_class_names(root, class_names)
    files = list_class_files(root, class_names, classify_audio_file, AUDIO_KINDS)
    if verify:
        files = files.without(find_bad_files(files.paths, verbose=verbose, decode=decode_audio))
    present = [name for name in class_names if (root / name).is_dir()]
    check_every_class_kept_files(files, present, root, kind="sound file")
    return files


def is_audio_folder(directory: str | os.PathLike) -> bool:
    """Whether a folder of class sub-folders holds sound files (its first file is a WAV).

    Args:
        directory: the data folder.
    """
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames[:] = sorted(d for d in dirnames if not is_junk(d))
        for name in sorted(n for n in filenames if not is_junk(n)):
            if Path(dirpath) != Path(directory):
                return classify_audio_file(Path(dirpath) / name) is None
    return False


def tone_wav(
    frequency: float,
    *,
    seconds: float = 0.5,
    rate: int = 8000,
    channels: int = 1,
    seed: int = 0,
) -> bytes:
    """The bytes of a 16-bit PCM WAV file of a sine tone with a little noise.

    Args:
        frequency: the tone's frequency in Hz.
        seconds: its length.
        rate: the sample rate.
        channels: 1 (mono) or 2 (the same tone in both).
        seed: seeds the noise.

    Example:
    >>> tone_wav(440, seconds=0.1)[:4]
    b'RIFF'
    """
    t = np.arange(int(seconds * rate)) / rate
    noise = np.random.default_rng(seed).normal(0, 0.02, t.shape)
    wave = 0.5 * np.sin(2 * np.pi * frequency * t) + noise
    pcm = np.clip(np.repeat(wave[:, None], channels, axis=1), -1, 1)
    return tf.audio.encode_wav(tf.constant(pcm, tf.float32), rate).numpy()


def write_tone(path: str | os.PathLike, frequency: float, **options) -> Path:
    """Write a tone as a WAV file (see `tone_wav`; folders are created), for tests and demos.

    Args:
        path: the file to write.
        frequency: the tone's frequency in Hz.
        **options: `seconds`, `rate`, `channels`, `seed` of `tone_wav`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tone_wav(frequency, **options))
    return path


# === Datasets ===

AUDIO_AUGMENT = ("none", "light", "noise")


def augment_clip(waveform: tf.Tensor, samples: int, seed: tf.Tensor, policy: str) -> tf.Tensor:
    """A random window of the clip (time shift), a random gain, and for "noise" white noise.

    "light": the clip placed at a random offset in the window (or a random window of a
    longer clip) and a gain of -6 to +6 dB; "noise": also Gaussian noise at a random
    signal-to-noise ratio of 10 to 40 dB, on half the clips.

    Args:
        waveform: the whole clip, `float32 [n]` at the model's rate.
        samples: the window length.
        seed: a `[2]` stateless seed.
        policy: one of `AUDIO_AUGMENT`.

    Example:
    >>> clip = augment_clip(tf.ones([10]), 16, tf.constant([1, 2]), "light")
    >>> int(clip.shape[0]), int(tf.reduce_sum(tf.cast(clip != 0, tf.int32)))
    (16, 10)
    """
    if policy not in AUDIO_AUGMENT:
        raise ValueError(f"Unknown audio augmentation {policy!r}: use one of {AUDIO_AUGMENT}.")
    if policy == "none":
        return fit_length(waveform, samples)
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 4)
    n = tf.shape(waveform)[0]
    low, high = tf.minimum(n - samples, 0), tf.maximum(n - samples, 0)
    start = tf.random.stateless_uniform([], seeds[0], low, high + 1, dtype=tf.int32)
    clip = fit_length(waveform, samples, start)
    gain_db = tf.random.stateless_uniform([], seeds[1], -6.0, 6.0)
    clip = clip * tf.pow(10.0, gain_db / 20.0)
    if policy == "noise":
        snr_db = tf.random.stateless_uniform([], seeds[2], 10.0, 40.0)
        power = tf.reduce_mean(tf.square(clip)) + 1e-10
        noise = tf.random.stateless_normal([samples], seeds[3]) * tf.sqrt(
            power / tf.pow(10.0, snr_db / 10.0)
        )
        use = tf.cast(tf.random.stateless_uniform([], seeds[3] + 1) < 0.5, tf.float32)
        clip = clip + use * noise
    return tf.clip_by_value(clip, -1.0, 1.0)


def audio_dataset(
    files: LabelledFiles,
    *,
    rate: int,
    samples: int,
    batch_size: int = 32,
    training: bool = False,
    augment: str = "light",
    seed: int | None = None,
) -> tf.data.Dataset:
    """Batches of `(float32 [batch, samples] waveforms, labels)` from sound files.

    Each file is read, decoded, mixed to mono and resampled once, then kept in memory; for
    training every epoch reshuffles and augments (seeded, new each epoch).

    Args:
        files: the labelled sound files (see `scan_audio_folder`).
        rate: the model's sample rate.
        samples: the model's clip length.
        batch_size: clips per batch.
        training: shuffle and augment.
        augment: the augmentation policy (see `augment_clip`).
        seed: seeds shuffling and augmentation.
    """
    ds = tf.data.Dataset.from_tensor_slices((list(files.paths), files.label_array()))
    ds = ds.map(
        lambda path, label: (decode_clip(tf.io.read_file(path), rate), label),
        num_parallel_calls=tf.data.AUTOTUNE,
    ).cache()
    if not training:
        return (
            ds.map(lambda w, y: (fit_length(w, samples), y), num_parallel_calls=tf.data.AUTOTUNE)
            .batch(batch_size)
            .prefetch(tf.data.AUTOTUNE)
        )
    ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    ds = tf.data.Dataset.zip(ds, seeds).map(
        lambda item, s: (augment_clip(item[0], samples, s, augment), item[1]),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
