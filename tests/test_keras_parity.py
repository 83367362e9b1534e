"""Optional: the same functional graph built in Keras 3 (torch backend) and in nanonet, weights
copied with ``set_weights`` in ``get_weights()`` order, gives the same predictions and losses to
float32 rounding. Skipped when Keras is absent (``pip install torch==2.13.0 keras==3.15.1``)."""
from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

import nanonet as nn  # noqa: E402
from nanonet import layers as L  # noqa: E402

V, T, E, H = 40, 9, 8, 6


def _model(Input, Model, L):
    """The same graph from either library: its Input, Model and layers namespace."""
    tokens = Input(shape=(T,), dtype="int32", name="tokens")
    extra = Input(shape=(5,), name="extra")
    x = L.Embedding(V, E, mask_zero=True, name="emb")(tokens)
    h = L.LSTM(H, return_sequences=True, name="lstm_a")(x)
    h = L.Add(name="res")([h, L.LSTM(H, return_sequences=True, name="lstm_b")(h)])
    h = L.LayerNormalization(name="ln")(h)
    v = L.GlobalAveragePooling1D(name="gap")(h)
    v = L.Concatenate(name="cat")([v, L.Dense(4, activation="relu", name="ex")(extra)])
    out = L.Dense(3, activation="softmax", name="label")(v)
    aux = L.Dense(1, name="score")(L.Multiply(name="gate")([v, v]))
    return Model([tokens, extra], [out, aux])


def test_functional_model_matches_keras_weight_for_weight():
    rng = np.random.default_rng(0)
    km = _model(keras.Input, keras.Model, keras.layers)
    nm = _model(nn.Input, nn.Model, L)
    assert [lay.name for lay in km.layers] == [lay.name for lay in nm.layers]
    kw = km.get_weights()
    assert [w.shape for w in kw] == [w.shape for w in nm.get_weights()]
    kw = [0.4 * rng.standard_normal(w.shape).astype(np.float32) for w in kw]
    km.set_weights(kw)
    nm.set_weights(kw)
    n = 12
    xt = np.zeros((n, T), np.int32)
    for i in range(n):
        k = int(rng.integers(2, T + 1))
        xt[i, :k] = rng.integers(1, V, k)             # post-padded: the mask matters
    xe = rng.standard_normal((n, 5)).astype(np.float32)
    y = rng.integers(0, 3, n)
    s = rng.standard_normal((n, 1)).astype(np.float32)
    kp = km.predict([xt, xe], verbose=0)
    npred = nm.predict([xt, xe], verbose=0)
    for a, b in zip(kp, npred):
        np.testing.assert_allclose(b, np.asarray(a), rtol=2e-5, atol=2e-6)
    loss = {"label": "sparse_categorical_crossentropy", "score": "mse"}
    weights = {"label": 1.0, "score": 0.3}
    km.compile(optimizer="adam", loss=loss, loss_weights=weights)
    nm.compile(optimizer="adam", loss=loss, loss_weights=weights)
    k_loss = km.evaluate([xt, xe], {"label": y, "score": s}, verbose=0, return_dict=True)
    n_loss = nm.evaluate([xt, xe], {"label": y, "score": s}, verbose=0, return_dict=True)
    np.testing.assert_allclose(n_loss["loss"], k_loss["loss"], rtol=2e-5)
    for key in ("label_loss", "score_loss"):
        if key in k_loss:
            np.testing.assert_allclose(n_loss[key], k_loss[key], rtol=2e-5)
