"""A SavedModel's variables in named blocks, from their names, for staged unfreezing.

A TF Hub model is one Keras layer, but its variables carry the names of the blocks they
belong to (`layer3/depthwise_conv/kernel`, `block_12_project/kernel`, `embeddings`).
`HubBlock` is a Keras layer that owns one such block's variables, so freezing and unfreezing
a block is setting one layer's `trainable`, as for any Keras backbone. Variables the model's
output does not depend on (a classifier's logits behind a feature-vector output) are left
out: they would never receive a gradient.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import keras
import tensorflow as tf

# Block names in common TF Hub models: `layer3` (YAMNet), `block_12` (MobileNetV2),
# `stage_2`, `cell_4`, `encoder_layer_3`, `transformer/layer_7` (BERT encoders).
DEFAULT_BLOCK_PATTERN = r"(?:^|/)((?:block|layer|stage|cell|encoder_layer)[_-]?\d+)(?:[_/]|$)"


def variable_key(name: str) -> str:
    """A SavedModel variable's name without the `:0` suffix.

    Args:
        name: `variable.name`.

    Example:
    >>> variable_key("layer1/conv/kernel:0")
    'layer1/conv/kernel'
    """
    return name.rsplit(":", 1)[0] if re.search(r":\d+$", name) else name


def block_names(names: Sequence[str], pattern: str | None = None) -> list[str]:
    """The block each variable belongs to, in order: consecutive variables form blocks.

    A variable joins the block its name's match names. Variables matching nothing join the
    block before them (`stem` before the first match, `top` after the last). When no name
    matches, each first path component is its own block (an embedding table is `embeddings`).

    Args:
        names: variable names, bottom to top.
        pattern: a regular expression with one group, searched in each name; default
            `DEFAULT_BLOCK_PATTERN`.

    Example:
    >>> block_names(["conv0/k", "layer1/a/k", "layer1/b/k", "layer2/k", "head/k"])
    ['stem', 'layer1', 'layer1', 'layer2', 'top']
    >>> block_names(["embeddings:0"])
    ['embeddings']
    """
    regex = re.compile(pattern or DEFAULT_BLOCK_PATTERN)
    keys = [(m.group(1) if (m := regex.search(n)) else None) for n in names]
    if not any(keys):
        return [variable_key(n).split("/")[0] for n in names]
    last = max(i for i, k in enumerate(keys) if k)
    blocks, current = [], "stem"
    for i, key in enumerate(keys):
        current = key or ("top" if i > last else current)
        blocks.append(current)
    return blocks


def used_variables(
    call: Callable, probe, variables: Sequence[tf.Variable]
) -> tuple[list[bool], tf.Tensor]:
    """Whether the output of `call(probe)` depends on each variable (has a gradient), and the
    output.

    A SavedModel function's gradient is zero, not None, for variables it captures but does
    not use, so a zero gradient counts as unused too: pass a probe input that exercises the
    model (random values, real words). Non-trainable variables (moving statistics) count as
    used: they take no gradient.

    Args:
        call: the model's forward function.
        probe: an input it accepts.
        variables: the model's variables.

    Example:
    >>> v, w = tf.Variable(2.0), tf.Variable(3.0)
    >>> used_variables(lambda x: x * v, tf.constant(1.0), [v, w])[0]
    [True, False]
    """
    trainable = [v for v in variables if v.trainable]
    with tf.GradientTape() as tape:
        result = call(probe)
        output = tf.nest.flatten(result)
        total = tf.add_n([tf.reduce_sum(tf.square(tf.cast(o, tf.float32))) for o in output])
    gradients = tape.gradient(total, trainable)
    used = {id(v) for v, g in zip(trainable, gradients, strict=True) if _nonzero(g)}
    return [not v.trainable or id(v) in used for v in variables], result


def _nonzero(gradient) -> bool:
    if gradient is None:
        return False
    values = gradient.values if isinstance(gradient, tf.IndexedSlices) else gradient
    return bool(tf.reduce_any(tf.not_equal(values, 0)))


@keras.saving.register_keras_serializable(package="tfinetune")
class HubBlock(keras.layers.Layer):
    """One block of a SavedModel's variables, trained or frozen together.

    Its weights *are* the SavedModel's variables (Keras 3 wraps a `tf.Variable` given as the
    initializer instead of copying it), so `fit` trains what the SavedModel computes with.

    Args:
        variables: the block's `tf.Variable`s.
        trainable_ids: `id()`s of the variables the SavedModel lists as trainable.
        name: the block's name.
    """

    def __init__(self, variables: Sequence[tf.Variable], trainable_ids: set[int], name: str):
        super().__init__(name=name)
        self.hub_weights = [
            keras.Variable(
                initializer=v,
                trainable=id(v) in trainable_ids,
                dtype=v.dtype,
                shape=v.shape,
                name=variable_key(v.name).replace("/", "_"),
            )
            for v in variables
        ]
        self.built = True

    def call(self, inputs):  # pragma: no cover - a holder of weights, never called
        return inputs


def make_blocks(loaded, keep: Sequence[bool], pattern: str | None, layer_name: str) -> list:
    """`HubBlock`s for a loaded SavedModel's variables (those `keep` marks), bottom to top.

    Args:
        loaded: the loaded SavedModel.
        keep: for each of `loaded.variables`, whether the output depends on it.
        pattern: see `block_names`.
        layer_name: the hub layer's name, to make block names unique in a model.
    """
    variables = [v for v, k in zip(loaded.variables, keep, strict=True) if k]
    trainable_ids = {id(v) for v in getattr(loaded, "trainable_variables", [])}
    names = block_names([v.name for v in variables], pattern)
    blocks: list[HubBlock] = []
    start = 0
    for i in range(1, len(names) + 1):
        if i == len(names) or names[i] != names[start]:
            name = f"{layer_name}_{names[start]}".replace("/", "_")
            taken = sum(b.name == name or b.name.startswith(f"{name}_") for b in blocks)
            blocks.append(
                HubBlock(variables[start:i], trainable_ids, f"{name}_{taken}" if taken else name)
            )
            start = i
    return blocks
