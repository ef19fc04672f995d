import numpy as np
import pytest
import tensorflow as tf
from sklearn import calibration as skc
from sklearn import metrics as skm

from tfinetune import (
    build_classifier,
    classification_report,
    evaluate_classifier,
    multilabel_report,
    predict_dataset,
    top_losses,
)
from tfinetune.evaluation.multilabel import choose_thresholds


def _random_case(seed, n=300, classes=6, skill=0.6):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    logits = rng.normal(size=(n, classes)) + skill * 3 * np.eye(classes)[labels]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return labels, probs


def _sklearn_ece(labels, probs, bins=15):
    correct = (probs.argmax(1) == labels).astype(int)
    confidence = probs.max(1)
    frac, mean = skc.calibration_curve(correct, confidence, n_bins=bins, strategy="uniform")
    ids = np.searchsorted(np.linspace(0, 1, bins + 1)[1:-1], confidence)
    counts = np.bincount(ids, minlength=bins)
    counts = counts[counts > 0]
    return float((counts * np.abs(frac - mean)).sum() / counts.sum())


@pytest.mark.parametrize("seed", range(4))
def test_every_metric_matches_scikit_learn_on_random_predictions(seed):
    labels, probs = _random_case(seed)
    report = classification_report(labels, probs, list("abcdef"))
    pred = probs.argmax(1)
    assert report.accuracy == pytest.approx(skm.accuracy_score(labels, pred))
    for k in (3, 5):
        expected = skm.top_k_accuracy_score(labels, probs, k=k, labels=range(6))
        assert report.top_k_accuracy(k) == pytest.approx(expected)
    np.testing.assert_array_equal(
        report.confusion_matrix, skm.confusion_matrix(labels, pred, labels=range(6))
    )
    p, r, f, s = skm.precision_recall_fscore_support(labels, pred, labels=range(6), zero_division=0)
    np.testing.assert_allclose(report.precision, p)
    np.testing.assert_allclose(report.recall, r)
    np.testing.assert_allclose(report.f1, f)
    np.testing.assert_array_equal(report.support, s)
    for how in ("macro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(
            labels, pred, labels=range(6), average=how, zero_division=0
        )
        assert report.average("precision", how) == pytest.approx(p)
        assert report.average("recall", how) == pytest.approx(r)
        assert report.average("f1", how) == pytest.approx(f)
    assert report.losses.mean() == pytest.approx(skm.log_loss(labels, probs, labels=range(6)))
    assert report.expected_calibration_error == pytest.approx(_sklearn_ece(labels, probs))


def test_a_class_never_predicted_and_a_class_absent_from_the_labels():
    labels = np.array([0, 0, 1, 1, 3])
    probs = np.array([[0.7, 0.1, 0.1, 0.1]] * 4 + [[0.1, 0.1, 0.1, 0.7]])
    report = classification_report(labels, probs, ["a", "b", "c", "d"])  # b never predicted
    pred = probs.argmax(1)
    for how in (None, "macro", "weighted"):
        expected = skm.precision_recall_fscore_support(
            labels, pred, labels=range(4), average=how, zero_division=0
        )
        got = (
            (report.precision, report.recall, report.f1)
            if how is None
            else tuple(report.average(m, how) for m in ("precision", "recall", "f1"))
        )
        np.testing.assert_allclose(np.array(got, dtype=float), np.array(expected[:3], dtype=float))
    data = report.to_dict()
    assert data["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert data["most_confused"] == [{"true": "b", "predicted": "a", "count": 2}]


def test_a_single_class():
    report = classification_report([0, 0, 0], [[1.0], [1.0], [1.0]], ["only"])
    assert report.accuracy == 1.0 and report.f1.tolist() == [1.0]
    assert report.expected_calibration_error == pytest.approx(0.0)
    assert report.to_dict()["top_k_accuracy"] == {}
    assert "| only | 1.000 | 1.000 | 1.000 | 3 |" in report.to_markdown()


def test_top_losses_are_the_highest_cross_entropies_in_order():
    labels, probs = _random_case(7, n=50)
    report = classification_report(labels, probs, list("abcdef"))
    paths = [f"img{i}.jpg" for i in range(50)]
    worst = top_losses(report, paths, k=5)
    per_example = -np.log(probs[np.arange(50), labels])
    expected = np.argsort(-per_example)[:5]
    assert [w["path"] for w in worst] == [paths[i] for i in expected]
    assert worst[0]["loss"] == pytest.approx(per_example.max())
    assert worst[0]["true"] == "abcdef"[labels[expected[0]]]


def test_labels_that_do_not_match_the_model_are_refused():
    with pytest.raises(ValueError, match=r"class indices outside 0..1.*found \[2\]"):
        classification_report([0, 2], [[0.5, 0.5], [0.5, 0.5]], ["a", "b"])
    with pytest.raises(ValueError, match="shape"):
        classification_report([0, 1], [[0.5, 0.3, 0.2]] * 2, ["a", "b"])
    with pytest.raises(ValueError, match="empty"):
        classification_report([], np.zeros((0, 2)), ["a", "b"])


@pytest.mark.parametrize("seed", range(3))
def test_multilabel_auc_thresholds_and_scores_match_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    labels = (rng.random((120, 4)) < [0.5, 0.3, 0.1, 0.6]).astype(int)
    probs = np.clip(labels * 0.35 + rng.random((120, 4)) * 0.65, 0, 1).round(2)  # with ties
    report = multilabel_report(labels, probs, ["w", "x", "y", "z"])
    for c in range(4):
        assert report.auc[c] == pytest.approx(skm.roc_auc_score(labels[:, c], probs[:, c]))
        predicted = probs[:, c] >= report.thresholds[c]
        assert report.f1[c] == pytest.approx(skm.f1_score(labels[:, c], predicted))
        assert report.precision[c] == pytest.approx(skm.precision_score(labels[:, c], predicted))
        assert report.recall[c] == pytest.approx(skm.recall_score(labels[:, c], predicted))
        best = max(skm.f1_score(labels[:, c], probs[:, c] >= t) for t in np.unique(probs[:, c]))
        assert report.f1[c] == pytest.approx(best)  # the chosen threshold is the best one
    exact = skm.accuracy_score(labels, probs >= report.thresholds)
    assert report.subset_accuracy == pytest.approx(exact)


def test_multilabel_class_without_positives_has_no_auc_and_default_threshold():
    labels = np.array([[1, 0], [0, 0], [1, 0]])
    probs = np.array([[0.9, 0.2], [0.1, 0.7], [0.8, 0.1]])
    report = multilabel_report(labels, probs, ["cat", "dog"])
    assert report.auc == [1.0, None]
    assert choose_thresholds(labels, probs).tolist() == [0.8, 0.5]
    assert report.to_dict()["per_class"]["dog"]["auc"] is None
    with pytest.raises(ValueError, match="0 or 1"):
        multilabel_report([[2, 0]], [[0.5, 0.5]], ["cat", "dog"])


def test_test_time_augmentation_averages_an_image_and_its_mirror():
    model = build_classifier("convnet_tiny", 3, weights=None, image_size=32)
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    data = tf.data.Dataset.from_tensor_slices((x, [0, 1, 2, 0])).batch(2)
    _, plain = predict_dataset(model, data)
    _, tta = predict_dataset(model, data, tta=True)
    mirrored = model.predict(x[:, :, ::-1], verbose=0)
    np.testing.assert_allclose(tta, (plain + mirrored) / 2, atol=1e-6)
    assert not np.allclose(tta, plain)


def test_evaluate_classifier_checks_class_count_and_empty_data():
    model = build_classifier("convnet_tiny", 3, weights=None, image_size=32)
    data = tf.data.Dataset.from_tensor_slices((np.zeros((4, 32, 32, 3)), [0, 1, 2, 0])).batch(2)
    with pytest.raises(ValueError, match="predicts 3 classes but 2 class names"):
        evaluate_classifier(model, data, ["a", "b"])
    with pytest.raises(ValueError, match="empty"):
        evaluate_classifier(model, data.take(0), ["a", "b", "c"])
    assert evaluate_classifier(model, data, ["a", "b", "c"]).support.tolist() == [2, 1, 1]
    multi = tf.data.Dataset.from_tensor_slices(
        (np.zeros((2, 32, 32, 3)), [[1, 0, 1], [0, 1, 0]])
    ).batch(2)
    sigmoid = build_classifier("convnet_tiny", 3, weights=None, image_size=32, task="multi_label")
    assert evaluate_classifier(sigmoid, multi, ["a", "b", "c"]).support.tolist() == [1, 1, 1]
