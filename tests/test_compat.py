"""The private Keras sites in tfinetune.compat: the version check, and each site at work."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfinetune import compat


@pytest.mark.parametrize("version", ["3.14.2", "4.0.0", "2.15.0"])
def test_an_untested_keras_fails_with_a_message_that_says_what_to_install(version):
    with pytest.raises(ImportError, match=rf"Keras {version}.*pip install 'keras>=3.15,<4'"):
        compat.check_keras(version)


def test_the_installed_keras_passes_the_check():
    compat.check_keras()  # raises when a private site has moved


def test_seeded_layers_make_nested_layers_draw_from_the_batch_seed():
    # RandAugment ignores `seed=` and draws for itself and its sub-layers from its own
    # generators: the private site is what makes one batch seed give one augmentation.
    layer = keras.layers.RandAugment(value_range=(0, 255), seed=0)
    x = tf.random.stateless_uniform([4, 16, 16, 3], [1, 2], maxval=255.0)

    def run(seed):
        with compat.seeded_layers([layer], tf.constant(seed)):
            return layer(x, training=True).numpy()

    np.testing.assert_array_equal(run([3, 4]), run([3, 4]))
    assert not np.array_equal(run([3, 4]), run([5, 6]))


def test_batch_seed_generator_folds_a_tensor_seed_without_a_variable():
    seed = tf.constant([7, 9])
    a, b = compat.BatchSeedGenerator(seed), compat.BatchSeedGenerator(seed)
    assert [a.next().numpy().tolist() for _ in range(3)] == [
        b.next().numpy().tolist() for _ in range(3)
    ]
    assert not hasattr(a, "state")  # nothing a tf.data map could not create
    draw = keras.random.uniform([3], seed=compat.BatchSeedGenerator(seed))
    again = keras.random.uniform([3], seed=compat.BatchSeedGenerator(seed))
    np.testing.assert_array_equal(draw, again)
