"""The backbone catalogue: every `keras.applications` family, plus a tiny ConvNet for demos.

A plain dict of `BackboneSpec`s, written out as data. Each entry records the normalisation
its ImageNet weights expect (the `preprocess_input` of its Keras module, moved inside the
model) and how its layers group into blocks for staged unfreezing.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import TYPE_CHECKING

from tfinetune.models.specs import BackboneSpec

if TYPE_CHECKING:  # Keras is imported where a network is built: listing needs none
    import keras


def _application(function: str, **options) -> Callable[..., keras.Model]:
    """A builder for `keras.applications.<function>` without its classification top."""

    def build(input_shape, weights=None):
        import keras

        make = getattr(keras.applications, function)
        return make(include_top=False, weights=weights, input_shape=input_shape, **options)

    return build


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
    import keras

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


def _family(
    names_and_functions: dict[str, tuple[str, int]],
    normalization: str,
    keras_module: str,
    weights_file: Callable[[str], str],
    min_size: int = 32,
    **grouping,
) -> dict[str, BackboneSpec]:
    return {
        name: BackboneSpec(
            name=name,
            builder=_application(function),
            default_size=size,
            normalization=normalization,
            keras_module=keras_module,
            min_size=min_size,
            weights_file=weights_file(name),
            **grouping,
        )
        for name, (function, size) in names_and_functions.items()
    }


# The file names Keras's applications look for (in its cache, then online), without the top.
def _tf_kernels(name: str) -> str:
    return f"{name}_weights_tf_dim_ordering_tf_kernels_notop.h5"


def _notop(name: str) -> str:
    return f"{name}_notop.h5"


def _mobilenet_v3(name: str) -> str:
    return f"weights_mobilenet_v3_{name.split('_')[-1]}_224_1.0_float_no_top_v2.h5"


_MOBILENET_V2_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{alpha}_{{rows}}_no_top.h5"

_RESNET_BLOCKS = r"^(conv\d_block\d+)_"
_EFFICIENTNET_BLOCKS = r"^(block\d+[a-z])_"

# fmt: off
CATALOGUE: dict[str, BackboneSpec] = {
    # === ResNet ===
    **_family(
        {"resnet50": ("ResNet50", 224), "resnet101": ("ResNet101", 224),
         "resnet152": ("ResNet152", 224)},
        "caffe", "resnet", _tf_kernels, group_pattern=_RESNET_BLOCKS,
    ),
    **_family(
        {"resnet50_v2": ("ResNet50V2", 224), "resnet101_v2": ("ResNet101V2", 224),
         "resnet152_v2": ("ResNet152V2", 224)},
        "tf", "resnet_v2", lambda n: _tf_kernels(n.replace("_v2", "v2")),
        group_pattern=_RESNET_BLOCKS,
    ),
    # === EfficientNet ===
    **_family(
        {f"efficientnet_b{i}": (f"EfficientNetB{i}", size)
         for i, size in enumerate((224, 240, 260, 300, 380, 456, 528, 600))},
        "none", "efficientnet", lambda n: _notop(n.replace("_", "")),
        group_pattern=_EFFICIENTNET_BLOCKS,
    ),
    **_family(
        {f"efficientnetv2_{v.lower()}": (f"EfficientNetV2{v}", size)
         for v, size in (("B0", 224), ("B1", 240), ("B2", 260), ("B3", 300), ("S", 384),
                         ("M", 480), ("L", 480))},
        "none", "efficientnet_v2", lambda n: _notop(n.replace("_", "-")),
        group_pattern=_EFFICIENTNET_BLOCKS,
    ),
    # === MobileNet ===
    **_family(
        {"mobilenet": ("MobileNet", 224)}, "tf", "mobilenet",
        lambda n: "mobilenet_1_0_{rows}_tf_no_top.h5",
        group_pattern=r"^conv_(?:dw|pw)_(\d+)",
    ),
    "mobilenet_v2": BackboneSpec(
        "mobilenet_v2", _application("MobileNetV2", alpha=1.0), 224, "tf",
        group_pattern=r"^(block_\d+|expanded_conv)_", keras_module="mobilenet_v2",
        weights_file=_MOBILENET_V2_FILE.format(alpha="1.0"),
    ),
    "mobilenet_v2_035": BackboneSpec(
        "mobilenet_v2_035", _application("MobileNetV2", alpha=0.35), 224, "tf",
        group_pattern=r"^(block_\d+|expanded_conv)_", keras_module="mobilenet_v2",
        weights_file=_MOBILENET_V2_FILE.format(alpha="0.35"),
    ),
    **_family(
        {"mobilenet_v3_small": ("MobileNetV3Small", 224),
         "mobilenet_v3_large": ("MobileNetV3Large", 224)},
        "none", "mobilenet_v3", _mobilenet_v3, group_pattern=r"^(expanded_conv(?:_\d+)?)_",
    ),
    # === ConvNeXt ===
    **_family(
        {f"convnext_{size}": (f"ConvNeXt{size.title().replace('Xl', 'XL')}", 224)
         for size in ("tiny", "small", "base", "large", "xlarge")},
        "none", "convnext", _notop, group_pattern=r"_(stage_\d+_block_\d+)_",
    ),
    # === DenseNet ===
    **_family(
        {f"densenet{n}": (f"DenseNet{n}", 224) for n in (121, 169, 201)},
        "torch", "densenet", _tf_kernels, group_pattern=r"^(conv\d_block\d+|pool\d)_",
    ),
    # === Inception and Xception ===
    **_family(
        {"inception_v3": ("InceptionV3", 299)}, "tf", "inception_v3", _tf_kernels, min_size=75,
        boundary_pattern=r"^mixed\d+$",
    ),
    **_family(
        {"inception_resnet_v2": ("InceptionResNetV2", 299)}, "tf", "inception_resnet_v2",
        _tf_kernels, min_size=75,
        boundary_pattern=(
            r"^(mixed_5b|block35_\d+_ac|mixed_6a|block17_\d+_ac|mixed_7a|block8_\d_ac|block8_10)$"
        ),
    ),
    **_family(
        {"xception": ("Xception", 299)}, "tf", "xception", _tf_kernels, min_size=71,
        group_pattern=r"^(block\d+)_",
    ),
    # === NASNet ===
    **_family(
        {"nasnet_mobile": ("NASNetMobile", 224), "nasnet_large": ("NASNetLarge", 331)},
        "tf", "nasnet", lambda n: f"{n}_no_top.h5", group_pattern=r"_((?:stem|reduce)_\d+|\d+)$",
    ),
    # === VGG ===
    **_family(
        {"vgg16": ("VGG16", 224)}, "caffe", "vgg16", _tf_kernels, group_pattern=r"^(block\d+)_"
    ),
    **_family(
        {"vgg19": ("VGG19", 224)}, "caffe", "vgg19", _tf_kernels, group_pattern=r"^(block\d+)_"
    ),
    # === Small, for demos and tests ===
    "convnet_tiny": BackboneSpec(
        "convnet_tiny", convnet_tiny, 64, "tf", group_pattern=r"^(block\d+)_",
        imagenet=False, min_size=16,
    ),
}
# fmt: on


# Each entry's parameters (without the top) and layer groups, so that listing the catalogue
# builds nothing; tests/test_backbones.py checks both against the built network.
LISTING: dict[str, tuple[int, int]] = {
    "convnet_tiny": (297824, 5),
    "convnext_base": (87566464, 38),
    "convnext_large": (196230336, 38),
    "convnext_small": (49454688, 38),
    "convnext_tiny": (27820128, 20),
    "convnext_xlarge": (348147968, 38),
    "densenet121": (7037504, 63),
    "densenet169": (12642880, 87),
    "densenet201": (18321984, 103),
    "efficientnet_b0": (4049571, 18),
    "efficientnet_b1": (6575239, 25),
    "efficientnet_b2": (7768569, 25),
    "efficientnet_b3": (10783535, 28),
    "efficientnet_b4": (17673823, 34),
    "efficientnet_b5": (28513527, 41),
    "efficientnet_b6": (40960143, 47),
    "efficientnet_b7": (64097687, 57),
    "efficientnetv2_b0": (5919312, 23),
    "efficientnetv2_b1": (6931124, 29),
    "efficientnetv2_b2": (8769374, 30),
    "efficientnetv2_b3": (12930622, 34),
    "efficientnetv2_l": (117746848, 81),
    "efficientnetv2_m": (53150388, 59),
    "efficientnetv2_s": (20331360, 42),
    "inception_resnet_v2": (54336736, 43),
    "inception_v3": (21802784, 11),
    "mobilenet": (3228864, 14),
    "mobilenet_v2": (2257984, 19),
    "mobilenet_v2_035": (410208, 19),
    "mobilenet_v3_large": (2996352, 17),
    "mobilenet_v3_small": (939120, 13),
    "nasnet_large": (84916818, 23),
    "nasnet_mobile": (4269716, 17),
    "resnet101": (42658176, 34),
    "resnet101_v2": (42626560, 35),
    "resnet152": (58370944, 51),
    "resnet152_v2": (58331648, 52),
    "resnet50": (23587712, 17),
    "resnet50_v2": (23564800, 18),
    "vgg16": (14714688, 5),
    "vgg19": (20024384, 5),
    "xception": (20861480, 14),
}


def catalogue_entry(name: str) -> BackboneSpec:
    """A catalogue entry by name, or an error with the close names.

    Args:
        name: a catalogue name such as "mobilenet_v2".

    Example:
    >>> catalogue_entry("resnet50").default_size
    224
    """
    if isinstance(name, str) and name in CATALOGUE:
        return CATALOGUE[name]
    close = difflib.get_close_matches(str(name).lower(), list(CATALOGUE), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(
        f"Unknown backbone {name!r}.{hint} Run `tfinetune backbones` for the "
        f"{len(CATALOGUE)} known names, or pass a BackboneSpec."
    )


def listing(name: str) -> dict:
    """A catalogue entry's facts for listings, without building it.

    Args:
        name: a catalogue name.

    Example:
    >>> listing("mobilenet_v2")["parameters"]
    2257984
    """
    spec = catalogue_entry(name)
    parameters, groups = LISTING[spec.name]
    return {
        "name": spec.name,
        "default_size": spec.default_size,
        "parameters": parameters,
        "normalization": spec.normalization,
        "layer_groups": groups,
        "imagenet": spec.imagenet,
    }
