"""scikit-learn estimators around nanonet models, with Keras 3's names and constructor
(``keras.wrappers.SKLearnClassifier`` / ``SKLearnRegressor``; ``pip install "nanonet[sklearn]"``).

    est = nn.wrappers.SKLearnClassifier(model=build, model_kwargs={"hidden": 32},
                                        fit_kwargs={"epochs": 20, "verbose": 0})
    est.fit(X, y).predict(X)

``model`` is a callable ``model(X=X, y=y, **model_kwargs)`` returning a compiled nanonet model
(X as validated, y as the model is fit on: one-hot (n, n_classes) float32 for the classifier,
(n, n_outputs) for the regressor), or a compiled model, which is deep-copied before each fit
(its current weights are the starting point). ``warm_start=True`` keeps fitting the model of
the previous fit. ``fit_kwargs`` go to ``model.fit``; keyword arguments of ``fit`` override
them. Fitted attributes: ``model_``, ``history_`` (the History's dict of per-epoch lists),
``n_features_in_``, and for the classifier ``classes_``. Beyond Keras, ``random_state=`` (an
int) builds and fits the model under that nanonet seed (``nn.set_seed``; the previous random
state is restored afterwards), which makes fits repeatable, as scikit-learn's checks expect.

The classifier's ``predict_proba`` returns the model's outputs (one column per class, e.g. a
softmax) normalised per row; ``predict`` maps the most probable column back to a label of
``classes_``; ``score`` is accuracy (classifier) or R^2 (regressor), as in scikit-learn. The
estimators clone (``sklearn.base.clone``) and pickle: a fitted model is pickled as the bytes of
nanonet's own model file (``model.save``), never as Python objects.

scikit-learn's ``check_estimator`` passes except for the checks Keras's wrappers also mark as
expected failures (``EXPECTED_FAILED_CHECKS``), because neural-network training is not
reproducible run to run and a few epochs on the checks' tiny data sets do not reach their
scores:

    SKLearnClassifier
      check_classifiers_one_label_sample_weights   zero sample weights are not ignored
      check_classifiers_classes       on the tiny test sets the model does not always predict
                                      every class
      check_classifier_data_not_an_array, check_supervised_y_2d, check_fit_idempotent
                                      they assume two fits give the same model
      check_classifiers_train         the check's accuracy bar after a few epochs
    (both)  check_classifiers_regression_target, check_parameters_default_constructible:
            failures of older scikit-learn only (``model`` has no default)

(They are marked expected failures, not skipped: with ``random_state`` several pass here.)

The classes are made on first use, so importing nanonet never imports scikit-learn; without it,
using them raises ImportError naming the extra.
"""
from __future__ import annotations

import copy
import os

import numpy as np

__all__ = ["EXPECTED_FAILED_CHECKS", "SKLearnClassifier", "SKLearnRegressor"]

EXPECTED_FAILED_CHECKS = {
    "SKLearnClassifier": {
        "check_classifiers_regression_target": "not an issue in scikit-learn >= 1.6",
        "check_parameters_default_constructible": "not an issue in scikit-learn >= 1.6",
        "check_classifiers_one_label_sample_weights": "zero sample weights are not ignored",
        "check_classifiers_classes": "on the tiny test sets not every class is predicted",
        "check_classifier_data_not_an_array": "assumes two fits give the same model",
        "check_supervised_y_2d": "assumes two fits give the same model",
        "check_fit_idempotent": "assumes two fits give the same model",
        "check_classifiers_train": "the accuracy bar after a few epochs",
    },
    "SKLearnRegressor": {
        "check_parameters_default_constructible": "not an issue in scikit-learn >= 1.6",
    },
}

_CLASSES = {}


def _sklearn():
    try:
        import sklearn  # noqa: F401
        from sklearn import base
    except ImportError:
        raise ImportError('nanonet.wrappers needs scikit-learn: pip install "nanonet[sklearn]"'
                          ) from None
    return base


def _validate(est, X, y=None, reset=True):
    from sklearn.utils import validation
    kwargs = {"reset": reset, "dtype": (np.float32, np.float64)}
    if hasattr(validation, "validate_data"):  # scikit-learn >= 1.6
        out = validation.validate_data(est, X, **kwargs) if y is None else \
            validation.validate_data(est, X, y, multi_output=True, **kwargs)
    else:
        out = est._validate_data(X, **kwargs) if y is None else \
            est._validate_data(X, y, multi_output=True, **kwargs)
    X = out if y is None else out[0]
    # An array unpickled by joblib can carry an equal but distinct float32 dtype object, which
    # the compiled kernels refuse (they compare dtypes by identity): view it with numpy's own.
    X = X.view(np.dtype(X.dtype.name))
    return X if y is None else (X, out[1])


def _model_to_bytes(model):
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "model.nnet")
        model.save(path)
        with open(path, "rb") as f:
            return f.read()


def _model_from_bytes(data):
    from .saving import load_model
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "model.nnet")
        with open(path, "wb") as f:
            f.write(data)
        return load_model(path)


def _is_model(obj):
    from .models import Model
    return isinstance(obj, Model)


class _Base:
    """The shared part of both estimators (mixed into scikit-learn's BaseEstimator)."""

    def __init__(self, model, warm_start=False, model_kwargs=None, fit_kwargs=None,
                 random_state=None):
        self.model = model
        self.warm_start = warm_start
        self.model_kwargs = model_kwargs
        self.fit_kwargs = fit_kwargs
        self.random_state = random_state

    def _more_tags(self):  # scikit-learn < 1.6
        return {"non_deterministic": True, "multioutput": "Regressor" in type(self).__name__}

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = True
        if "Regressor" in type(self).__name__:
            tags.target_tags.multi_output = True  # y of shape (n, n_outputs) is fine
        return tags

    def _get_model(self, X, y):
        if self.warm_start and hasattr(self, "model_"):
            return self.model_
        if _is_model(self.model):
            model = copy.deepcopy(self.model)
        elif callable(self.model):
            model = self.model(X=X, y=y, **(self.model_kwargs or {}))
        else:
            raise TypeError(f"{type(self).__name__}: model must be a compiled nanonet model or a "
                            f"callable returning one; got {type(self.model).__name__}")
        if not _is_model(model):
            raise TypeError(f"{type(self).__name__}: model(X=..., y=..., **model_kwargs) must "
                            f"return a nanonet model; got {type(model).__name__}")
        if not model.compiled:
            raise ValueError(f"{type(self).__name__}: the model must be compiled (call "
                             "model.compile(optimizer, loss, ...) in the builder)")
        return model

    def fit(self, X, y, **kwargs):
        """Fit the model on (X, y); keyword arguments go to ``model.fit`` (over fit_kwargs)."""
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y "
                             "is None")
        X, y = _validate(self, X, y, reset=True)
        y = self._encode_target(y, reset=True)
        fit_kwargs = {**(self.fit_kwargs or {}), **kwargs}
        from . import random as _random
        saved = None
        if self.random_state is not None:  # build and fit under this seed, then restore
            saved = _random.get_state()
            _random.set_seed(self.random_state)
        try:
            model = self._get_model(X, y)
            history = model.fit(X, y, **fit_kwargs)
        finally:
            if saved is not None:
                _random.set_state(saved)
        self.model_ = model
        self.history_ = dict(getattr(history, "history", {}) or {})
        return self

    def _raw_predict(self, X):
        from sklearn.utils.validation import check_is_fitted
        check_is_fitted(self, "model_")
        X = _validate(self, X, reset=False)
        out = self.model_.predict(X, verbose=0)
        if isinstance(out, (list, dict)):
            raise ValueError(f"{type(self).__name__}: the model must have one output")
        return np.asarray(out)

    def __getstate__(self):
        state = dict(self.__dict__)
        for key in ("model", "model_"):
            if _is_model(state.get(key)):
                state[key] = ("nanonet-model-file", _model_to_bytes(state[key]))
        return state

    def __setstate__(self, state):
        for key in ("model", "model_"):
            v = state.get(key)
            if isinstance(v, tuple) and len(v) == 2 and v[0] == "nanonet-model-file":
                state[key] = _model_from_bytes(v[1])
        self.__dict__.update(state)


def _classifier_methods():
    def _encode_target(self, y, reset=False):
        from sklearn.utils.multiclass import type_of_target
        kind = type_of_target(y)
        if kind == "unknown":
            raise ValueError(f"{type(self).__name__}: Unknown label type for y: {y!r}")
        if kind not in ("binary", "multiclass"):
            raise ValueError(f"{type(self).__name__}: y must hold class labels (binary or "
                             f"multiclass); got a {kind!r} target")
        y = np.asarray(y)
        if y.ndim == 2:
            y = y[:, 0]
        if reset:
            self.classes_ = np.unique(y)
            if len(self.classes_) < 2:
                raise ValueError(f"{type(self).__name__}: y has one class "
                                 f"({self.classes_[0]!r}); a classifier needs at least two")
        idx = np.searchsorted(self.classes_, y)
        onehot = np.zeros((len(y), len(self.classes_)), dtype=np.float32)
        onehot[np.arange(len(y)), idx] = 1.0
        return onehot

    def predict_proba(self, X):
        """Class probabilities (n_samples, n_classes), columns in ``classes_`` order."""
        out = self._raw_predict(X).astype(np.float64)
        if out.ndim == 1:
            out = out[:, None]
        if out.shape[1] != len(self.classes_):
            raise ValueError(f"{type(self).__name__}: the model has {out.shape[1]} outputs; "
                             f"there are {len(self.classes_)} classes")
        out = np.clip(out, 0.0, None)
        total = out.sum(axis=1, keepdims=True)
        return np.divide(out, total, out=np.full_like(out, 1.0 / out.shape[1]),
                         where=total > 0)

    def decision_function(self, X):
        """The model's raw outputs (n_samples, n_classes); for two classes the second class's
        column (n_samples,), as scikit-learn expects."""
        out = self._raw_predict(X)
        return out[:, 1] if out.ndim == 2 and out.shape[1] == 2 else out

    def predict(self, X):
        """The most probable class label of each sample."""
        proba = self.predict_proba(X)  # first: it checks that the estimator is fitted
        return self.classes_[np.argmax(proba, axis=1)]

    return {"_encode_target": _encode_target, "predict_proba": predict_proba,
            "decision_function": decision_function, "predict": predict}


def _regressor_methods():
    def _encode_target(self, y, reset=False):
        y = np.asarray(y, dtype=np.float32)
        if reset:
            self._y_ndim = y.ndim
        return y.reshape(-1, 1) if y.ndim == 1 else y

    def predict(self, X):
        """Model outputs (float64, as scikit-learn expects); 1-D when the model was fit on a 1-D
        y."""
        out = self._raw_predict(X).astype(np.float64)
        return out.reshape(-1) if getattr(self, "_y_ndim", 2) == 1 and out.ndim == 2 and \
            out.shape[1] == 1 else out

    return {"_encode_target": _encode_target, "predict": predict}


def _make(name):
    base = _sklearn()
    if name == "SKLearnClassifier":
        bases, methods = (base.ClassifierMixin, _Base, base.BaseEstimator), _classifier_methods()
    else:
        bases, methods = (base.RegressorMixin, _Base, base.BaseEstimator), _regressor_methods()
    doc = (f"scikit-learn {'classifier' if 'Class' in name else 'regressor'} around a nanonet "
           "model (Keras 3's keras.wrappers." + name + "); see the nanonet.wrappers docstring.")
    cls = type(name, bases, {"__module__": __name__, "__qualname__": name, "__doc__": doc,
                             **methods})
    return cls


def __getattr__(name):
    if name in ("SKLearnClassifier", "SKLearnRegressor"):
        if name not in _CLASSES:
            _CLASSES[name] = _make(name)
            globals()[name] = _CLASSES[name]
        return _CLASSES[name]
    raise AttributeError(f"module 'nanonet.wrappers' has no attribute {name!r}")
