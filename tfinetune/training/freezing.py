"""Layer groups and trainable flags for staged unfreezing, with a BatchNorm policy.

A classifier's layer groups are the backbone's blocks, bottom to top, then the head. Keras
reads `trainable` when a model is compiled, so recompile after changing it (`fine_tune`
does). By default BatchNormalization layers stay frozen, which in Keras 3 also means they
run in inference mode (moving statistics, no updates) in `fit`, `evaluate` and `predict`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import keras
import numpy as np

from tfinetune.models.backbones import BackboneSpec, group_layers
from tfinetune.models.classifier import backbone_spec_of, find_backbone
from tfinetune.models.heads import HEAD_PREFIX


@dataclass
class LayerGroup:
    """A run of layers that are frozen or unfrozen together.

    Args:
        name: the block's name (`stem`, `block_3`, ..., `top`, `head`).
        layers: its layers that hold weights, bottom to top.
    """

    name: str
    layers: list[keras.layers.Layer]

    def count_params(self) -> tuple[int, int]:
        """Return `(trainable, frozen)` parameter counts of this group."""
        trainable = sum(int(np.prod(w.shape)) for lay in self.layers for w in lay.trainable_weights)
        total = sum(int(np.prod(w.shape)) for lay in self.layers for w in lay.weights)
        return trainable, total - trainable


def layer_groups(model: keras.Model, spec: BackboneSpec | None = None) -> list[LayerGroup]:
    """The layer groups of a classifier: backbone blocks bottom to top, then the head.

    Args:
        model: a classifier made by `build_classifier`.
        spec: the backbone's spec; needed only for a classifier loaded from a file whose
            backbone is not in the catalogue (a classifier remembers the spec it was built
            from, and catalogue backbones are found by name; otherwise the backbone is one
            group).

    Example:
    >>> from tfinetune.models.classifier import build_classifier
    >>> m = build_classifier("convnet_tiny", weights=None, image_size=32)
    >>> [g.name for g in layer_groups(m)]
    ['stem', 'block1', 'block2', 'block3', 'block4', 'head']
    """
    backbone = find_backbone(model)
    spec = spec or backbone_spec_of(model)
    pattern, boundary = (spec.group_pattern, spec.boundary_pattern) if spec else (None, None)
    hubs = [layer for layer in backbone.layers if _is_hub_layer(layer)]
    if hubs:  # a SavedModel's blocks, named from its variable names (see models.hub_groups)
        groups = [(b.name.removeprefix(f"{h.name}_"), [b]) for h in hubs for b in h.blocks]
    else:
        groups = group_layers(backbone.layers, pattern, boundary)
    head = [
        layer
        for layer in model.layers
        if layer is not backbone and layer.weights and layer.name.startswith(HEAD_PREFIX)
    ]
    return [LayerGroup(name, layers) for name, layers in groups] + [LayerGroup("head", head)]


def freeze_to(
    model: keras.Model, n: int, *, train_bn: bool = False, spec: BackboneSpec | None = None
) -> list[LayerGroup]:
    """Train the top `n` layer groups (the head counts as one) and freeze the rest.

    Args:
        model: a classifier made by `build_classifier`.
        n: how many groups, from the top, train; `1` trains only the head, `"all"` every
            group.
        train_bn: also train BatchNormalization layers in the unfrozen groups (fastai's
            `train_bn`); by default they stay frozen and in inference mode.
        spec: the backbone's spec (see `layer_groups`).

    Returns:
        The layer groups, for inspection.

    Example:
    >>> from tfinetune.models.classifier import build_classifier
    >>> m = build_classifier("convnet_tiny", weights=None, image_size=32)
    >>> _ = freeze_to(m, 2)
    >>> [w.path for w in m.trainable_weights][:2]
    ['block4_conv1/kernel', 'block4_conv1/bias']
    """
    groups = layer_groups(model, spec)
    if n == "all":
        n = len(groups)
    if not isinstance(n, int) or not 1 <= n <= len(groups):
        raise ValueError(
            f"n must be between 1 (the head only) and {len(groups)} (every group, or 'all') "
            f"for this model, whose groups are {[g.name for g in groups]}. Received: n={n!r}"
        )
    backbone = find_backbone(model)
    backbone.trainable = n > 1
    first_trainable = len(groups) - n
    for index, group in enumerate(groups):
        for layer in group.layers:
            is_bn = isinstance(layer, keras.layers.BatchNormalization)
            layer.trainable = index >= first_trainable and (train_bn or not is_bn)
    return groups


def freeze(model: keras.Model, spec: BackboneSpec | None = None) -> list[LayerGroup]:
    """Freeze the whole backbone and train the head only.

    Args:
        model: a classifier made by `build_classifier`.
        spec: the backbone's spec (see `layer_groups`).

    Example:
    >>> from tfinetune.models.classifier import build_classifier
    >>> m = build_classifier("convnet_tiny", num_classes=3, weights=None, image_size=32)
    >>> _ = freeze(m)
    >>> len(m.trainable_weights)
    2
    """
    return freeze_to(model, 1, spec=spec)


def unfreeze(
    model: keras.Model, *, train_bn: bool = False, spec: BackboneSpec | None = None
) -> list[LayerGroup]:
    """Train every layer group (BatchNorm stays frozen unless `train_bn`).

    Args:
        model: a classifier made by `build_classifier`.
        train_bn: also train BatchNormalization layers.
        spec: the backbone's spec (see `layer_groups`).

    Example:
    >>> from tfinetune.models.classifier import build_classifier
    >>> m = build_classifier("convnet_tiny", weights=None, image_size=32)
    >>> _ = unfreeze(m)
    >>> any("bn" in w.path for w in m.trainable_weights)
    False
    """
    return freeze_to(model, len(layer_groups(model, spec)), train_bn=train_bn, spec=spec)


def trainable_summary(model: keras.Model, spec: BackboneSpec | None = None) -> str:
    """A table of layer groups with their layer counts and trainable and frozen parameters.

    Args:
        model: a classifier made by `build_classifier`.
        spec: the backbone's spec (see `layer_groups`).

    Example:
    >>> from tfinetune.models.classifier import build_classifier
    >>> m = build_classifier("convnet_tiny", weights=None, image_size=32)
    >>> print(trainable_summary(m).splitlines()[0])
    group       layers    trainable       frozen
    """
    rows = [f"{'group':<10}{'layers':>8}{'trainable':>13}{'frozen':>13}"]
    total_t = total_f = 0
    for group in layer_groups(model, spec):
        t, f = group.count_params()
        total_t, total_f = total_t + t, total_f + f
        rows.append(f"{group.name:<10}{len(group.layers):>8}{t:>13,}{f:>13,}")
    rows.append(f"{'total':<10}{'':>8}{total_t:>13,}{total_f:>13,}")
    return "\n".join(rows)


def _is_hub_layer(layer: keras.Layer) -> bool:
    """Whether `layer` is a `HubLayer` (whose module, and TensorFlow, is imported only if used)."""
    hub = sys.modules.get("tfinetune.models.hub")
    return hub is not None and isinstance(layer, hub.HubLayer)
