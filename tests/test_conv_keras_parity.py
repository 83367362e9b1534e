"""Optional: models made of every new image and sequence layer, built in Keras 3 (torch
backend) and in nanonet with the same weights (``set_weights``), give the same predictions and
the same weights after 3 SGD steps, to float32 rounding. Skipped when Keras is absent."""
from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

import nanonet as nn  # noqa: E402
from nanonet import layers as L  # noqa: E402


def _images(Input, Sequential, L):
    return Sequential([
        Input((12, 11, 3)),
        L.ZeroPadding2D(((1, 0), (0, 2))),
        L.Conv2D(6, 3, strides=2, padding="same", activation="relu"),
        L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", activation="tanh"),
        L.SeparableConv2D(5, 3, padding="valid"),
        L.BatchNormalization(),
        L.UpSampling2D(),
        L.Cropping2D(((1, 1), (0, 1))),
        L.MaxPooling2D(2, padding="same"),
        L.Conv2D(4, 2, groups=1, dilation_rate=2, padding="same"),
        L.AveragePooling2D(2, strides=1, padding="same"),
        L.GlobalAveragePooling2D(),
        L.Dense(3, activation="softmax"),
    ])


def _sequences(Input, Sequential, L):
    return Sequential([
        Input((15, 4)),
        L.Conv1D(6, 3, padding="causal", dilation_rate=2, activation="relu"),
        L.MaxPooling1D(2, padding="same"),
        L.Conv1D(5, 3, strides=2, padding="same", groups=1),
        L.AveragePooling1D(2),
        L.GlobalMaxPooling1D(),
        L.Dense(3, activation="softmax"),
    ])


@pytest.mark.parametrize("build, shape", [(_images, (8, 12, 11, 3)), (_sequences, (8, 15, 4))])
def test_matches_keras_weight_for_weight(build, shape):
    rng = np.random.default_rng(0)
    km = build(keras.Input, keras.Sequential, keras.layers)
    nm = build(nn.layers.Input, nn.Sequential, L)
    kw = km.get_weights()
    assert [w.shape for w in kw] == [w.shape for w in nm.get_weights()]
    kw = [(0.5 * rng.standard_normal(w.shape)).astype(np.float32) if w.ndim > 1 or
          not np.all(w == 1) else (1 + 0.2 * rng.random(w.shape)).astype(np.float32)
          for w in kw]
    km.set_weights(kw)
    nm.set_weights(kw)
    x = rng.standard_normal(shape).astype(np.float32)
    y = rng.integers(0, 3, shape[0])
    np.testing.assert_allclose(nm.predict(x, verbose=0), np.asarray(km.predict(x, verbose=0)),
                               rtol=2e-5, atol=2e-6)
    km.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    nm.compile(optimizer=nn.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    for _ in range(3):
        kl = km.train_on_batch(x, y)
        nl = nm.train_on_batch(x, y)
    np.testing.assert_allclose(float(nl), float(np.asarray(kl)), rtol=2e-5)
    for a, b in zip(nm.get_weights(), km.get_weights()):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-4, atol=2e-5)
