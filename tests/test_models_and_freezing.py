import keras
import numpy as np
import pytest

from tfinetune import build_classifier, freeze, freeze_to, layer_groups, trainable_summary, unfreeze
from tfinetune.models.classifier import find_backbone


def _tiny(num_classes=3):
    return build_classifier("convnet_tiny", num_classes, weights=None, image_size=32)


def test_classifier_takes_pixels_and_returns_probabilities():
    model = _tiny()
    assert model.input_shape == (None, 32, 32, 3)
    pixels = np.random.default_rng(0).uniform(0, 255, (5, 32, 32, 3)).astype("float32")
    probs = np.asarray(model(pixels))
    assert probs.shape == (5, 3) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert model.get_layer("normalize").mode == "tf"


def test_backbone_starts_frozen():
    model = _tiny()
    assert all(w.path.startswith("head_") for w in model.trainable_weights)


def test_keras_file_round_trip_keeps_predictions_and_groups(tmp_path):
    model = _tiny()
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(model.predict(pixels, verbose=0), loaded.predict(pixels, verbose=0))
    assert [g.name for g in layer_groups(loaded)] == [g.name for g in layer_groups(model)]
    assert find_backbone(loaded).name == "convnet_tiny"


@pytest.mark.parametrize("n", [1, 2, 3, 6])
def test_freeze_to_trains_exactly_the_top_groups(n):
    model = _tiny()
    groups = freeze_to(model, n)
    expected = sum(
        int(np.prod(w.shape))
        for g in groups[-n:]
        for layer in g.layers
        if not isinstance(layer, keras.layers.BatchNormalization)
        for w in layer.weights
    )
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == expected
    for g in groups[:-n]:
        assert all(not layer.trainable for layer in g.layers)


def test_batchnorm_stays_frozen_unless_train_bn():
    model = _tiny()
    unfreeze(model)
    bns = [
        lay
        for lay in find_backbone(model).layers
        if isinstance(lay, keras.layers.BatchNormalization)
    ]
    assert bns and not any(bn.trainable for bn in bns)
    unfreeze(model, train_bn=True)
    assert all(bn.trainable for bn in bns)
    freeze(model)
    assert not any(bn.trainable for bn in bns)


def test_freeze_to_rejects_a_count_outside_the_groups():
    with pytest.raises(ValueError, match=r"between 1 \(the head only\) and 6.*Received: n=7"):
        freeze_to(_tiny(), 7)


def test_trainable_summary_lists_groups_and_totals():
    model = _tiny()
    freeze_to(model, 2)
    lines = trainable_summary(model).splitlines()
    assert [line.split()[0] for line in lines[1:]] == [
        "stem",
        "block1",
        "block2",
        "block3",
        "block4",
        "head",
        "total",
    ]
    trainable_total = int(lines[-1].split()[1].replace(",", ""))
    assert trainable_total == sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def test_bad_head_arguments_name_the_value():
    with pytest.raises(ValueError, match="num_classes=1"):
        build_classifier("convnet_tiny", 1, weights=None, image_size=32)
    with pytest.raises(ValueError, match="pooling='sum'"):
        build_classifier("convnet_tiny", 2, weights=None, image_size=32, pooling="sum")


def test_any_keras_model_can_be_the_backbone_with_a_spec_like_description():
    from tfinetune import BackboneSpec
    from tfinetune.models.catalogue import convnet_tiny

    own = convnet_tiny((32, 32, 3))
    spec = BackboneSpec.from_model(own, "unit", group_pattern=r"^(block\d+)_")
    model = build_classifier(spec, 3)
    assert model.input_shape == (None, 32, 32, 3) and model.get_layer("normalize").mode == "unit"
    assert [g.name for g in layer_groups(model, spec)][-2:] == ["block4", "head"]
    with pytest.raises(ValueError, match="built already"):
        build_classifier(spec, 3, image_size=64)


def test_one_head_options_object_for_the_builders_and_the_experiment():
    from tfinetune import HeadOptions
    from tfinetune.runs.experiment import ModelConfig

    head = HeadOptions(pooling="avgmax", hidden_units=[8], dropout=0.0, batch_norm=True)
    by_object = build_classifier("convnet_tiny", 3, weights=None, image_size=32, head=head)
    by_name = build_classifier("convnet_tiny", 3, weights=None, image_size=32,
                               pooling="avgmax", hidden_units=[8], dropout=0.0,
                               batch_norm=True)  # fmt: skip
    for model in (by_object, by_name):
        names = [layer.name for layer in model.layers if layer.name.startswith("head_")]
        assert "head_bn_0" in names and not any("dropout" in n for n in names), names
    assert by_object.count_params() == by_name.count_params()
    assert isinstance(ModelConfig(), HeadOptions)  # the experiment's [model] is one too
    with pytest.raises(TypeError, match=r"Unknown head option\(s\) pool: pass head=HeadOptions"):
        build_classifier("convnet_tiny", 3, weights=None, image_size=32, pool="max")
