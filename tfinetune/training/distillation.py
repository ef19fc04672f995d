"""Knowledge distillation: a student learns from a fine-tuned teacher's softened predictions.

`Distiller` is a `keras.Model` around the two: it predicts what the student predicts, and
its loss blends the student's usual loss on the labels with the temperature-scaled soft-target
loss of Hinton et al. (2015). It trains with `fit` and with `tfinetune.fine_tune` (the
student's layer groups unfreeze in stages); export `distiller.student`.
"""

from __future__ import annotations

import keras
from keras import ops

from tfinetune.models.heads import task_of


def distillation_loss(teacher_probabilities, student_probabilities, temperature: float = 2.0):
    """The soft-target loss: `T^2 * KL(teacher || student)` of the distributions at `T`.

    Both models output softmax probabilities; their logits are recovered (up to a constant,
    which a softmax ignores) as log-probabilities and divided by `temperature`. The `T^2`
    factor keeps the gradients' scale independent of the temperature.

    Args:
        teacher_probabilities: `[batch, classes]` softmax outputs of the teacher.
        student_probabilities: `[batch, classes]` softmax outputs of the student.
        temperature: above 1 softens both distributions, showing which wrong classes the
            teacher finds plausible.

    Returns:
        One value per example, `[batch]`.

    Example:
    >>> import numpy as np
    >>> p = np.array([[0.7, 0.2, 0.1]], "float32")
    >>> float(distillation_loss(p, p, 2.0)[0])
    0.0
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be above 0. Received: {temperature!r}")
    eps = keras.backend.epsilon()
    t = ops.log(ops.clip(ops.cast(teacher_probabilities, "float32"), eps, 1.0)) / temperature
    s = ops.log(ops.clip(ops.cast(student_probabilities, "float32"), eps, 1.0)) / temperature
    log_t, log_s = ops.log_softmax(t, axis=-1), ops.log_softmax(s, axis=-1)
    kl = ops.sum(ops.exp(log_t) * (log_t - log_s), axis=-1)
    return kl * temperature**2


class Distiller(keras.Model):
    """A student model trained on a blend of the labels and a frozen teacher's predictions.

    `loss = alpha * student_loss(labels) + (1 - alpha) * distillation_loss(teacher, student)`,
    with the student's loss the one `compile` (or `fine_tune`) gives. The teacher runs in
    inference mode on every training batch, on the same augmented images as the student
    (resized to the teacher's input size when the two differ), so each augmentation gets its
    own soft targets. Predicting, evaluating and exporting use the student alone.

    Args:
        student: the model to train (single-label, softmax output).
        teacher: a trained model with the same classes, in the same order.
        temperature: the softening temperature of `distillation_loss`.
        alpha: the weight of the labels' loss, in [0, 1] (0: the teacher's alone).

    Example:
    >>> import numpy as np, tensorflow as tf
    >>> from tfinetune.models.classifier import build_classifier
    >>> teacher = build_classifier("convnet_tiny", 2, weights=None, image_size=32)
    >>> student = build_classifier("convnet_tiny", 2, weights=None, image_size=32)
    >>> d = Distiller(student, teacher)
    >>> d.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    >>> x, y = np.zeros((4, 32, 32, 3), "float32"), np.array([0, 1, 0, 1])
    >>> d.fit(x, y, epochs=1, verbose=0).history["loss"][0] > 0
    True
    """

    def __init__(
        self,
        student: keras.Model,
        teacher: keras.Model,
        temperature: float = 2.0,
        alpha: float = 0.5,
        **kwargs,
    ) -> None:
        super().__init__(name=kwargs.pop("name", f"{student.name}_distiller"), **kwargs)
        for role, model in (("student", student), ("teacher", teacher)):
            if task_of(model) != "single_label":
                raise ValueError(
                    f"Distillation needs single-label (softmax) models; the {role} "
                    f"{model.name!r} is {task_of(model)}."
                )
        if teacher.output_shape[-1] != student.output_shape[-1]:
            raise ValueError(
                f"The teacher predicts {teacher.output_shape[-1]} classes and the student "
                f"{student.output_shape[-1]}: they must share the classes, in the same order."
            )
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1]. Received: alpha={alpha!r}")
        if not temperature > 0:
            raise ValueError(f"temperature must be above 0. Received: {temperature!r}")
        self.student, self.teacher = student, teacher
        self.teacher.trainable = False
        self.temperature, self.alpha = float(temperature), float(alpha)
        self._teacher_size = tuple(teacher.input_shape[1:3])

    def call(self, inputs, training=None):
        return self.student(inputs, training=training)

    def teacher_predict(self, inputs):
        """The teacher's probabilities for a batch of the student's inputs."""
        if tuple(inputs.shape[1:3]) != self._teacher_size:
            inputs = ops.image.resize(inputs, self._teacher_size)
        return ops.stop_gradient(self.teacher(inputs, training=False))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        hard = super().compute_loss(x, y, y_pred, sample_weight, training=training)
        if not training or self.alpha == 1.0:
            return hard
        soft = distillation_loss(self.teacher_predict(x), y_pred, self.temperature)
        if sample_weight is not None:
            soft = soft * ops.reshape(ops.cast(sample_weight, soft.dtype), ops.shape(soft))
        return self.alpha * hard + (1.0 - self.alpha) * ops.mean(soft)
