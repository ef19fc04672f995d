"""The shared pipeline: augmentation policies, determinism, resize modes, crops and caches."""

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tfinetune.data.augment import POLICIES, Augmenter, build_augmentation
from tfinetune.data.folders import scan_image_folder
from tfinetune.data.images import decode_image, decode_random_crop, resize_image
from tfinetune.data.pipeline import build_pipeline

from conftest import files_pipeline


def _epochs(ds, n=2):
    return [np.concatenate([x.numpy() for x, _ in ds]) for _ in range(n)]


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_every_policy_is_deterministic_under_a_seed_new_each_epoch_and_off_at_inference(
    tiny_folder, policy
):
    files = scan_image_folder(tiny_folder)
    plain = np.concatenate([x.numpy() for x, _ in files_pipeline(files, 32, batch_size=8)])

    def training(seed):
        return files_pipeline(files, 32, batch_size=8, training=True, augment=policy, seed=seed)

    first, second = _epochs(training(3)), _epochs(training(3))
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)  # same seed, same batches, epoch after epoch
    assert first[0].shape == plain.shape and first[0].dtype == np.float32
    if policy == "none":
        np.testing.assert_array_equal(np.sort(first[0], axis=None), np.sort(plain, axis=None))
        return
    assert not np.array_equal(first[0], first[1])  # new augmentation every epoch
    assert not np.array_equal(first[0], _epochs(training(4), 1)[0])  # another seed differs
    # Validation (training=False) never augments, whatever the policy.
    val = files_pipeline(files, 32, batch_size=8, augment=policy, seed=3)
    np.testing.assert_array_equal(np.concatenate([x.numpy() for x, _ in val]), plain)


def test_keras_layers_are_the_identity_at_inference():
    x = tf.random.stateless_uniform([4, 16, 16, 3], [1, 2], maxval=255.0)
    for policy in ("light", "medium", "heavy"):
        aug = build_augmentation(policy, seed=1)
        out, _ = aug(x, tf.zeros([4], tf.int32), training=False)
        np.testing.assert_array_equal(out.numpy(), x.numpy())
        for layer in aug.layers:
            np.testing.assert_array_equal(layer(x, training=False).numpy(), x.numpy())


def test_explicit_lists_mixup_and_cutmix_give_soft_one_hot_labels(tiny_folder):
    files = scan_image_folder(tiny_folder)
    ds = files_pipeline(
        files, 24, batch_size=8, training=True, augment=["flip", "mixup", "cutmix"], seed=0
    )
    _, y = next(iter(ds))
    assert y.shape == (8, 3) and y.dtype == tf.float32
    np.testing.assert_allclose(y.numpy().sum(axis=1), 1.0, rtol=1e-5)
    assert ((y.numpy() > 0.01) & (y.numpy() < 0.99)).any()  # mixed, not plain one-hot
    with pytest.raises(ValueError, match="Unknown augmentation layer 'blur'"):
        build_augmentation(["flip", "blur"])
    with pytest.raises(ValueError, match="Unknown augmentation policy"):
        build_augmentation("extreme")


def _two_tone(width=40, height=20):
    """Red outer quarters, blue middle half."""
    image = np.zeros((height, width, 3), np.uint8)
    image[:, :, 2] = 255
    image[:, : width // 4] = image[:, -width // 4 :] = (255, 0, 0)
    return tf.constant(image)


def test_resize_modes_stretch_crop_to_aspect_and_pad_to_aspect():
    image = _two_tone()
    stretch = resize_image(image, (10, 10), "stretch").numpy()
    crop = resize_image(image, (10, 10), "crop").numpy()
    pad = resize_image(image, (10, 10), "pad").numpy()
    assert tuple(stretch[5, 0]) == (255, 0, 0) and tuple(stretch[5, 5]) == (0, 0, 255)
    assert (crop[..., 0] == 0).all() and (crop[..., 2] == 255).all()  # the centre only
    assert (pad[:2] == 0).all() and (pad[-2:] == 0).all()  # black bars above and below
    assert tuple(pad[5, 0]) == (255, 0, 0) and tuple(pad[5, 5]) == (0, 0, 255)
    with pytest.raises(ValueError, match="Unknown resize mode 'fit'"):
        resize_image(image, (10, 10), "fit")


def test_random_resized_crop_decodes_only_the_window_of_a_jpeg_and_matches_a_full_decode():
    rng = np.random.default_rng(0)
    pixels = (rng.uniform(0, 1, (96, 128, 1)) * np.linspace(0, 255, 128)[None, :, None]).astype(
        np.uint8
    )
    jpeg = tf.io.encode_jpeg(np.repeat(pixels, 3, axis=2), quality=95)
    png = tf.io.encode_png(np.repeat(pixels, 3, axis=2))
    seed = tf.constant([4, 2])
    a = decode_random_crop(jpeg, (32, 32), seed, area=(0.1, 0.3)).numpy()
    b = decode_random_crop(jpeg, (32, 32), seed, area=(0.1, 0.3)).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, decode_random_crop(jpeg, (32, 32), tf.constant([5, 2])).numpy())
    # The PNG of the same picture takes the decode-then-crop path: the same window results.
    from_png = decode_random_crop(png, (32, 32), seed, area=(0.1, 0.3)).numpy().astype(int)
    assert np.abs(from_png - a.astype(int)).mean() < 3  # JPEG loss only
    whole = resize_image(decode_image(jpeg), (32, 32)).numpy()
    assert np.abs(whole.astype(int) - a.astype(int)).mean() > 5  # a crop, not the whole


def test_disk_cache_is_written_and_serves_later_epochs(tiny_folder, tmp_path):
    files = scan_image_folder(tiny_folder)
    cache = tmp_path / "cache" / "train"
    cache.parent.mkdir()
    ds = files_pipeline(files, 24, batch_size=8, training=True, augment=None, cache=cache, seed=1)
    first = sorted(map(bytes, np.concatenate([x.numpy() for x, _ in ds]).astype(np.uint8)))
    assert list(cache.parent.glob("train*.index"))
    for path in files.paths:  # later epochs read the cache, not the files
        Image.new("RGB", (5, 5)).save(path, format="PNG")
    again = sorted(map(bytes, np.concatenate([x.numpy() for x, _ in ds]).astype(np.uint8)))
    assert first == again


def test_pixels_sources_refuse_a_decode_time_crop():
    src = tf.data.Dataset.from_tensor_slices((np.zeros((4, 8, 8, 3), np.uint8), [0, 1, 0, 1]))
    with pytest.raises(ValueError, match="needs encoded images"):
        build_pipeline(src, count=4, image_size=8, training=True, augment="heavy")


def test_nondeterministic_order_keeps_every_example(tiny_folder):
    files = scan_image_folder(tiny_folder)
    ds = files_pipeline(files, 16, batch_size=5, deterministic=False)
    assert sorted(np.concatenate([y.numpy() for _, y in ds]).tolist()) == sorted(files.labels)
    assert isinstance(build_augmentation("light"), Augmenter)


def test_bytes_and_pixels_give_the_same_pixels_for_a_photo_many_times_the_input_size():
    # The route of encoded bytes (training, serving_default) and the route of decoded pixels
    # (serve_images, the TFLite model's documented preprocessing) must agree exactly, also
    # where a JPEG is 2, 4 or 8 times the model's input (a reduced-scale decode would not).
    from tfinetune.data.images import decode_and_resize

    y, x = np.mgrid[0:960, 0:1280]
    texture = np.stack([x * 255 / 1280, y * 255 / 960, (x * y) % 256], axis=-1)
    jpeg = tf.io.encode_jpeg(texture.astype(np.uint8), quality=90)
    for side in (96, 160, 224):
        from_bytes = decode_and_resize(jpeg, (side, side)).numpy()
        from_pixels = resize_image(decode_image(jpeg), (side, side)).numpy()
        assert np.array_equal(from_bytes, from_pixels), side


def test_flip_rotation_and_zoom_fused_into_one_resampling_match_applying_them_in_turn():
    y, x = np.mgrid[0:64, 0:64].astype("float32")
    smooth = np.stack([x * 4, y * 4, (x + y) * 2], axis=-1)
    images = tf.constant(np.stack([smooth, smooth[::-1], smooth[:, ::-1], smooth[::-1, ::-1]]))
    aug = build_augmentation("light", seed=0)
    labels = tf.zeros([4], tf.int32)
    seed = tf.constant([3, 9])
    assert [len(run) for run in aug._runs()] == [3]  # flip, rotation and zoom: one resampling
    fused, _ = aug(images, labels, seed=seed)
    aug.fuse = False
    in_turn, _ = aug(images, labels, seed=seed)
    assert not np.array_equal(fused.numpy(), images.numpy())
    inner = (slice(None), slice(12, 52), slice(12, 52))  # away from the reflected border
    diff = np.abs(fused.numpy()[inner] - in_turn.numpy()[inner])
    assert diff.mean() < 0.5 and diff.max() < 8


def _counted(counter: tf.Variable, missing: int):
    """A decode function that counts its calls and fails for one element."""

    def decode(i):
        check = tf.debugging.assert_none_equal(i, tf.constant(missing, tf.int64))
        with tf.control_dependencies([check, counter.assign_add(1)]):  # like a decode error
            return tf.fill([2, 2, 3], tf.cast(i % 251, tf.uint8)), tf.identity(i)

    return decode


def test_memory_cache_first_pass_streams_and_later_passes_reshuffle_from_memory():
    from tfinetune.data.memory_cache import shuffled_memory_cache

    n, counter = 2000, tf.Variable(0, dtype=tf.int64)
    source = tf.data.Dataset.range(n).shuffle(n, seed=3).map(lambda i: (i, i))
    ds = shuffled_memory_cache(source, n, _counted(counter, missing=7), seed=1, batch_size=16)
    first_batch = next(iter(ds))
    assert int(counter.numpy()) < n // 2  # no wait for the whole set before the first image
    passes = [[int(y) for _, labels in ds for y in labels] for _ in range(3)]
    assert int(counter.numpy()) < 2 * n  # the source ran through once (plus the first probe)
    made = int(counter.numpy())
    for _ in ds:
        pass
    assert int(counter.numpy()) == made  # later passes never touch the source
    expected = sorted(set(range(n)) - {7})  # a dropped element stays dropped
    assert [sorted(p) for p in passes] == [expected] * 3
    assert passes[1] != passes[2] and passes[1] != passes[0]  # a new order every pass
    assert 7 not in first_batch[1].numpy().tolist()
    assert [len(labels) for _, labels in ds][:-1] == [16] * ((n - 1) // 16)  # whole batches
    # Pixels and labels stay together.
    for x, y in ds.take(3):
        assert (x.numpy()[:, 0, 0, 0] == y.numpy() % 251).all()


def test_training_pipeline_is_seeded_and_keeps_pairs_through_the_memory_cache():
    images = np.arange(40, dtype="uint8")[:, None, None, None] * np.ones((1, 6, 6, 3), "uint8")

    def epochs(seed):
        src = tf.data.Dataset.from_tensor_slices((images, np.arange(40)))
        ds = build_pipeline(src, count=40, training=True, image_size=6, batch_size=8,
                            augment=None, seed=seed)  # fmt: skip
        return [np.concatenate([y.numpy() for _, y in ds]) for _ in range(3)], ds

    orders, ds = epochs(5)
    again, _ = epochs(5)
    assert all((a == b).all() for a, b in zip(orders, again, strict=True))  # seeded
    assert all(sorted(o) == list(range(40)) for o in orders)
    assert not (orders[1] == orders[2]).all()
    for x, y in ds:
        assert (x.numpy()[:, 0, 0, 0] == y.numpy()).all()
