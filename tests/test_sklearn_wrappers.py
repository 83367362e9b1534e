"""nn.wrappers.SKLearnClassifier / SKLearnRegressor inside scikit-learn."""
import pickle

import numpy as np
import pytest

import nanonet as nn

sklearn = pytest.importorskip("sklearn")
from nanonet.wrappers import EXPECTED_FAILED_CHECKS, SKLearnClassifier, SKLearnRegressor
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks


def mlp(X, y, hidden=16, loss="categorical_crossentropy", activation="softmax", lr=0.01):
    model = nn.Sequential([nn.Input((X.shape[1],)), nn.layers.Dense(hidden, activation="relu"),
                           nn.layers.Dense(y.shape[1], activation=activation)])
    model.compile(optimizer=nn.optimizers.Adam(lr), loss=loss)
    return model


def blobs(n=240, seed=0):
    rng = np.random.default_rng(seed)
    centers = np.array([[0, 0, 0, 0], [3, 3, 0, 0], [0, 3, 3, 0]])
    y = rng.integers(0, 3, size=n)
    X = centers[y] + rng.normal(scale=0.7, size=(n, 4))
    return X, np.array(["a", "b", "c"])[y]


def classifier(**kw):
    return SKLearnClassifier(model=mlp, fit_kwargs={"epochs": 30, "verbose": 0, "batch_size": 32},
                             **kw)


def test_classifier_fit_predict_proba_score():
    nn.set_seed(0)
    X, y = blobs()
    est = classifier().fit(X, y)
    assert list(est.classes_) == ["a", "b", "c"] and est.n_features_in_ == 4
    proba = est.predict_proba(X)
    assert proba.shape == (len(X), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    pred = est.predict(X)
    assert set(pred) <= {"a", "b", "c"}
    np.testing.assert_array_equal(pred, est.classes_[proba.argmax(axis=1)])
    assert est.score(X, y) > 0.9
    assert len(est.history_["loss"]) == 30 and est.history_["loss"][-1] < est.history_["loss"][0]


def test_binary_labels():
    nn.set_seed(0)
    X, y = blobs()
    y = np.where(y == "a", 5, -1)
    est = classifier().fit(X, y)
    assert list(est.classes_) == [-1, 5] and est.model_.output_shape == (None, 2)
    assert est.predict_proba(X).shape == (len(X), 2)
    assert set(est.predict(X)) == {-1, 5} and est.score(X, y) > 0.9


def test_regressor_and_get_set_params():
    nn.set_seed(0)
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.3
    est = SKLearnRegressor(model=mlp, model_kwargs={"loss": "mse", "activation": None},
                           fit_kwargs={"epochs": 60, "verbose": 0})
    assert est.get_params()["model_kwargs"] == {"loss": "mse", "activation": None}
    est.set_params(warm_start=False)
    est.fit(X, y)
    assert est.predict(X).shape == (200,)
    assert est.score(X, y) > 0.9


def test_a_compiled_model_is_copied_and_warm_start_continues():
    X, y = blobs(90)
    onehot = nn.utils.to_categorical(np.searchsorted(np.unique(y), y))
    model = mlp(X, onehot)
    before = model.get_weights()
    est = SKLearnClassifier(model=model, fit_kwargs={"epochs": 2, "verbose": 0}).fit(X, y)
    assert est.model_ is not model
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    warm = SKLearnClassifier(model=mlp, warm_start=True, fit_kwargs={"epochs": 1, "verbose": 0})
    warm.fit(X, y)
    first = warm.model_
    warm.fit(X, y)
    assert warm.model_ is first
    assert first.optimizer.iterations == 2 * int(np.ceil(90 / 32))


def test_pipeline_cross_val_score_grid_search():
    nn.set_seed(0)
    X, y = blobs(150)
    pipe = make_pipeline(StandardScaler(), classifier())
    scores = cross_val_score(pipe, X, y, cv=3)
    assert scores.shape == (3,) and scores.mean() > 0.8
    grid = GridSearchCV(classifier(), {"model_kwargs": [{"hidden": 2}, {"hidden": 16}]}, cv=2)
    grid.fit(X, y)
    assert grid.best_params_["model_kwargs"] in ({"hidden": 2}, {"hidden": 16})
    assert grid.score(X, y) > 0.8


def test_clone_and_pickle():
    nn.set_seed(0)
    X, y = blobs(90)
    est = classifier(model_kwargs={"hidden": 8}).fit(X, y)
    c = clone(est)
    assert not hasattr(c, "model_") and c.get_params()["model_kwargs"] == {"hidden": 8}
    back = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(back.predict_proba(X), est.predict_proba(X))
    model_est = SKLearnClassifier(model=mlp(X, nn.utils.to_categorical([0, 1, 2])))
    again = pickle.loads(pickle.dumps(model_est))
    assert isinstance(again.model, nn.Model)


def test_bad_targets_and_models():
    X, y = blobs(30)
    with pytest.raises(ValueError, match="one class"):
        classifier().fit(X, np.zeros(30))
    with pytest.raises(ValueError, match="continuous"):
        classifier().fit(X, np.linspace(0, 1, 30))
    with pytest.raises(TypeError, match="must return a nanonet model"):
        SKLearnClassifier(model=lambda X, y: "not a model").fit(X, y)

    def uncompiled(X, y):
        return nn.Sequential([nn.Input((4,)), nn.layers.Dense(3)])
    with pytest.raises(ValueError, match="must be compiled"):
        SKLearnClassifier(model=uncompiled).fit(X, y)


def test_missing_sklearn_names_the_extra(monkeypatch):
    import sys

    import nanonet.wrappers as w
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setattr(w, "_CLASSES", {})
    monkeypatch.delitem(w.__dict__, "SKLearnRegressor", raising=False)
    with pytest.raises(ImportError, match=r'pip install "nanonet\[sklearn\]"'):
        w.__getattr__("SKLearnRegressor")


ESTIMATORS = [
    SKLearnClassifier(model=mlp, model_kwargs={"hidden": 20},
                      fit_kwargs={"epochs": 5, "verbose": 0}),
    SKLearnRegressor(model=mlp, model_kwargs={"loss": "mse", "activation": None, "lr": 0.03},
                     fit_kwargs={"epochs": 40, "verbose": 0})]

try:  # expected_failed_checks: scikit-learn >= 1.6
    checks = parametrize_with_checks(
        ESTIMATORS, expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS[type(est).__name__])
except TypeError:
    checks = pytest.mark.skip(reason="check_estimator with expected failures needs "
                                     "scikit-learn >= 1.6")


@checks
def test_sklearn_check_estimator(estimator, check):
    check(estimator)
