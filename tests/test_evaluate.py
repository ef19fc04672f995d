import numpy as np
import pytest
import tensorflow as tf
from sklearn import metrics as skm

from tfinetune import build_classifier, classification_report, evaluate_classifier


@pytest.mark.parametrize("seed", range(3))
def test_metrics_match_scikit_learn_on_random_predictions(seed):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 5, 200)
    y_pred = np.where(rng.random(200) < 0.6, y_true, rng.integers(0, 5, 200))
    report = classification_report(y_true, y_pred, list("abcde"))
    assert report.accuracy == pytest.approx(skm.accuracy_score(y_true, y_pred))
    np.testing.assert_array_equal(
        report.confusion_matrix, skm.confusion_matrix(y_true, y_pred, labels=range(5))
    )
    p, r, _, s = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=range(5), zero_division=0
    )
    np.testing.assert_allclose(report.precision, p)
    np.testing.assert_allclose(report.recall, r)
    np.testing.assert_array_equal(report.support, s)


def test_a_class_never_predicted_and_a_class_absent_have_zero_scores():
    y_true, y_pred = [0, 0, 1, 1], [0, 0, 0, 0]  # class 1 never predicted, class 2 absent
    report = classification_report(y_true, y_pred, ["a", "b", "c"])
    p, r, _, _ = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=[0, 1, 2], zero_division=0
    )
    np.testing.assert_allclose(report.precision, p)
    np.testing.assert_allclose(report.recall, r)
    data = report.to_dict()
    assert data["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "support": 0}
    assert data["confusion_matrix"] == [[2, 0, 0], [2, 0, 0], [0, 0, 0]]
    assert "accuracy 0.5000 on 4 images" in str(report)


def test_labels_outside_the_classes_are_refused():
    with pytest.raises(ValueError, match=r"y_true holds class indices outside 0..1.*\[2\]"):
        classification_report([0, 2], [0, 1], ["a", "b"])


def test_evaluate_classifier_checks_class_count_and_empty_data():
    model = build_classifier("convnet_tiny", 3, weights=None, image_size=32)
    data = tf.data.Dataset.from_tensor_slices((np.zeros((4, 32, 32, 3)), [0, 1, 2, 0])).batch(2)
    with pytest.raises(ValueError, match="predicts 3 classes but 2 class names"):
        evaluate_classifier(model, data, ["a", "b"])
    with pytest.raises(ValueError, match="empty"):
        evaluate_classifier(model, data.take(0), ["a", "b", "c"])
    report = evaluate_classifier(model, data, ["a", "b", "c"])
    assert report.support.tolist() == [2, 1, 1]
