"""HubLayer: TF2 SavedModels (TF Hub format) inside Keras 3 models."""

import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfinetune import build_classifier, export_saved_model, fine_tune
from tfinetune.models.classifier import find_backbone
from tfinetune.models.hub import HubLayer

from conftest import asset


class _Tiny(tf.Module):
    """Features whose computation depends on `training`: a BatchNorm-like running mean."""

    def __init__(self):
        super().__init__()
        self.kernel = tf.Variable(tf.random.stateless_normal([3, 4], seed=[1, 2]), name="kernel")
        self.mean = tf.Variable(tf.zeros([4]), trainable=False, name="running_mean")

    @tf.function
    def __call__(self, images, training=False):
        features = tf.reduce_mean(images, axis=[1, 2]) @ self.kernel
        if training:
            self.mean.assign(0.5 * self.mean + 0.5 * tf.reduce_mean(features, 0))
        return features - self.mean


def _save_tiny(path):
    module = _Tiny()
    for training in (True, False):
        module.__call__.get_concrete_function(tf.TensorSpec([None, 8, 8, 3]), training)
    root = tf.__internal__.tracking.AutoTrackable()
    root.__call__ = module.__call__
    root.variables = [module.kernel, module.mean]
    root.trainable_variables = [module.kernel]
    tf.saved_model.save(root, str(path))
    return str(path)


def _model(handle, trainable):
    inputs = keras.Input((8, 8, 3))
    features = HubLayer(handle, trainable=trainable, name="hub")(inputs)
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(features))


def _data():
    x = np.random.default_rng(0).uniform(0, 1, (16, 8, 8, 3)).astype("float32")
    return x, (np.arange(16) % 2).astype("int32")


def test_training_flag_reaches_the_saved_model_in_fit_but_not_in_predict(tmp_path):
    model = _model(_save_tiny(tmp_path / "tiny"), trainable=True)
    hub = model.get_layer("hub")
    assert [w.name for w in hub.trainable_weights] == ["kernel"]
    assert [w.name for w in hub.non_trainable_weights] == ["running_mean"]
    x, y = _data()
    model.predict(x, verbose=0)
    assert np.all(hub.non_trainable_weights[0].numpy() == 0)  # inference: no update
    kernel = hub.trainable_weights[0].numpy().copy()
    model.compile("sgd", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert np.any(hub.non_trainable_weights[0].numpy() != 0)  # training: updated
    assert not np.array_equal(hub.trainable_weights[0].numpy(), kernel)  # and trained
    mean = hub.non_trainable_weights[0].numpy().copy()
    model.predict(x, verbose=0)
    np.testing.assert_array_equal(hub.non_trainable_weights[0].numpy(), mean)


def test_a_frozen_hub_layer_neither_trains_nor_updates(tmp_path):
    model = _model(_save_tiny(tmp_path / "tiny"), trainable=False)
    hub = model.get_layer("hub")
    before = [w.numpy().copy() for w in hub.weights]
    model.compile("sgd", "sparse_categorical_crossentropy")
    model.fit(*_data(), epochs=1, verbose=0)
    for weight, value in zip(hub.weights, before, strict=True):
        np.testing.assert_array_equal(weight.numpy(), value)


def test_keras_file_keeps_fine_tuned_hub_weights(tmp_path):
    model = _model(_save_tiny(tmp_path / "tiny"), trainable=True)
    model.compile("sgd", "sparse_categorical_crossentropy")
    model.fit(*_data(), epochs=2, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    x, _ = _data()
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    np.testing.assert_array_equal(
        loaded.get_layer("hub").weights[0].numpy(), model.get_layer("hub").weights[0].numpy()
    )


def test_mixed_precision_inputs_are_cast_at_the_boundary(tmp_path):
    handle = _save_tiny(tmp_path / "tiny")
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        layer = HubLayer(handle)
        out = layer(tf.cast(_data()[0], tf.bfloat16))
        assert out.dtype == tf.bfloat16 and out.shape == (16, 4)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_not_a_saved_model_and_no_call_signature_are_clear_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="is not a SavedModel"):
        HubLayer(str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="No SavedModel folder"):
        HubLayer(str(tmp_path / "missing"))
    module = tf.Module()
    module.v = tf.Variable(1.0)
    tf.saved_model.save(module, str(tmp_path / "nocall"))
    with pytest.raises(ValueError, match="has no callable `__call__`"):
        HubLayer(str(tmp_path / "nocall"))
    tiny = _save_tiny(tmp_path / "tiny")  # traced for 8x8 images only
    with pytest.raises(ValueError, match=r"takes 8x8 images only .* Pass image_size=8"):
        build_classifier(f"hub:{tiny}", 2, image_size=16)


def test_hub_features_equal_keras_mobilenet_v2_with_the_same_weights():
    hub_dir = asset("hub", "mobilenet_v2_100_224_feature_vector")
    weights = asset("weights", "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5")
    images = np.random.default_rng(0).uniform(0, 1, (4, 224, 224, 3)).astype("float32")
    reference = keras.applications.MobileNetV2(
        input_shape=(224, 224, 3), include_top=False, weights=str(weights), pooling="avg"
    )
    expected = reference.predict(images * 2 - 1, verbose=0)
    got = np.asarray(HubLayer(str(hub_dir))(images))
    assert np.abs(got - expected).max() <= 1e-4


@pytest.mark.slow
def test_hub_backbone_classifier_on_real_photos(tmp_path):
    from tfinetune import evaluate_classifier, freeze_to, image_folder_datasets, layer_groups

    hub_dir = asset("hub", "mobilenet_v2_100_224_feature_vector")
    root = asset("datasets", "hymenoptera_data")
    data = image_folder_datasets(root / "train", root / "val", image_size=224, seed=1337)
    model = build_classifier(f"hub:{hub_dir}", 2)
    assert model.get_layer("normalize").mode == "unit"
    fine_tune(model, data.train, freeze_epochs=5, epochs=0, verbose=0)  # scored below
    accuracy = evaluate_classifier(model, data.val, data.class_names).accuracy
    print(f"hub backbone, head only: hymenoptera val accuracy {accuracy:.4f}")
    # A linear probe on these frozen features reaches about 95 % on hymenoptera val
    # (../shared/assets/README.md); five head epochs may fall a little short of a full probe.
    assert accuracy >= 0.93

    # A step with the hub backbone trainable changes its variables; the result reloads.
    hub = find_backbone(model).get_layer("hub")
    assert hub.trainable_weights == []  # frozen in the head stage
    groups = [g.name for g in layer_groups(model)]  # blocks from the variable names
    assert groups[:3] == ["stem", "block_1", "block_2"] and groups[-3:] == [
        "block_16",
        "top",
        "head",
    ]
    freeze_to(model, len(groups))
    before = [w.numpy().copy() for w in hub.trainable_weights]
    assert len(before) == 156  # the SavedModel's trainable variables
    # Two batches are enough to show that gradients reach the SavedModel's variables.
    every = len(groups)
    fine_tune(model, data.train.take(2), freeze_epochs=0, epochs=1, train_groups=every, verbose=0)
    assert any(
        not np.array_equal(w.numpy(), b) for w, b in zip(hub.trainable_weights, before, strict=True)
    )
    model.save(tmp_path / "hub.keras")
    x, _ = next(iter(data.val))
    reloaded = keras.models.load_model(tmp_path / "hub.keras")
    np.testing.assert_allclose(
        reloaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5
    )
    export_saved_model(model, tmp_path / "export", data.class_names)  # checked for parity


def test_import_of_hub_layer_module_does_not_import_tensorflow_hub():
    code = "import sys, tfinetune.models.hub; print('tensorflow_hub' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_a_hub_handle_is_resolved_through_tensorflow_hub(tmp_path, monkeypatch):
    import tensorflow_hub

    local = _save_tiny(tmp_path / "tiny")
    asked = []
    monkeypatch.setattr(tensorflow_hub, "resolve", lambda handle: asked.append(handle) or local)
    handle = "https://www.kaggle.com/models/someone/tiny/TensorFlow2/default/1"
    model = build_classifier(f"hub:{handle}", 2, image_size=8)
    assert asked == [handle]
    assert model.get_layer("normalize").mode == "unit" and model.output_shape == (None, 2)


def test_keras_tfsm_layer_shares_variables_but_cannot_train_with_adam():
    """Why tfinetune keeps its own HubLayer: checked on every Keras version we support.

    `keras.layers.TFSMLayer(..., trainable=True)` does track the SavedModel's own variables,
    but keeps their TensorFlow names (`embeddings:0`), and Adam, the default optimizer,
    then fails to make its slots. When this test fails, Keras has fixed it: use TFSMLayer.
    """
    path = asset("hub", "glove_50d_5k_text_embedding")
    layer = keras.layers.TFSMLayer(str(path), call_endpoint="serving_default", trainable=True)
    sentences = tf.constant(["the cat sat on the mat", "stocks fell sharply"])
    before = layer(sentences)["output_0"].numpy()
    weight = layer.trainable_weights[0]
    weight.assign(weight.numpy() + 1.0)  # the Keras weight is the SavedModel's variable
    assert not np.allclose(layer(sentences)["output_0"].numpy(), before)
    inputs = keras.Input((), dtype="string")
    outputs = keras.layers.Dense(2, activation="softmax")(layer(inputs)["output_0"])
    model = keras.Model(inputs, outputs)
    data = tf.data.Dataset.from_tensor_slices((sentences, [0, 1])).batch(2)
    model.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="not a valid scope name"):
        model.fit(data, epochs=1, verbose=0)
