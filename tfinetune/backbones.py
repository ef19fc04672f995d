"""Backbones described by data: `BackboneSpec`, the catalogue, building, and offline weights."""

from __future__ import annotations

import difflib
import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import keras

from tfinetune.images import to_size

WEIGHTS_DIR_ENV = "TFINETUNE_WEIGHTS_DIR"


@dataclass(frozen=True)
class BackboneSpec:
    """What tfinetune needs to know about a feature extractor.

    Args:
        name: the catalogue name, also the name of the built backbone model.
        builder: called as `builder(input_shape=..., weights=None)`; returns a `keras.Model`
            mapping normalised images to a feature map (no classification top).
        default_size: the input size the pretrained weights were made for.
        normalization: the pixel normalisation the weights expect (see
            `tfinetune.normalization.MODES`).
        group_pattern: a regular expression whose first group names the block a layer
            belongs to; consecutive layers with weights and the same block form one layer
            group, used for staged unfreezing. Layers that match nothing form `stem` (at the
            bottom) or `top` groups.
        weights_files: Keras's file names for the ImageNet no-top weights, keyed by input
            size (`0` is the file to fall back on for any other size).
        weights_origin: the folder URL Keras downloads those files from.
        min_size: the smallest input size the architecture accepts.

    Example:
    >>> spec = CATALOGUE["mobilenet_v2"]
    >>> spec.default_size, spec.normalization
    (224, 'tf')
    """

    name: str
    builder: Callable[..., keras.Model]
    default_size: int
    normalization: str
    group_pattern: str
    weights_files: dict[int, str] = field(default_factory=dict)
    weights_origin: str | None = None
    min_size: int = 32

    def weights_candidates(self, image_size: tuple[int, int]) -> list[str]:
        """Keras's ImageNet weight file names for this input size, best first."""
        names = []
        if image_size[0] == image_size[1] and image_size[0] in self.weights_files:
            names.append(self.weights_files[image_size[0]])
        if 0 in self.weights_files and self.weights_files[0] not in names:
            names.append(self.weights_files[0])
        return names


# === Builders ===


_KERAS_WEIGHTS = "https://storage.googleapis.com/tensorflow/keras-applications/"


def _mobilenet_v2(name: str, alpha: float) -> BackboneSpec:
    def build(input_shape, weights=None):
        return keras.applications.MobileNetV2(
            input_shape=input_shape, alpha=alpha, include_top=False, weights=weights
        )

    stem = f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{alpha}_"
    files = {size: f"{stem}{size}_no_top.h5" for size in (96, 128, 160, 192, 224)}
    return BackboneSpec(
        name=name,
        builder=build,
        default_size=224,
        normalization="tf",
        group_pattern=r"^(block_\d+|expanded_conv)",
        weights_files={**files, 0: files[224]},
        weights_origin=_KERAS_WEIGHTS + "mobilenet_v2/",
    )


def convnet_tiny(input_shape, weights=None, widths=(16, 32, 64, 128)) -> keras.Model:
    """A small four-block ConvNet for demos and tests on a CPU (no pretrained weights).

    Args:
        input_shape: `(height, width, 3)`.
        weights: must be None; load your own with `model.load_weights`.
        widths: the number of filters of each block.

    Example:
    >>> convnet_tiny((32, 32, 3)).output_shape
    (None, 2, 2, 128)
    """
    if weights is not None:
        raise ValueError(f"convnet_tiny has no published weights. Received: weights={weights!r}")
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(widths[0], 3, strides=2, padding="same", name="stem_conv")(inputs)
    x = keras.layers.BatchNormalization(momentum=0.9, name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    for i, width in enumerate(widths, start=1):
        stride = 1 if i == 1 else 2
        x = keras.layers.Conv2D(width, 3, strides=stride, padding="same", name=f"block{i}_conv1")(x)
        x = keras.layers.BatchNormalization(momentum=0.9, name=f"block{i}_bn1")(x)
        x = keras.layers.ReLU(name=f"block{i}_relu1")(x)
        x = keras.layers.Conv2D(width, 3, padding="same", name=f"block{i}_conv2")(x)
        x = keras.layers.BatchNormalization(momentum=0.9, name=f"block{i}_bn2")(x)
        x = keras.layers.ReLU(name=f"block{i}_relu2")(x)
    return keras.Model(inputs, x, name="convnet_tiny")


# === Catalogue ===

CATALOGUE: dict[str, BackboneSpec] = {
    "mobilenet_v2": _mobilenet_v2("mobilenet_v2", 1.0),
    "mobilenet_v2_035": _mobilenet_v2("mobilenet_v2_035", 0.35),
    "convnet_tiny": BackboneSpec(
        name="convnet_tiny",
        builder=convnet_tiny,
        default_size=64,
        normalization="tf",
        group_pattern=r"^(block\d+)_",
        min_size=16,
    ),
}


def get_spec(backbone: str | BackboneSpec) -> BackboneSpec:
    """Look a backbone up in the catalogue, or pass a `BackboneSpec` through.

    Args:
        backbone: a catalogue name such as `"mobilenet_v2"`, or a `BackboneSpec`.

    Example:
    >>> get_spec("mobilenet_v2").name
    'mobilenet_v2'
    """
    if isinstance(backbone, BackboneSpec):
        return backbone
    if isinstance(backbone, str) and backbone in CATALOGUE:
        return CATALOGUE[backbone]
    close = difflib.get_close_matches(str(backbone), list(CATALOGUE), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(
        f"Unknown backbone {backbone!r}.{hint} Known backbones: {', '.join(sorted(CATALOGUE))} "
        "(run `tfinetune backbones`), or pass a BackboneSpec."
    )


# === Weights ===


def weights_search_dirs() -> list[Path]:
    """Folders searched for ImageNet weight files before any download, in order.

    `$TFINETUNE_WEIGHTS_DIR` first, then Keras's cache (`$KERAS_HOME/models`, by default
    `~/.keras/models`).

    Example:
    >>> isinstance(weights_search_dirs(), list)
    True
    """
    dirs = []
    if os.environ.get(WEIGHTS_DIR_ENV):
        dirs.append(Path(os.environ[WEIGHTS_DIR_ENV]).expanduser())
    keras_home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    dirs.append(Path(keras_home) / "models")
    return dirs


def resolve_imagenet_weights(spec: BackboneSpec, image_size: tuple[int, int]) -> str:
    """Find ImageNet weights for `spec` locally, or download them through Keras.

    A file found locally under Keras's own name is used without a hash check. Otherwise
    Keras downloads it; when that fails (no internet), the error names the file and where
    to put it.

    Args:
        spec: the backbone.
        image_size: `(height, width)` of the model input.

    Example:
    >>> resolve_imagenet_weights(get_spec("mobilenet_v2"), (224, 224))  # doctest: +SKIP
    '/home/me/.keras/models/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5'
    """
    candidates = spec.weights_candidates(image_size)
    if not candidates:
        raise ValueError(
            f"Backbone {spec.name!r} has no ImageNet weights. Use weights=None or pass the "
            "path of a weights file made for it."
        )
    for folder in weights_search_dirs():
        for name in candidates:
            if (folder / name).is_file():
                return str(folder / name)
    name = candidates[0]
    try:
        return keras.utils.get_file(name, spec.weights_origin + name, cache_subdir="models")
    except Exception as err:  # Keras wraps every download failure in a bare Exception.
        raise FileNotFoundError(
            f"Could not find or download the ImageNet weights for {spec.name!r} ({err}). "
            f"Put the file {name!r} (or {', '.join(repr(c) for c in candidates[1:]) or 'none'}) "
            f"into the folder named by ${WEIGHTS_DIR_ENV} or into "
            f"{weights_search_dirs()[-1]}, or pass weights=<path to the file>."
        ) from err


def load_backbone_weights(model: keras.Model, path: str | os.PathLike, spec_name: str) -> None:
    """Load a weights file into a backbone, with an error that says what went wrong.

    Args:
        model: the backbone.
        path: a `.h5` or `.weights.h5` file made for this architecture.
        spec_name: the backbone's name, for the message.

    Example:
    >>> m = convnet_tiny((32, 32, 3))
    >>> import tempfile
    >>> path = tempfile.mkdtemp() + "/tiny.weights.h5"
    >>> m.save_weights(path)
    >>> load_backbone_weights(m, path, "convnet_tiny")
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"Weights file not found: {str(path)!r}. Pass an existing .h5 file, "
            "weights='imagenet' or weights=None."
        )
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.load_weights(str(path))
        # Keras 3 only warns when parts of a .weights.h5 file match no layer, leaving those
        # layers at random initial values: for a backbone that is a wrong file.
        skipped = [str(w.message) for w in caught if "Skipping" in str(w.message)]
        if skipped:
            raise ValueError(f"{len(skipped)} parts of the file matched no layer: {skipped[0]}")
    except Exception as err:  # Keras raises ValueError, KeyError or OSError by format.
        raise ValueError(
            f"The weights file {str(path)!r} does not fit the backbone {spec_name!r} "
            f"({type(err).__name__}: {err}). Pass a file saved from the same architecture "
            "(for Keras applications: the matching *_no_top.h5 file), or weights=None."
        ) from err


def build_backbone(
    backbone: str | BackboneSpec,
    image_size: int | tuple[int, int] | None = None,
    weights: str | os.PathLike | None = None,
) -> keras.Model:
    """Build a backbone's feature extractor, named after its spec, with weights loaded.

    Args:
        backbone: a catalogue name or a `BackboneSpec`.
        image_size: the input size; defaults to the spec's `default_size`.
        weights: `None` (random), `"imagenet"` (found offline or downloaded), or the path of
            a weights file.

    Example:
    >>> build_backbone("convnet_tiny", image_size=32).output_shape
    (None, 2, 2, 128)
    """
    spec = get_spec(backbone)
    size = to_size(image_size or spec.default_size)
    if min(size) < spec.min_size:
        raise ValueError(
            f"Backbone {spec.name!r} needs inputs of at least {spec.min_size} pixels. "
            f"Received: image_size={image_size!r}"
        )
    model = spec.builder(input_shape=(*size, 3), weights=None)
    if weights is None:
        pass
    elif isinstance(weights, str) and weights == "imagenet":
        load_backbone_weights(model, resolve_imagenet_weights(spec, size), spec.name)
    elif isinstance(weights, (str, os.PathLike)):
        load_backbone_weights(model, weights, spec.name)
    else:
        raise ValueError(
            f"weights must be None, 'imagenet' or a file path. Received: weights={weights!r}"
        )
    # A fresh Functional over the same layers carries the spec's name, which is how a
    # classifier's backbone is recognised later (also after saving and loading).
    return keras.Model(model.input, model.output, name=spec.name)


def group_layers(layers: list[keras.layers.Layer], pattern: str) -> list[tuple[str, list]]:
    """Split layers with weights into consecutive groups named by `pattern`'s first group.

    Args:
        layers: a backbone's layers, bottom to top.
        pattern: a regular expression as in `BackboneSpec.group_pattern`.

    Example:
    >>> [name for name, _ in group_layers(convnet_tiny((32, 32, 3)).layers, r"^(block\\d+)_")]
    ['stem', 'block1', 'block2', 'block3', 'block4']
    """
    regex = re.compile(pattern)
    groups: list[tuple[str, list]] = []
    last_key: str | None = None
    for layer in layers:
        if not layer.weights:
            continue
        match = regex.match(layer.name)
        key = match.group(1) if match else ""
        if not groups or key != last_key:
            name = key or ("stem" if not groups else "top")
            groups.append((name, []))
            last_key = key
        groups[-1][1].append(layer)
    return groups
