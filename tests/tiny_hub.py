"""Tiny SavedModels in TF Hub's text and audio calling conventions, made in the tests.

Each has a few variables in named blocks and a non-trainable counter that its `__call__`
increments only when called with `training=True`, so tests can see the flag arrive.
"""

from __future__ import annotations

import tensorflow as tf

BUCKETS = 64
FRAME = 160  # samples per frame at 16 kHz: 10 ms


class _TinyText(tf.Module):
    """Sentences -> hashed words -> mean embedding -> layer1 -> layer2 (TF Hub text style)."""

    def __init__(self):
        super().__init__()
        seed = iter(range(10, 20))
        self.embeddings = tf.Variable(
            tf.random.stateless_normal([BUCKETS, 8], [1, next(seed)]), name="embeddings"
        )
        self.kernel1 = tf.Variable(
            tf.random.stateless_normal([8, 8], [1, next(seed)]) * 0.5, name="layer1/kernel"
        )
        self.kernel2 = tf.Variable(
            tf.random.stateless_normal([8, 6], [1, next(seed)]) * 0.5, name="layer2/kernel"
        )
        self.calls_in_training = tf.Variable(0, trainable=False, name="calls_in_training")

    @tf.function
    def __call__(self, sentences, training=False):
        if training:
            self.calls_in_training.assign_add(1)
        words = tf.strings.split(tf.strings.lower(sentences))
        ids = tf.strings.to_hash_bucket_fast(words, BUCKETS)
        vectors = tf.ragged.map_flat_values(tf.gather, self.embeddings, ids)
        mean = tf.reduce_mean(vectors, axis=1)
        mean = tf.where(tf.math.is_nan(mean), tf.zeros_like(mean), mean)
        hidden = tf.nn.relu(mean @ self.kernel1)
        return hidden @ self.kernel2


class _TinyAudio(tf.Module):
    """A waveform -> frames -> layer1 -> layer2 embeddings, and unused logits (YAMNet style)."""

    def __init__(self):
        super().__init__()
        self.kernel1 = tf.Variable(
            tf.random.stateless_normal([FRAME, 16], [2, 1]) * 0.1, name="layer1/conv/kernel"
        )
        self.kernel2 = tf.Variable(
            tf.random.stateless_normal([16, 8], [2, 2]) * 0.3, name="layer2/conv/kernel"
        )
        self.logits = tf.Variable(tf.random.stateless_normal([8, 5], [2, 3]), name="logits/kernel")
        self.calls_in_training = tf.Variable(0, trainable=False, name="calls_in_training")

    @tf.function
    def __call__(self, waveform, training=False):
        if training:
            self.calls_in_training.assign_add(1)
        frames = tf.signal.frame(waveform, FRAME, FRAME, pad_end=True)
        spectrum = tf.abs(tf.signal.rfft(frames))[:, : FRAME // 2] / 10.0
        features = tf.concat([spectrum, spectrum], axis=1)  # FRAME values per frame
        embeddings = tf.nn.relu(tf.nn.relu(features @ self.kernel1) @ self.kernel2)
        scores = tf.sigmoid(embeddings @ self.logits)
        return scores, embeddings, spectrum


def _save(module, spec, path) -> str:
    for training in (True, False):
        module.__call__.get_concrete_function(spec, training)
    root = tf.__internal__.tracking.AutoTrackable()
    root.__call__ = module.__call__
    root.variables = list(module.variables)
    root.trainable_variables = list(module.trainable_variables)
    root.module = module
    tf.saved_model.save(root, str(path))
    return str(path)


def save_tiny_text(path) -> str:
    """Save the tiny text model (string [batch] -> float32 [batch, 6]) and return its folder."""
    return _save(_TinyText(), tf.TensorSpec([None], tf.string), path)


def save_tiny_audio(path) -> str:
    """Save the tiny audio model (float32 [samples] -> scores, embeddings [frames, 8],
    spectrum) and return its folder."""
    return _save(_TinyAudio(), tf.TensorSpec([None], tf.float32), path)
