"""Knowledge distillation: the loss, the Distiller in fine_tune's stages, `tfinetune distill`."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from tfinetune.cli import main
from tfinetune.data.synthetic import write_shapes_folder
from tfinetune.models.classifier import build_classifier
from tfinetune.training.distillation import Distiller, distillation_loss
from tfinetune.training.fine_tuning import fine_tune


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_distillation_loss_equals_the_hand_computed_value():
    teacher_logits = np.array([[2.0, 1.0, -1.0], [0.5, 3.0, 0.0]])
    student_logits = np.array([[1.0, 1.5, 0.0], [0.0, 1.0, 2.0]])
    t = 3.0
    p, q = _softmax(teacher_logits / t), _softmax(student_logits / t)
    expected = t**2 * np.sum(p * (np.log(p) - np.log(q)), axis=1)
    got = distillation_loss(
        _softmax(teacher_logits).astype("float32"), _softmax(student_logits).astype("float32"), t
    )
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-4)
    assert expected.min() > 0.05  # a real difference, not a loss of zero


def test_distiller_trains_the_student_in_stages_and_leaves_the_teacher(tmp_path):
    data = write_shapes_folder(tmp_path / "d", ["cross", "ring"], 6, size=32)
    from tfinetune.data.datasets import image_folder_datasets

    d = image_folder_datasets(data, image_size=24, batch_size=4, val_split=0.25)
    teacher = build_classifier("convnet_tiny", 2, weights=None, image_size=32)
    student = build_classifier("convnet_tiny", 2, weights=None, image_size=24, pooling="max")
    before_teacher = [w.copy() for w in teacher.get_weights()]
    before_student = [w.copy() for w in student.get_weights()]
    distiller = Distiller(student, teacher, temperature=2.0, alpha=0.5)
    history = fine_tune(distiller, d.train, d.val, epochs=1, freeze_epochs=1, verbose=0)
    assert [name for name, _, _ in history.stages] == ["head", "fine-tune"]
    kept = zip(before_teacher, teacher.get_weights(), strict=True)
    assert all(np.array_equal(a, b) for a, b in kept)
    after = student.get_weights()
    changed = [not np.array_equal(a, b) for a, b in zip(before_student, after, strict=True)]
    assert sum(changed) > 2  # the head and unfrozen blocks
    x = np.asarray(next(iter(d.val))[0])  # predict_on_batch takes arrays on every backend
    np.testing.assert_allclose(distiller.predict_on_batch(x), student.predict_on_batch(x))


def test_distiller_refuses_models_that_do_not_share_classes():
    teacher = build_classifier("convnet_tiny", 3, weights=None, image_size=32)
    student = build_classifier("convnet_tiny", 2, weights=None, image_size=32)
    with pytest.raises(ValueError, match="teacher predicts 3 classes and the student 2"):
        Distiller(student, teacher)
    regressor = build_classifier("convnet_tiny", 1, weights=None, image_size=32, task="regression")
    with pytest.raises(ValueError, match=r"the student .* is regression"):
        Distiller(regressor, teacher)


def test_blended_loss_is_the_weighted_sum_of_label_and_teacher_losses():
    teacher = build_classifier("convnet_tiny", 2, weights=None, image_size=32)
    student = build_classifier("convnet_tiny", 2, weights=None, image_size=32)
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    y = np.array([0, 1, 1, 0])
    d = Distiller(student, teacher, temperature=2.0, alpha=0.3)
    d.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    y_pred = d(x, training=False)
    got = float(d.compute_loss(x, y, y_pred, training=True))
    hard = float(
        np.mean(keras.ops.convert_to_numpy(keras.losses.sparse_categorical_crossentropy(y, y_pred)))
    )
    soft = float(np.mean(distillation_loss(teacher(x, training=False), y_pred, 2.0)))
    assert got == pytest.approx(0.3 * hard + 0.7 * soft, rel=1e-5)


@pytest.mark.slow
def test_distill_command_writes_the_student_alone(trained_run, tmp_path):
    data, teacher_run = trained_run
    args = ["distill", "--teacher", str(teacher_run), "--data", str(data)]
    args += ["--backbone", "convnet_tiny", "--weights", "none", "--image-size", "24"]
    args += ["--epochs", "1", "--freeze-epochs", "1", "--batch-size", "8"]
    assert main([*args, "--out", str(tmp_path / "student")]) == 0
    contract = json.loads(
        (tmp_path / "student/saved_model/1/assets.extra/preprocessing.json").read_text()
    )
    assert contract["image_size"] == [24, 24]  # the student's, not the teacher's 32
    # recorded relative to the student's run folder, so that both can move together
    student = (tmp_path / "student").resolve()
    assert (student / contract["teacher"]).resolve() == teacher_run.resolve()
    assert not contract["teacher"].startswith("/")


def test_distill_command_refuses_a_teacher_of_other_classes(trained_run, tmp_path, capsys):
    _, teacher_run = trained_run
    other = write_shapes_folder(tmp_path / "other", ["circle", "cross"], 4, size=32)
    args = ["distill", "--teacher", str(teacher_run), "--data", str(other)]
    args += ["--backbone", "convnet_tiny", "--weights", "none", "--out", str(tmp_path / "s")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "knows the classes ['cross', 'ring'] but the data has ['circle', 'cross']" in err
    assert not (tmp_path / "s").exists()
