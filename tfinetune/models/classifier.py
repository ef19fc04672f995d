"""`build_classifier`: raw RGB pixels -> the backbone's normalisation -> backbone -> head."""

from __future__ import annotations

import os
import weakref
from typing import Any

import keras

from tfinetune.models.backbones import CATALOGUE, BackboneSpec, build_backbone, get_spec
from tfinetune.models.heads import build_head, check_task, head_options_of
from tfinetune.models.mirror import MEAN_LAYER, VIEWS_LAYER, MirrorMean, MirrorViews
from tfinetune.models.normalization import PixelNormalization
from tfinetune.models.options import HeadOptions
from tfinetune.models.specs import AUDIO_RATE
from tfinetune.sizes import to_size

# The spec each classifier was built from, so that a backbone described by your own
# `BackboneSpec` keeps its layer groups (a catalogue backbone is also found by its name).
_SPECS: weakref.WeakKeyDictionary[keras.Model, BackboneSpec] = weakref.WeakKeyDictionary()


def build_classifier(
    backbone: str | BackboneSpec = "mobilenet_v2",
    num_classes: int = 2,
    *,
    weights: str | os.PathLike | None = "imagenet",
    image_size: int | tuple[int, int] | None = None,
    task: str = "single_label",
    head: HeadOptions | None = None,
    target_mean: float = 0.0,
    target_std: float = 1.0,
    clip_seconds: float | None = None,
    mirror: bool = False,
    **head_options: Any,
) -> keras.Model:
    """Build a model for images (RGB pixels in 0..255), text or audio: a classifier or regressor.

    The normalisation the backbone's weights expect is the model's first layer, so the same
    model trains, evaluates and serves on plain images. The backbone starts frozen; use
    `tfinetune.fine_tune` or the functions in `tfinetune.training.freezing` to unfreeze it.

    Args:
        backbone: a catalogue name (see `tfinetune.CATALOGUE`) or a `BackboneSpec`.
        num_classes: the number of classes (or of regression targets).
        weights: `None`, `"imagenet"` or the path of a Keras weights file for the backbone.
        image_size: the input size, one int or `(height, width)`; defaults to the backbone's.
        task: "single_label" (softmax), "multi_label" (sigmoids) or "regression" (numbers
            in the target's units; see `target_mean`).
        head: the head's shape: pooling, hidden layers, dropout, BatchNormalization (see
            `HeadOptions`; default: `HeadOptions()`, average pooling and dropout 0.2).
        target_mean: regression: the training targets' mean (predictions come back in the
            target's units).
        target_std: regression: the training targets' standard deviation.
        clip_seconds: sound: the clip length the model takes (default: the backbone's).
        mirror: images: at inference, average each image's features with its mirror's
            (`tfinetune.models.mirror`), so `predict` and every export do it too.
        **head_options: `HeadOptions` fields by name, changing `head` (`pooling="max"`).

    Example:
    >>> model = build_classifier("convnet_tiny", num_classes=3, weights=None, image_size=32)
    >>> model.output_shape
    (None, 3)
    >>> build_classifier("convnet_tiny", 3, weights=None, image_size=32,
    ...                  head=HeadOptions(hidden_units=[8])).get_layer("head_dense_0").units
    8
    """
    check_task(task)
    spec = get_spec(backbone)
    # === Layers ===
    if spec.modality == "image":
        size = to_size(spec.default_size if image_size is None else image_size)
        features_model = build_backbone(spec, image_size=size, weights=weights)
        inputs = keras.Input((*size, 3), name="pixels")
        x = PixelNormalization(spec.normalization, name="normalize")(inputs)
        x = features_model(MirrorViews(name=VIEWS_LAYER)(x) if mirror else x)
        x = MirrorMean(name=MEAN_LAYER)(x) if mirror else x
    else:
        if mirror:
            raise ValueError(
                f"mirror=True averages mirrored images; {spec.name!r} takes {spec.modality}. "
                "Leave mirror off for text and sound."
            )
        features_model = _signal_backbone(spec, weights, clip_seconds)
        inputs = keras.Input(
            features_model.input_shape[1:], dtype=features_model.input.dtype, name=spec.modality
        )
        x = features_model(inputs)
    outputs = build_head(
        x,
        num_classes,
        task=task,
        head=head_options_of(head, head_options),
        target_mean=target_mean,
        target_std=target_std,
    )
    model = keras.Model(inputs, outputs, name=f"{spec.name}_classifier")

    # === Initial state: backbone frozen ===
    features_model.trainable = False
    _SPECS[model] = spec
    return model


def _signal_backbone(spec: BackboneSpec, weights, clip_seconds: float | None) -> keras.Model:
    """A text or audio backbone: strings `[batch]`, or waveforms `[batch, samples]`."""
    if spec.modality == "text":
        shape: tuple = ()
    else:
        samples = spec.default_size
        if clip_seconds is not None:
            if not clip_seconds > 0:
                raise ValueError(f"clip_seconds must be above 0. Received: {clip_seconds!r}")
            samples = max(1, round(clip_seconds * spec.sample_rate))
        shape = (samples,)
    model = spec.builder(input_shape=shape, weights=weights)
    return keras.Model(model.input, model.output, name=spec.name)


def find_backbone(model: keras.Model) -> keras.Model:
    """Return the backbone sub-model of a classifier made by `build_classifier`.

    Args:
        model: a classifier.

    Example:
    >>> m = build_classifier("convnet_tiny", weights=None, image_size=32)
    >>> find_backbone(m).name
    'convnet_tiny'
    """
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if len(nested) != 1:
        raise ValueError(
            f"Expected a classifier with exactly one nested backbone model, found {len(nested)} "
            f"in {model.name!r}. Build it with tfinetune.build_classifier."
        )
    return nested[0]


def backbone_spec_of(model: keras.Model) -> BackboneSpec | None:
    """The spec a classifier was built from, else its backbone's catalogue entry, else None.

    A classifier loaded from a file remembers only its backbone's name: for a backbone not
    in the catalogue, pass its spec to the functions that group layers.

    Args:
        model: a classifier.

    Example:
    >>> m = build_classifier("convnet_tiny", weights=None, image_size=32)
    >>> backbone_spec_of(m).name
    'convnet_tiny'
    """
    return _SPECS.get(model) or CATALOGUE.get(find_backbone(model).name)


def modality_of(model: keras.Model) -> str:
    """What a classifier takes: `"image"`, `"text"` (a string per example) or `"audio"`.

    Args:
        model: a model made by `build_classifier` (or any Keras model).

    Example:
    >>> modality_of(build_classifier("convnet_tiny", weights=None, image_size=32))
    'image'
    """
    if model.inputs[0].dtype == "string":
        return "text"
    return "audio" if len(model.input_shape) == 2 else "image"


def sample_rate_of(model: keras.Model) -> int | None:
    """An audio classifier's sample rate in Hz (None for other models).

    Args:
        model: a model made by `build_classifier`.

    Example:
    >>> sample_rate_of(build_classifier("convnet_tiny", weights=None, image_size=32)) is None
    True
    """
    if modality_of(model) != "audio":
        return None
    spec = backbone_spec_of(model)
    return spec.sample_rate if spec is not None and spec.sample_rate else AUDIO_RATE
