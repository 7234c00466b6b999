"""deepnc.sklearn.DNCClassifier: scikit-learn's estimator checks, small examples, bad input."""

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.utils.estimator_checks import parametrize_with_checks

from deepnc.sklearn import DNCClassifier


@parametrize_with_checks([DNCClassifier(random_state=0)])
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_two_modes_per_class_need_two_subcentroids():
    # Class "a" lies at the left and the right, class "b" in the middle: no single
    # centroid separates them, two sub-centroids per class do.
    rng = np.random.RandomState(0)
    left = rng.normal([-1, 1], 0.05, (20, 2))
    right = rng.normal([1, 1], 0.05, (20, 2))
    middle = rng.normal([0, 1.5], 0.05, (40, 2))
    X = np.vstack([left, right, middle])
    y = np.array(["a"] * 40 + ["b"] * 40)
    two = DNCClassifier(n_subcentroids=2, standardize=False, random_state=0).fit(X, y)
    one = DNCClassifier(n_subcentroids=1, standardize=False, random_state=0).fit(X, y)
    assert two.score(X, y) == 1.0 and one.score(X, y) < 0.9
    assert two.subcentroids_.shape == (2, 2, 2)
    np.testing.assert_allclose(np.linalg.norm(two.subcentroids_, axis=-1), 1, atol=1e-6)
    probabilities = two.predict_proba(X)
    np.testing.assert_allclose(probabilities.sum(1), 1)
    assert (two.classes_[probabilities.argmax(1)] == two.predict(X)).all()


def test_partial_fit_learns_from_batches():
    digits = load_digits()
    X, y = digits.data, digits.target
    clf = DNCClassifier(random_state=0)
    with pytest.raises(ValueError, match="classes must be given"):
        clf.partial_fit(X[:50], y[:50])
    scores = []
    for start in range(0, 1500, 100):
        clf.partial_fit(X[start : start + 100], y[start : start + 100], classes=np.arange(10))
        scores.append(clf.score(X[1500:], y[1500:]))
    assert scores[-1] > 0.8 and scores[-1] > scores[0] + 0.05  # momentum steps keep learning
    assert clf.n_iter_ == 15
    with pytest.raises(ValueError, match="not in classes"):
        clf.partial_fit(X[:3], [0, 1, 11])


def test_bad_input_is_explained():
    X = np.arange(12.0).reshape(6, 2)
    with pytest.raises(ValueError, match="at least 2 classes"):
        DNCClassifier().fit(X, [1] * 6)
    with pytest.raises(ValueError, match="NaN"):
        DNCClassifier().fit(np.where(X > 10, np.nan, X), [0, 1] * 3)
    fitted = DNCClassifier(n_subcentroids=1).fit(X, [0, 1] * 3)
    with pytest.raises(ValueError, match="3 features"):
        fitted.predict(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="n_subcentroids"):
        DNCClassifier(n_subcentroids=0).fit(X, [0, 1] * 3)
    with pytest.warns(UserWarning, match="fewer samples than n_subcentroids=4"):
        DNCClassifier().fit(X, [0, 1] * 3)


def test_random_state_may_be_an_int_or_a_generator():
    X, y = load_digits(return_X_y=True)
    first = DNCClassifier(random_state=3).fit(X[:500], y[:500]).subcentroids_
    again = DNCClassifier(random_state=3).fit(X[:500], y[:500]).subcentroids_
    np.testing.assert_array_equal(first, again)
    other = DNCClassifier(random_state=np.random.RandomState(3)).fit(X[:500], y[:500])
    assert other.subcentroids_.shape == first.shape
