"""Temperature scaling: one number that makes a classifier's confidence match its accuracy.

A softmax classifier's probabilities `softmax(z)` become `softmax(z / T)`: `T > 1` softens
over-confident outputs, `T < 1` sharpens under-confident ones (label smoothing makes models
under-confident). The top class never changes, so accuracy does not either. `T` is the one
that minimises the negative log-likelihood on held-out data (Guo et al., 2017).

The logits are recovered from the probabilities (`log p` differs from `z` by a constant per
example, which the softmax ignores), so a fitted temperature needs only what a report holds.
"""

from __future__ import annotations

import math

import numpy as np

from tfinetune.evaluation.report import ClassificationReport

#: The temperatures searched (a wider one means the held-out data was too small or too easy).
TEMPERATURE_RANGE = (0.05, 20.0)
#: Fewer held-out examples than this and a fitted temperature would be noise.
MIN_EXAMPLES = 10


def _log_probabilities(probabilities: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(probabilities, np.float64), 1e-300, None))


def scale_probabilities(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """`softmax(log(p) / T)`: the probabilities a model would give with its logits over `T`.

    Args:
        probabilities: `[examples, classes]` softmax outputs.
        temperature: above 0.

    Example:
    >>> scale_probabilities(np.array([[0.8, 0.2]]), 2.0).round(3).tolist()
    [[0.667, 0.333]]
    """
    z = _log_probabilities(probabilities) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def negative_log_likelihood(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """The mean of `-log p(true class)`.

    Args:
        labels: class indices.
        probabilities: `[examples, classes]`.

    Example:
    >>> round(negative_log_likelihood(np.array([0]), np.array([[0.5, 0.5]])), 4)
    0.6931
    """
    logp = _log_probabilities(probabilities)
    return float(-logp[np.arange(len(labels)), labels].mean())


def fit_temperature(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """The temperature that minimises the negative log-likelihood of `labels`.

    The likelihood is convex in `1 / T`, so a golden-section search over `log T` within
    `TEMPERATURE_RANGE` finds its minimum; a minimum at the edge of the range is an error
    (the data cannot tell the temperature).

    Args:
        labels: class indices, at least `MIN_EXAMPLES` of them.
        probabilities: `[examples, classes]` softmax outputs on held-out data.

    Example:
    >>> rng = np.random.default_rng(0)
    >>> p = rng.dirichlet([1, 1, 1], 3000)  # labels drawn as if the truth were p at T = 0.5
    >>> y = np.array([rng.choice(3, p=q) for q in scale_probabilities(p, 0.5)])
    >>> 0.45 < fit_temperature(y, p) < 0.55
    True
    """
    labels = np.asarray(labels)
    if len(labels) < MIN_EXAMPLES:
        raise ValueError(
            f"A temperature needs at least {MIN_EXAMPLES} held-out examples to be fitted. "
            f"Received: {len(labels)}."
        )
    logp = _log_probabilities(probabilities)

    def nll(log_t: float) -> float:
        z = logp / math.exp(log_t)
        z -= z.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(z).sum(axis=1))
        return float((log_norm - z[np.arange(len(labels)), labels]).mean())

    low, high = (math.log(t) for t in TEMPERATURE_RANGE)
    ratio = (math.sqrt(5) - 1) / 2
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    fa, fb = nll(a), nll(b)
    for _ in range(80):
        if fa <= fb:
            high, b, fb = b, a, fa
            a = high - ratio * (high - low)
            fa = nll(a)
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = nll(b)
    temperature = math.exp((low + high) / 2)
    edge = min(abs(math.log(temperature / t)) for t in TEMPERATURE_RANGE)
    if edge < 0.01:
        raise ValueError(
            f"The best temperature is at the edge of the range searched, {TEMPERATURE_RANGE}: "
            f"these {len(labels)} examples cannot pin it down (too few mistakes, or a model "
            "that has not learnt). Calibrate on more held-out data."
        )
    return float(temperature)


def calibrated_report(report: ClassificationReport, temperature: float) -> ClassificationReport:
    """The report of the same predictions with the temperature applied, keeping the old
    probabilities (`uncalibrated`) so that it shows the calibration error before and after.

    Args:
        report: a single-label report of the uncalibrated model.
        temperature: the fitted temperature.

    Example:
    >>> from tfinetune.evaluation.report import classification_report
    >>> r = classification_report([0, 1], [[0.6, 0.4], [0.3, 0.7]], ["a", "b"])
    >>> after = calibrated_report(r, 0.5)
    >>> after.accuracy == r.accuracy, after.temperature
    (True, 0.5)
    """
    return ClassificationReport(
        report.class_names,
        report.labels,
        scale_probabilities(report.probabilities, temperature),
        uncalibrated=report.probabilities,
        temperature=float(temperature),
    )
