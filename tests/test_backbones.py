import dataclasses
import re

import h5py
import keras
import numpy as np
import pytest

from tfinetune.models.backbones import CATALOGUE, build_backbone, get_spec, group_layers
from tfinetune.models.catalogue import LISTING
from tfinetune.models.normalization import PixelNormalization

from conftest import asset

WEIGHTS = {
    "mobilenet_v2": "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
    "mobilenet_v2_035": "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5",
}


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_every_entry_builds_normalises_like_keras_and_groups_its_layers(name):
    spec = CATALOGUE[name]
    size = max(spec.min_size, 32)
    model = build_backbone(name, image_size=size, weights=None)
    assert model.name == name
    shape = model.output_shape
    assert len(shape) == 4 and shape[0] is None and min(shape[1:]) >= 1

    groups = group_layers(model.layers, spec.group_pattern, spec.boundary_pattern)
    grouped = [layer for _, layers in groups for layer in layers]
    assert grouped == [layer for layer in model.layers if layer.weights]  # once each, in order
    names = [n for n, _ in groups]
    assert len(set(names)) == len(names) >= 4
    # what `tfinetune backbones` lists without building anything
    assert LISTING[name] == (model.count_params(), len(groups))

    if spec.keras_module:
        pixels = np.random.default_rng(1).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
        module = getattr(keras.applications, spec.keras_module)
        expected = np.asarray(module.preprocess_input(pixels.copy()))
        got = np.asarray(PixelNormalization(spec.normalization)(pixels))
        assert np.abs(got - expected).max() <= 1e-4


def test_mobilenet_v2_groups_are_its_blocks():
    model = build_backbone("mobilenet_v2", image_size=64, weights=None)
    names = [n for n, _ in group_layers(model.layers, CATALOGUE["mobilenet_v2"].group_pattern)]
    assert names == ["stem", "expanded_conv"] + [f"block_{i}" for i in range(1, 17)] + ["top"]


@pytest.mark.parametrize(
    "mode, preprocess",
    [
        ("tf", keras.applications.mobilenet_v2.preprocess_input),
        ("torch", keras.applications.densenet.preprocess_input),
        ("caffe", keras.applications.resnet50.preprocess_input),
    ],
)
def test_normalization_matches_keras_preprocess_input(mode, preprocess):
    pixels = np.random.default_rng(1).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    expected = preprocess(pixels.copy())
    got = np.asarray(PixelNormalization(mode)(pixels))
    assert np.abs(got - expected).max() <= 1e-4


def test_unknown_backbone_suggests_close_names():
    with pytest.raises(ValueError, match=r"Unknown backbone 'mobilenetv2'.*'mobilenet_v2'"):
        get_spec("mobilenetv2")


def test_weights_for_another_architecture_are_refused(tmp_path):
    tiny = build_backbone("convnet_tiny", image_size=32)
    path = tmp_path / "tiny.weights.h5"
    tiny.save_weights(path)
    with pytest.raises(ValueError, match=r"does not fit the backbone 'mobilenet_v2_035'"):
        build_backbone("mobilenet_v2_035", image_size=64, weights=path)


def test_missing_weights_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothere\.h5"):
        build_backbone("convnet_tiny", image_size=32, weights=tmp_path / "nothere.h5")


def _without_download(spec, error):
    """The same backbone, but asking for `weights="imagenet"` fails as a download would."""

    def build(input_shape, weights=None):
        if weights == "imagenet":
            raise error
        return spec.builder(input_shape=input_shape, weights=weights)

    return dataclasses.replace(spec, builder=build)


def test_imagenet_offline_without_a_local_file_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TFINETUNE_WEIGHTS_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    spec = _without_download(get_spec("mobilenet_v2"), Exception("URL fetch failure: no network"))
    with pytest.raises(FileNotFoundError) as info:
        build_backbone(spec, image_size=160, weights="imagenet")
    message = str(info.value)
    assert "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_160_no_top.h5" in message
    assert "TFINETUNE_WEIGHTS_DIR" in message and "no network" in message


# One entry of every family at a size its ImageNet weights accept (NASNet: exactly 224).
FAMILIES = {
    "resnet50": 32, "resnet50_v2": 32, "efficientnet_b0": 32, "efficientnetv2_b0": 32,
    "mobilenet": 128, "mobilenet_v2_035": 96, "mobilenet_v3_small": 32, "convnext_tiny": 32,
    "densenet121": 32, "inception_v3": 75, "inception_resnet_v2": 75, "xception": 71,
    "nasnet_mobile": 224, "vgg16": 32,
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_the_catalogue_names_the_weights_file_keras_asks_for(name, monkeypatch, tmp_path):
    from keras.src.utils import file_utils  # the test watches Keras's download; tfinetune does not

    asked = []

    def record(fname=None, origin=None, *args, **kwargs):
        asked.append(fname or origin.rsplit("/", 1)[-1])
        raise RuntimeError("recorded")

    monkeypatch.setattr(file_utils, "get_file", record)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    spec, size = CATALOGUE[name], FAMILIES[name]
    with pytest.raises(RuntimeError, match="recorded"):
        spec.builder(input_shape=(size, size, 3), weights="imagenet")
    assert asked == [spec.weights_file_for((size, size))]


def test_imagenet_for_a_backbone_without_published_weights():
    with pytest.raises(ValueError, match=r"has no ImageNet weights"):
        build_backbone("convnet_tiny", image_size=32, weights="imagenet")


def _first_kernel_from_h5(path):
    with h5py.File(path, "r") as f:
        found = []
        f.visititems(lambda n, obj: found.append(n) if re.search(r"Conv1.*kernel", n) else None)
        return np.asarray(f[found[0]])


@pytest.mark.parametrize("name", sorted(WEIGHTS))
@pytest.mark.parametrize("size", [224, 160])
def test_imagenet_resolves_offline_from_the_weights_dir(name, size, monkeypatch, tmp_path):
    weights_dir = asset("weights")
    monkeypatch.setenv("TFINETUNE_WEIGHTS_DIR", str(weights_dir))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    spec = _without_download(get_spec(name), AssertionError("tried to download"))
    model = build_backbone(spec, image_size=size, weights="imagenet")
    expected = _first_kernel_from_h5(weights_dir / WEIGHTS[name])
    np.testing.assert_array_equal(model.get_layer("Conv1").kernel.numpy(), expected)
    assert model.output_shape[1] == size // 32
