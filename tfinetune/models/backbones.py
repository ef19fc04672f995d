"""Looking backbones up (catalogue, TF Hub, your own spec) and building them with weights."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import keras

from tfinetune.models.catalogue import CATALOGUE, LISTING, catalogue_entry, listing
from tfinetune.models.specs import HUB_PREFIX, BackboneSpec, group_layers
from tfinetune.models.weights import (
    WEIGHTS_DIR_ENV,
    check_weights_argument,
    find_local_weights,
    weights_file_candidates,
    weights_search_dirs,
)
from tfinetune.sizes import to_size


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
        from tfinetune.models.hub import hub_spec  # TensorFlow: imported only for hub models

        return hub_spec(backbone[len(HUB_PREFIX) :])
    return catalogue_entry(backbone)


# === Weights ===


def _build_imagenet(spec: BackboneSpec, input_shape: tuple[int, int, int]) -> keras.Model:
    """Build with ImageNet weights: a local file's path when there is one, else Keras's download."""
    if not spec.imagenet:
        raise ValueError(
            f"Backbone {spec.name!r} has no ImageNet weights. Use weights=None or pass the "
            "path of a weights file made for it."
        )
    size = input_shape[:2]
    local = find_local_weights(spec, size)
    if local is not None:
        return spec.builder(input_shape=input_shape, weights=str(local))
    candidates = weights_file_candidates(spec, size)
    try:
        return spec.builder(input_shape=input_shape, weights="imagenet")
    except Exception as err:  # Keras wraps every download failure in a bare Exception.
        if not candidates:
            raise
        names = " or ".join(repr(c) for c in candidates)
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
    >>> from tfinetune.models.catalogue import convnet_tiny
    >>> m = convnet_tiny((32, 32, 3))
    >>> import tempfile
    >>> path = tempfile.mkdtemp() + "/tiny.weights.h5"
    >>> m.save_weights(path)
    >>> load_backbone_weights(m, path, "convnet_tiny")
    """
    check_weights_argument(path)
    path = Path(path)
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
        expected = getattr(CATALOGUE.get(spec_name), "weights_file", None)
        which = f"Keras's ImageNet file is {expected}" if expected else "Keras's have no top"
        raise ValueError(
            f"The weights file {str(path)!r} does not fit the backbone {spec_name!r}, or is "
            f"damaged ({type(err).__name__}: {str(err)[:200]}). Pass a file saved from the "
            f"same architecture without its top ({which}), or weights=None."
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
    check_weights_argument(weights)
    size = to_size(spec.default_size if image_size is None else image_size)
    if min(size) < spec.min_size:
        raise ValueError(
            f"Backbone {spec.name!r} needs inputs of at least {spec.min_size} pixels. "
            f"Received: image_size={image_size!r}"
        )
    input_shape = (*size, 3)
    if isinstance(weights, str) and weights == "imagenet":
        model = _build_imagenet(spec, input_shape)
    else:
        model = spec.builder(input_shape=input_shape, weights=None)
        if weights is not None:
            load_backbone_weights(model, weights, spec.name)
    # A fresh Functional over the same layers carries the spec's name, which is how a
    # classifier's backbone is recognised later (also after saving and loading).
    return keras.Model(model.input, model.output, name=spec.name)


def describe_backbone(backbone: str | BackboneSpec) -> dict:
    """Facts about a backbone for listings: sizes, parameters, normalisation, layer groups.

    A catalogue entry's come from the catalogue (`tfinetune.models.catalogue.listing`);
    another spec is built once with random weights at its smallest input size (the
    parameter count of a network without its top does not depend on the input size).

    Args:
        backbone: a catalogue name or a `BackboneSpec`.

    Example:
    >>> describe_backbone("convnet_tiny")["layer_groups"]
    5
    """
    spec = get_spec(backbone)
    if spec.name in LISTING and CATALOGUE[spec.name] is spec:
        return listing(spec.name)
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
