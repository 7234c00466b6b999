"""``DNCClassifier``: deep nearest centroids on fixed feature vectors, the scikit-learn way.

The same balanced (Sinkhorn) sub-centroid clustering as the DNC head, run on CPU tensors
over embeddings you already have (a frozen network's features, or raw pixels). ``fit``
seeds K sub-centroids per class by k-means++ and then runs ``max_iter`` balanced
assignment rounds, each moving every sub-centroid to the mean of its samples (momentum
0); ``partial_fit`` makes one momentum step per batch, as training does. A sample's
class is that of its nearest sub-centroid (cosine, after standardising the features).

>>> import numpy as np
>>> X = np.array([[0, 1.0], [0.1, 1.0], [1.0, 0.0], [1.0, 0.1]])
>>> clf = DNCClassifier(n_subcentroids=1).fit(X, ["up", "up", "right", "right"])
>>> clf.predict([[0.05, 0.9]]).tolist(), clf.subcentroids_.shape
(['up'], (2, 1, 2))
"""

from __future__ import annotations

import warnings
from numbers import Integral, Real
from typing import ClassVar

import torch
import torch.nn.functional as F

from deepnc.utils.extras import missing_extra

try:
    import numpy as np
    from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
    from sklearn.utils import check_random_state
    from sklearn.utils._param_validation import Interval, StrOptions
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted, validate_data
except ModuleNotFoundError as error:
    raise missing_extra(error, "deepnc.sklearn") from error

from deepnc.nn import defaults
from deepnc.nn.bank import SubCentroidBank
from deepnc.nn.temperature import resolve_tau

__all__ = ["DNCClassifier"]


class DNCClassifier(ClassifierMixin, BaseEstimator):
    """Nearest-sub-centroid classifier with balanced clustering inside each class.

    Parameters:
        n_subcentroids: K sub-centroids per class (a class with fewer training samples
            gets one per sample; the rest repeat them, which changes no prediction).
        tau: temperature of ``decision_function`` (``max-cosine / tau``; ``"auto"``: from
            the class count, :mod:`deepnc.nn.temperature`) and of the
            softmax of ``predict_proba``.
        max_iter: balanced assignment rounds of ``fit``.
        momentum: momentum of each ``partial_fit`` step, in ``[0, 1)``. 0.9, not the
            head's 0.999: ``partial_fit`` makes one step per batch it is given, tens of
            them rather than the thousands of a training run (``fit`` does not use it).
        sinkhorn_eps, sinkhorn_iterations: the balanced assignment (see
            :class:`~deepnc.SubCentroidBank`).
        standardize: subtract the training mean and divide by the training standard
            deviation of each feature before the cosine (fitted by the first ``fit`` or
            ``partial_fit``).
        random_state: seeds k-means++.

    Attributes:
        classes_: ``(C,)`` class labels.
        subcentroids_: ``(C, K, D)`` unit sub-centroids (float32).
        mean_, scale_: ``(D,)`` the standardisation.
        n_features_in_: D.
    """

    _parameter_constraints: ClassVar[dict] = {
        "n_subcentroids": [Interval(Integral, 1, None, closed="left")],
        "tau": [Interval(Real, 0, None, closed="neither"), StrOptions({"auto"})],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "momentum": [Interval(Real, 0, 1, closed="left")],
        "sinkhorn_eps": [Interval(Real, 0, None, closed="neither")],
        "sinkhorn_iterations": [Interval(Integral, 1, None, closed="left")],
        "standardize": ["boolean"],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        n_subcentroids: int = defaults.NUM_SUBCENTROIDS,
        *,
        tau: float | str = defaults.TAU,
        max_iter: int = 10,
        momentum: float = defaults.PARTIAL_FIT_MOMENTUM,
        sinkhorn_eps: float = defaults.SINKHORN_EPS,
        sinkhorn_iterations: int = defaults.SINKHORN_ITERATIONS,
        standardize: bool = True,
        random_state: int | None = None,
    ) -> None:
        self.n_subcentroids = n_subcentroids
        self.tau = tau
        self.max_iter = max_iter
        self.momentum = momentum
        self.sinkhorn_eps = sinkhorn_eps
        self.sinkhorn_iterations = sinkhorn_iterations
        self.standardize = standardize
        self.random_state = random_state

    # ------------------------------------------------------------------ fitting
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Cluster each class of ``X`` (``(n_samples, n_features)``) into K sub-centroids."""
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        self.classes_, encoded = np.unique(y, return_inverse=True)
        self._check_classes()
        counts = np.bincount(encoded, minlength=len(self.classes_))
        if (counts < self.n_subcentroids).any():
            few = self.classes_[counts < self.n_subcentroids].tolist()
            warnings.warn(
                f"classes {few} have fewer samples than n_subcentroids={self.n_subcentroids}: "
                "they get one sub-centroid per sample",
                stacklevel=2,
            )
        self._fit_scaling(X)
        bank = self._new_bank(momentum=0.0)
        features, labels = self._embed(X), torch.from_numpy(encoded).long()
        bank.fit(features, labels, iterations=self.max_iter)
        self.n_iter_ = self.max_iter
        self._bank = bank
        self._finish()
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, classes=None):
        """One momentum step from a batch; ``classes`` (every label) on the first call."""
        first = not hasattr(self, "classes_")
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32], reset=first)
        check_classification_targets(y)
        if first:
            if classes is None:
                raise ValueError("classes must be given on the first call to partial_fit")
            self.classes_ = np.unique(classes)
            self._check_classes()
            self._fit_scaling(X)
            self._bank = self._new_bank(momentum=self.momentum)
        elif classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(
                f"classes {np.unique(classes).tolist()} differ from those of the first call "
                f"{self.classes_.tolist()}"
            )
        unknown = np.setdiff1d(np.unique(y), self.classes_)
        if unknown.size:
            raise ValueError(
                f"y holds labels {unknown.tolist()} not in classes {self.classes_.tolist()}"
            )
        labels = torch.from_numpy(np.searchsorted(self.classes_, y)).long()
        self._bank.update(self._embed(X), labels)
        self.n_iter_ = getattr(self, "n_iter_", 0) + 1
        self._finish()
        return self

    def _check_classes(self) -> None:
        if len(self.classes_) < 2:
            raise ValueError(
                "DNCClassifier needs samples of at least 2 classes; got 1 class: "
                f"{self.classes_.tolist()}"
            )

    def _fit_scaling(self, X: np.ndarray) -> None:
        if self.standardize:
            self.mean_ = X.mean(axis=0)
            scale = X.std(axis=0)
            self.scale_ = np.where(scale > 0, scale, 1.0)
        else:
            self.mean_ = np.zeros(X.shape[1])
            self.scale_ = np.ones(X.shape[1])

    def _new_bank(self, momentum: float) -> SubCentroidBank:
        seed = check_random_state(self.random_state).randint(2**31 - 1)  # None, int or RandomState
        return SubCentroidBank(
            len(self.classes_),
            self.n_subcentroids,
            self.n_features_in_,
            momentum=momentum,
            sinkhorn_eps=self.sinkhorn_eps,
            sinkhorn_iterations=self.sinkhorn_iterations,
            seed=int(seed),
        )

    def _finish(self) -> None:
        self.subcentroids_ = self._bank.subcentroids.numpy().copy()
        if not self._bank.initialised.all():
            missing = self.classes_[~self._bank.initialised.numpy()].tolist()
            warnings.warn(
                f"classes {missing} have no sample yet: they are never predicted until a "
                "partial_fit call brings some",
                stacklevel=3,
            )

    def _embed(self, X: np.ndarray) -> torch.Tensor:
        """``(n, D)`` unit rows: standardised, then L2-normalised (fp32)."""
        scaled = (X - self.mean_) / self.scale_
        return F.normalize(torch.from_numpy(np.ascontiguousarray(scaled)).float(), dim=1)

    # --------------------------------------------------------------- predicting
    def _logits(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        # float64: a row's logits do not depend on the other rows of the batch
        embedded = self._embed(X).double()
        cosines = embedded @ torch.from_numpy(self.subcentroids_).double().flatten(0, 1).T
        per_class = cosines.view(X.shape[0], len(self.classes_), -1).amax(dim=2)
        return (per_class / resolve_tau(self.tau, len(self.classes_))).numpy()

    def decision_function(self, X) -> np.ndarray:
        """``max_k cos / tau`` per class, ``(n, C)``; ``(n,)`` for two classes (1 minus 0)."""
        logits = self._logits(X)
        return logits[:, 1] - logits[:, 0] if len(self.classes_) == 2 else logits

    def predict_proba(self, X) -> np.ndarray:
        """Softmax of the logits, ``(n, C)``."""
        logits = self._logits(X)
        logits -= logits.max(axis=1, keepdims=True)
        probabilities = np.exp(logits)
        return probabilities / probabilities.sum(axis=1, keepdims=True)

    def predict(self, X) -> np.ndarray:
        """The class of the nearest sub-centroid, ``(n,)``."""
        winners = self._logits(X).argmax(axis=1)
        return self.classes_[winners]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags
