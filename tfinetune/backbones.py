"""Building backbones from the catalogue, with weights resolved offline first."""

from __future__ import annotations

import contextlib
import difflib
import os
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import keras
from keras.src.utils import file_utils

from tfinetune.catalogue import CATALOGUE, convnet_tiny
from tfinetune.hub import HUB_PREFIX, hub_spec
from tfinetune.images import to_size
from tfinetune.specs import BackboneSpec, group_layers

__all__ = [
    "CATALOGUE",
    "WEIGHTS_DIR_ENV",
    "BackboneSpec",
    "build_backbone",
    "convnet_tiny",
    "describe_backbone",
    "get_spec",
    "group_layers",
    "load_backbone_weights",
    "weights_search_dirs",
]

WEIGHTS_DIR_ENV = "TFINETUNE_WEIGHTS_DIR"


def get_spec(backbone: str | BackboneSpec) -> BackboneSpec:
    """Look a backbone up in the catalogue, or pass a `BackboneSpec` through.

    Args:
        backbone: a catalogue name such as `"mobilenet_v2"`, `"hub:<TF Hub or Kaggle handle,
            or a SavedModel folder>"`, or a `BackboneSpec`.

    Example:
    >>> get_spec("mobilenet_v2").name
    'mobilenet_v2'
    """
    if isinstance(backbone, BackboneSpec):
        return backbone
    if isinstance(backbone, str) and backbone.startswith(HUB_PREFIX):
        return hub_spec(backbone[len(HUB_PREFIX) :])
    if isinstance(backbone, str) and backbone in CATALOGUE:
        return CATALOGUE[backbone]
    close = difflib.get_close_matches(str(backbone).lower(), list(CATALOGUE), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(
        f"Unknown backbone {backbone!r}.{hint} Run `tfinetune backbones` for the "
        f"{len(CATALOGUE)} known names, or pass a BackboneSpec."
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


def _local_candidates(name: str) -> list[str]:
    """The file Keras asks for, then the same weights made for 224 pixels.

    MobileNet files encode the input size they were trained at; convolution weights fit any
    size, so the 224 file serves at 160 when that is the one at hand.
    """
    at_224 = re.sub(r"_(96|128|160|192)_", "_224_", name)
    return [name] if at_224 == name else [name, at_224]


@contextlib.contextmanager
def _local_weights_first(requested: list[str]) -> Iterator[None]:
    """While Keras builds a model, serve the weight files it asks for from local folders.

    A file found under Keras's own name is used without Keras's hash check (local copies may
    be re-serialised); otherwise Keras downloads it as usual. Asked-for names are recorded.
    """
    download = file_utils.get_file

    def get_file(fname=None, origin=None, *args, **kwargs):
        name = fname or os.path.basename(origin or "")
        requested.append(name)
        for candidate in _local_candidates(name):
            for folder in weights_search_dirs():
                if (folder / candidate).is_file():
                    return str(folder / candidate)
        return download(fname, origin, *args, **kwargs)

    file_utils.get_file = get_file
    try:
        yield
    finally:
        file_utils.get_file = download


def _build_imagenet(spec: BackboneSpec, input_shape: tuple[int, int, int]) -> keras.Model:
    if not spec.imagenet:
        raise ValueError(
            f"Backbone {spec.name!r} has no ImageNet weights. Use weights=None or pass the "
            "path of a weights file made for it."
        )
    requested: list[str] = []
    try:
        with _local_weights_first(requested):
            return spec.builder(input_shape=input_shape, weights="imagenet")
    except Exception as err:  # Keras wraps every download failure in a bare Exception.
        if not requested:
            raise
        names = " or ".join(repr(c) for c in _local_candidates(requested[-1]))
        raise FileNotFoundError(
            f"Could not find or download the ImageNet weights for {spec.name!r} ({err}). "
            f"Put the file {names} into the folder named by ${WEIGHTS_DIR_ENV} or into "
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
            "(for Keras applications: the matching *_notop.h5 file), or weights=None."
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
    input_shape = (*size, 3)
    if isinstance(weights, str) and weights == "imagenet":
        model = _build_imagenet(spec, input_shape)
    elif weights is None or isinstance(weights, (str, os.PathLike)):
        model = spec.builder(input_shape=input_shape, weights=None)
        if weights is not None:
            load_backbone_weights(model, weights, spec.name)
    else:
        raise ValueError(
            f"weights must be None, 'imagenet' or a file path. Received: weights={weights!r}"
        )
    # A fresh Functional over the same layers carries the spec's name, which is how a
    # classifier's backbone is recognised later (also after saving and loading).
    return keras.Model(model.input, model.output, name=spec.name)


def describe_backbone(backbone: str | BackboneSpec) -> dict:
    """Facts about a backbone for listings: sizes, parameters, normalisation, layer groups.

    Builds it once with random weights at its smallest input size (the parameter count of a
    network without its top does not depend on the input size).

    Args:
        backbone: a catalogue name or a `BackboneSpec`.

    Example:
    >>> describe_backbone("convnet_tiny")["layer_groups"]
    5
    """
    spec = get_spec(backbone)
    model = build_backbone(spec, image_size=max(spec.min_size, 32), weights=None)
    groups = group_layers(model.layers, spec.group_pattern, spec.boundary_pattern)
    return {
        "name": spec.name,
        "default_size": spec.default_size,
        "parameters": model.count_params(),
        "normalization": spec.normalization,
        "layer_groups": len(groups),
        "imagenet": spec.imagenet,
    }
