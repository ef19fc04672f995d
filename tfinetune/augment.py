"""Augmentation policies built from Keras preprocessing layers, applied in the `tf.data` map."""

from __future__ import annotations

from collections.abc import Sequence

import keras


def _light(seed: int | None) -> list[keras.layers.Layer]:
    return [
        keras.layers.RandomFlip("horizontal", seed=seed),
        keras.layers.RandomRotation(0.04, fill_mode="reflect", seed=seed),
        keras.layers.RandomZoom((-0.15, 0.0), fill_mode="reflect", seed=seed),
    ]


POLICIES = {"none": lambda seed: [], "light": _light}


def build_augmentation(
    policy: str | Sequence[keras.layers.Layer] | None = "light", seed: int | None = None
) -> keras.Sequential | None:
    """Build an augmentation pipeline from a policy name or an explicit list of layers.

    The result runs on batches of pixels (0..255) inside `tf.data`, with `training=True`;
    Keras preprocessing layers are the identity when called with `training=False`.

    Args:
        policy: `"none"`, `"light"`, a list of Keras layers, or None (no augmentation).
        seed: seeds every random layer, for repeatable augmentation.

    Example:
    >>> aug = build_augmentation("light", seed=1)
    >>> [layer.__class__.__name__ for layer in aug.layers]
    ['RandomFlip', 'RandomRotation', 'RandomZoom']
    """
    if policy is None:
        return None
    if isinstance(policy, str):
        if policy not in POLICIES:
            raise ValueError(
                f"Unknown augmentation policy. Expected one of {sorted(POLICIES)} or a list "
                f"of Keras layers. Received: augment={policy!r}"
            )
        layers = POLICIES[policy](seed)
    else:
        layers = list(policy)
    return keras.Sequential(layers, name="augmentation") if layers else None
