"""WAV bytes to samples with TensorFlow ops, for training and for serving signatures alike.

`tf.audio.decode_wav` reads 16-bit PCM only. This reader takes what recorders and editors
write: PCM of 8, 16, 24 or 32 bits, 32-bit float, `WAVE_FORMAT_EXTENSIBLE` headers, any
number of channels and extra chunks (`LIST`, `fact`) before the samples. Nothing is
allocated from what a header claims: a file cut short (its data chunk claims more than the
file holds) is refused, except for the sizes streaming writers leave (0 or 0xFFFFFFFF: the
samples run to the end of the file), and a file of more samples than `max_audio_samples()`
is refused before decoding, so memory stays bounded whatever the header says.
"""

from __future__ import annotations

import tensorflow as tf

from tfinetune.data.limits import env_limit

MAX_AUDIO_SECONDS_ENV = "TFINETUNE_MAX_AUDIO_SECONDS"
DEFAULT_MAX_AUDIO_SECONDS = 600
_REFERENCE_RATE = 96_000  # the limit counts seconds of 96 kHz mono: samples, not duration
_MAX_CHUNKS = 64  # chunks read before the samples; a file with more is refused
_PCM, _EXTENSIBLE, _FLOAT = 1, 0xFFFE, 3


def max_audio_samples() -> int:
    """The most samples (frames times channels) tfinetune decodes from one WAV file.

    `$TFINETUNE_MAX_AUDIO_SECONDS` (default 600) seconds of 96 kHz mono: 10 minutes of
    96 kHz mono, 20 of 48 kHz stereo, an hour of 16 kHz mono; 230 MB of float32 at most.

    Example:
    >>> max_audio_samples()
    57600000
    """
    seconds = env_limit(MAX_AUDIO_SECONDS_ENV, DEFAULT_MAX_AUDIO_SECONDS, "a number of seconds",
                        whole=False)  # fmt: skip
    return int(seconds * _REFERENCE_RATE)


def _uint(encoded: tf.Tensor, size: tf.Tensor, offset: tf.Tensor, length: int) -> tf.Tensor:
    """The little-endian unsigned number of `length` bytes at `offset` (0 past the end)."""
    offset = tf.clip_by_value(tf.cast(offset, tf.int64), 0, size)
    raw = tf.io.decode_raw(tf.strings.substr(encoded, offset, length), tf.uint8)
    raw = tf.pad(tf.cast(raw, tf.int64), [[0, length - tf.shape(raw)[0]]])
    return tf.reduce_sum(raw * tf.constant([256**i for i in range(length)], tf.int64))


def _chunks(encoded: tf.Tensor, size: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Where the `fmt ` chunk's content starts, and the `data` chunk's start and size."""

    def body(i, offset, fmt_at, data_at, data_size):
        name = tf.strings.substr(encoded, tf.minimum(offset, size), 4)
        length = _uint(encoded, size, offset + 4, 4)
        fmt_at = tf.where(tf.equal(name, "fmt "), offset + 8, fmt_at)
        first_data = tf.logical_and(tf.equal(name, "data"), data_at < 0)
        data_at = tf.where(first_data, offset + 8, data_at)
        data_size = tf.where(first_data, length, data_size)
        return i + 1, offset + 8 + length + length % 2, fmt_at, data_at, data_size

    def more(i, offset, fmt_at, data_at, data_size):
        missing = tf.logical_or(fmt_at < 0, data_at < 0)
        return tf.logical_and(tf.logical_and(i < _MAX_CHUNKS, offset + 8 <= size), missing)

    start = (tf.constant(0), tf.constant(12, tf.int64), *[tf.constant(-1, tf.int64)] * 3)
    _, _, fmt_at, data_at, data_size = tf.while_loop(more, body, start)
    return fmt_at, data_at, data_size


def _samples(payload: tf.Tensor, kind: tf.Tensor) -> tf.Tensor:
    """The payload's samples in [-1, 1]: kind 0..4 = PCM 8, 16, 24, 32 bits, float32."""

    def pcm8():
        return (tf.cast(tf.io.decode_raw(payload, tf.uint8), tf.float32) - 128.0) / 128.0

    def pcm16():
        return tf.cast(tf.io.decode_raw(payload, tf.int16), tf.float32) / 32768.0

    def pcm24():
        b = tf.reshape(tf.cast(tf.io.decode_raw(payload, tf.uint8), tf.int32), [-1, 3])
        value = b[:, 0] + b[:, 1] * 256 + b[:, 2] * 65536
        value = tf.where(value >= 2**23, value - 2**24, value)
        return tf.cast(value, tf.float32) / float(2**23)

    def pcm32():
        return tf.cast(tf.io.decode_raw(payload, tf.int32), tf.float32) / float(2**31)

    def float32():
        return tf.io.decode_raw(payload, tf.float32)

    return tf.switch_case(tf.cast(kind, tf.int32), [pcm8, pcm16, pcm24, pcm32, float32])


def read_wav(encoded: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Decode WAV bytes to `float32 [frames, channels]` in [-1, 1] and the sample rate.

    Args:
        encoded: a scalar string tensor holding the file's bytes.

    Example:
    >>> import struct, numpy as np
    >>> pcm = np.array([0, 2**22, -(2**23)], "<i4").view("u1").reshape(3, 4)[:, :3].tobytes()
    >>> head = b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, 8000, 24000, 3, 24)
    >>> wav = b"RIFF" + struct.pack("<I", 4 + len(head) + 8 + 9) + b"WAVE" + head
    >>> audio, rate = read_wav(tf.constant(wav + b"data" + struct.pack("<I", 9) + pcm))
    >>> audio.numpy().ravel().tolist(), int(rate)
    ([0.0, 0.5, -1.0], 8000)
    """
    encoded = tf.convert_to_tensor(encoded, tf.string)
    size = tf.cast(tf.strings.length(encoded), tf.int64)
    riff = tf.logical_and(
        tf.equal(tf.strings.substr(encoded, 0, 4), "RIFF"),
        tf.equal(tf.strings.substr(encoded, tf.minimum(size, 8), 4), "WAVE"),
    )
    checks = [tf.debugging.assert_equal(riff, True, message="not a WAV file: no RIFF/WAVE header")]
    with tf.control_dependencies(checks):
        fmt_at, data_at, data_size = _chunks(encoded, size)
    found = tf.minimum(fmt_at, data_at)
    checks = [tf.debugging.assert_non_negative(found, message="not a WAV: no fmt or data chunk")]
    with tf.control_dependencies(checks):
        form = _uint(encoded, size, fmt_at, 2)
        form = tf.where(tf.equal(form, _EXTENSIBLE), _uint(encoded, size, fmt_at + 24, 2), form)
        channels = _uint(encoded, size, fmt_at + 2, 2)
        rate = _uint(encoded, size, fmt_at + 4, 4)
        bits = _uint(encoded, size, fmt_at + 14, 2)
    kinds = {(_PCM, 8): 0, (_PCM, 16): 1, (_PCM, 24): 2, (_PCM, 32): 3, (_FLOAT, 32): 4}
    kind = tf.constant(-1, tf.int64)
    for (f, b), k in kinds.items():
        match = tf.logical_and(tf.equal(form, f), tf.equal(bits, b))
        kind = tf.where(match, tf.constant(k, tf.int64), kind)
    frame = tf.maximum(channels * bits // 8, 1)
    held = size - data_at
    streamed = tf.logical_or(tf.equal(data_size, 0), tf.equal(data_size, 0xFFFFFFFF))
    data_size = tf.where(streamed, held, data_size)
    frames = tf.minimum(data_size, held) // frame
    limit = max_audio_samples()
    checks = [
        tf.debugging.assert_non_negative(kind, message="unsupported WAV encoding: tfinetune "
                                         "reads PCM of 8, 16, 24 or 32 bits and 32-bit float"),
        tf.debugging.assert_positive(tf.minimum(channels, rate), message="a WAV header with "
                                     "no channels or a sample rate of 0"),
        tf.debugging.assert_less_equal(data_size, held, message="the WAV file is cut short: "
                                       "its header claims more samples than the file holds"),
        tf.debugging.assert_less_equal(frames * channels, tf.constant(limit, tf.int64), message=(
            f"the WAV holds more than {limit} samples (frames times channels), more than "
            f"tfinetune decodes; cut it shorter, or raise ${MAX_AUDIO_SECONDS_ENV}")),
    ]  # fmt: skip
    with tf.control_dependencies(checks):
        payload = tf.strings.substr(encoded, data_at, frames * frame)
        audio = tf.reshape(_samples(payload, kind), [-1, tf.cast(channels, tf.int32)])
    return audio, tf.cast(rate, tf.int32)
