"""Layers BatchNormalization, LayerNormalization, GlobalAveragePooling1D, GlobalMaxPooling1D,
Reshape and TimeDistributed: against nanonet.reference, float64 finite differences through each
layer's backward, train vs inference behaviour, masks, weights and config round trips."""
import json

import numpy as np
import pytest

from nanonet import layers, reference
from nanonet.layers import (BatchNormalization, Dense, GlobalAveragePooling1D,
                            GlobalMaxPooling1D, LayerNormalization, Reshape, TimeDistributed)

from .tolerances import TOL


def _fd_check(layer, x, R, mask=None):
    """Backward of sum(call(x, training=True) * R) vs central differences, for x and every
    trainable weight (float64)."""
    layer.call(x, training=True, mask=mask)
    dx = layer.backward(R)
    grads = list(layer.grads)
    weights = layer.trainable_weights
    assert len(grads) == len(weights)
    h = 1e-6
    tol = TOL["float64"]["grad_fd"]
    for a, g in [(x, dx)] + list(zip(weights, grads)):
        fd = np.zeros_like(a)
        for i in np.ndindex(a.shape):
            old = a[i]
            a[i] = old + h
            up = np.sum(layer.call(x, training=True, mask=mask) * R)
            a[i] = old - h
            down = np.sum(layer.call(x, training=True, mask=mask) * R)
            a[i] = old
            fd[i] = (up - down) / (2 * h)
        assert g.shape == a.shape
        assert np.abs(g - fd).max() <= tol * (np.linalg.norm(fd) + 1e-3), (type(layer), a.shape)


def _randomize(layer, rng):
    """Random weights: signed gamma/kernel away from 0, positive moving_variance, any other."""
    def value(shape, name):
        if name in ("gamma", "kernel"):
            return rng.uniform(0.5, 1.5, shape) * rng.choice([-1, 1], shape)
        if name == "moving_variance":
            return rng.uniform(0.5, 1.5, shape)
        return rng.standard_normal(shape)
    layer.set_weights([value(w.shape, n) for w, n in zip(layer.weights, layer.weight_names)])


# ---------------------------------------------------------------------------------------------
# BatchNormalization

def test_batch_norm_defaults_weights_and_config():
    bn = BatchNormalization()
    assert (bn.axis, bn.momentum, bn.epsilon, bn.center, bn.scale) == (-1, 0.99, 0.001, True, True)
    bn.build((None, 5))
    assert bn.weight_names == ["gamma", "beta", "moving_mean", "moving_variance"]
    assert len(bn.trainable_weights) == 2 and len(bn.non_trainable_weights) == 2
    assert np.array_equal(bn.gamma, np.ones(5)) and np.array_equal(bn.moving_variance, np.ones(5))
    assert bn.count_params() == 20
    config = json.loads(json.dumps(layers.serialize(bn)))
    back = layers.deserialize(config)
    assert isinstance(back, BatchNormalization) and back.get_config() == bn.get_config()
    plain = BatchNormalization(center=False, scale=False)
    plain.build((None, 3, 4))
    assert plain.weight_names == ["moving_mean", "moving_variance"]
    assert plain.trainable_weights == []


@pytest.mark.parametrize("shape", [(6, 4), (3, 5, 4)])
def test_batch_norm_train_vs_inference(shape):
    rng = np.random.default_rng(1)
    bn = BatchNormalization(momentum=0.9, dtype="float64")
    bn.build((None,) + shape[1:])
    _randomize(bn, rng)
    gamma, beta, mm, mv = (w.copy() for w in bn.weights)
    x = rng.standard_normal(shape) * 2 + 1
    # training: batch statistics, moving statistics follow Keras's rule
    y = bn(x, training=True)
    mm_want, mv_want = mm.copy(), mv.copy()
    want = reference.batch_norm_forward(x, gamma, beta, mm_want, mv_want, True, 0.9, 1e-3)[0]
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)
    rows = x.reshape(-1, 4)
    np.testing.assert_allclose(bn.moving_mean, 0.9 * mm + 0.1 * rows.mean(0), rtol=1e-12)
    np.testing.assert_allclose(bn.moving_variance, 0.9 * mv + 0.1 * rows.var(0), rtol=1e-12)
    # inference: the moving statistics, nothing changes
    before = [w.copy() for w in bn.weights]
    y = bn(x)
    np.testing.assert_allclose(y, (x - bn.moving_mean) / np.sqrt(bn.moving_variance + 1e-3)
                               * gamma + beta, rtol=1e-12, atol=1e-12)
    assert all(np.array_equal(a, b) for a, b in zip(before, bn.weights))
    # a frozen layer uses the moving statistics in training too (Keras 3) and gets no grads
    bn.trainable = False
    np.testing.assert_allclose(bn(x, training=True), y, rtol=1e-12)
    assert all(np.array_equal(a, b) for a, b in zip(before, bn.weights))
    bn.backward(np.ones(shape))
    assert bn.grads == [] and bn.trainable_weights == []


@pytest.mark.parametrize("shape,masked", [((5, 3), False), ((2, 4, 3), False), ((3, 4, 2), True)])
def test_batch_norm_finite_differences(shape, masked):
    rng = np.random.default_rng(2)
    bn = BatchNormalization(dtype="float64")
    bn.build((None,) + shape[1:])
    _randomize(bn, rng)
    x = rng.standard_normal(shape)
    mask = None
    if masked:
        mask = rng.random(shape[:-1]) < 0.6
        mask[0, 0] = True
    _fd_check(bn, x, rng.standard_normal(shape), mask)
    # a frozen layer normalizes with the (constant) moving statistics, also in training
    bn.trainable = False
    _fd_check(bn, x, rng.standard_normal(shape), mask)


def test_batch_norm_mask_statistics_and_float32():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 6, 3)).astype(np.float32)
    mask = rng.random((4, 6)) < 0.5
    mask[0, 0] = True
    bn = BatchNormalization(momentum=0.0)  # moving statistics = the last batch's
    y = bn(x, training=True, mask=mask)
    assert y.dtype == np.float32 and y.shape == x.shape
    kept = x[mask].astype(np.float64)
    np.testing.assert_allclose(bn.moving_mean, kept.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.moving_variance, kept.var(0), rtol=1e-5)
    assert bn.compute_mask(x, mask) is mask   # the mask passes on
    with pytest.raises(ValueError, match=r"mask must have the input's leading shape \(4, 6\)"):
        bn(x, training=True, mask=mask[:, :5])


def test_batch_norm_errors():
    with pytest.raises(ValueError, match="momentum must be a number in"):
        BatchNormalization(momentum=1.5)
    with pytest.raises(ValueError, match="epsilon must be a number > 0"):
        BatchNormalization(epsilon=0)
    with pytest.raises(ValueError, match="center must be True or False"):
        BatchNormalization(center="yes")
    bn = BatchNormalization(axis=1)
    with pytest.raises(ValueError, match="only the last axis is supported"):
        bn.build((None, 3, 4))
    bn = BatchNormalization()
    bn.build((None, 4))
    with pytest.raises(ValueError, match=r"input must be \(batch, \.\.\., 4\); got shape \(2, 5\)"):
        bn(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="backward\\(\\) needs a preceding call"):
        bn.backward(np.zeros((2, 4)))


# ---------------------------------------------------------------------------------------------
# LayerNormalization

@pytest.mark.parametrize("shape", [(4, 5), (2, 3, 6)])
def test_layer_norm_reference_and_finite_differences(shape):
    rng = np.random.default_rng(4)
    ln = LayerNormalization(dtype="float64")
    assert ln.epsilon == 0.001
    ln.build((None,) + shape[1:])
    assert ln.weight_names == ["gamma", "beta"]
    _randomize(ln, rng)
    x = rng.standard_normal(shape) * 3
    want = reference.layer_norm_forward(x, ln.gamma, ln.beta, 1e-3)[0]
    np.testing.assert_allclose(ln(x), want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ln(x, training=True), want, rtol=1e-12, atol=1e-12)
    _fd_check(ln, x, rng.standard_normal(shape))
    back = layers.deserialize(json.loads(json.dumps(layers.serialize(ln))))
    assert back.get_config() == ln.get_config()


def test_layer_norm_without_affine_float32():
    x = np.random.default_rng(5).standard_normal((3, 7)).astype(np.float32)
    ln = LayerNormalization(center=False, scale=False)
    y = ln(x)
    assert ln.weights == [] and y.dtype == np.float32
    x64 = x.astype(np.float64)
    want = (x64 - x64.mean(-1, keepdims=True)) / np.sqrt(x64.var(-1, keepdims=True) + 1e-3)
    np.testing.assert_allclose(y, want, rtol=2e-6, atol=2e-6)


# ---------------------------------------------------------------------------------------------
# Global pooling

@pytest.mark.parametrize("cls", [GlobalAveragePooling1D, GlobalMaxPooling1D])
@pytest.mark.parametrize("masked", [False, True])
def test_global_pooling_layers(cls, masked):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 5, 4))
    mask = None
    if masked:
        mask = rng.random((3, 5)) < 0.6
        mask[0] = False          # a fully masked sample pools to 0
        mask[1, 0] = True
    layer = cls(dtype="float64")
    y = layer(x, mask=mask)
    if cls is GlobalAveragePooling1D:
        want = reference.global_avg_pool1d_forward(x, mask)
    else:
        want = reference.global_max_pool1d_forward(x, mask)[0]
    np.testing.assert_allclose(y, want, rtol=1e-13)
    if masked:
        assert not y[0].any()
    assert layer.compute_mask(x, mask) is None           # the mask is consumed
    assert layer.compute_output_shape((None, 5, 4)) == (None, 4)
    _fd_check(layer, x, rng.standard_normal((3, 4)), mask)
    # keepdims and channels_first
    k = cls(keepdims=True, dtype="float64")
    assert k(x, mask=mask).shape == (3, 1, 4) and k.compute_output_shape((None, 5, 4)) == (None, 1, 4)
    cf = cls(data_format="channels_first", dtype="float64")
    xt = np.ascontiguousarray(x.transpose(0, 2, 1))
    np.testing.assert_allclose(cf(xt, mask=mask), want, rtol=1e-13)
    R = rng.standard_normal((3, 4))
    cf(xt, training=True, mask=mask)
    dxt = cf.backward(R)
    layer(x, training=True, mask=mask)
    np.testing.assert_allclose(dxt, layer.backward(R).transpose(0, 2, 1), rtol=1e-13)
    assert cls.__name__ in json.dumps(layers.serialize(cf))


def test_global_pooling_errors():
    with pytest.raises(ValueError, match="data_format must be one of"):
        GlobalAveragePooling1D(data_format="nchw")
    p = GlobalMaxPooling1D()
    with pytest.raises(ValueError, match=r"input must be 3-D \(batch, steps, features\)"):
        p(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"mask must be \(batch, steps\) = \(2, 3\)"):
        p(np.zeros((2, 3, 4)), mask=np.ones((2, 4), bool))
    p(np.zeros((2, 3, 4)), training=True)
    with pytest.raises(ValueError, match=r"dy must have the output's shape \(2, 4\)"):
        p.backward(np.zeros((2, 5)))
    assert layers.GlobalAvgPool1D is GlobalAveragePooling1D


# ---------------------------------------------------------------------------------------------
# Reshape

def test_reshape():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3, 4))
    r = Reshape((4, -1))
    assert r.compute_output_shape((None, 3, 4)) == (None, 4, 3)
    assert r.compute_output_shape((None, None, 4)) == (None, 4, None)
    y = r(x, training=True)
    assert np.array_equal(y, x.reshape(2, 4, 3))
    dy = rng.standard_normal((2, 4, 3))
    assert np.array_equal(r.backward(dy), dy.reshape(2, 3, 4)) and r.grads == []
    assert Reshape(12)(x).shape == (2, 12)
    with pytest.raises(ValueError, match="at most one -1"):
        Reshape((-1, -1))
    with pytest.raises(ValueError, match="positive ints"):
        Reshape((0, 3))
    with pytest.raises(ValueError, match=r"cannot reshape input of shape \(batch,\) \+ \(3, 4\)"):
        Reshape((5,))(x)
    with pytest.raises(ValueError, match="cannot reshape"):
        Reshape((5, -1))(x)
    back = layers.deserialize(json.loads(json.dumps(layers.serialize(r))))
    assert back.target_shape == (4, -1)


# ---------------------------------------------------------------------------------------------
# TimeDistributed

def test_time_distributed_dense_matches_per_step_dense():
    rng = np.random.default_rng(8)
    td = TimeDistributed(Dense(3, activation="tanh", dtype="float64"), dtype="float64")
    x = rng.standard_normal((2, 4, 5))
    y = td(x)
    assert y.shape == (2, 4, 3) and td.compute_output_shape((None, 4, 5)) == (None, 4, 3)
    assert td.weight_names == ["kernel", "bias"] and td.weights[0] is td.layer.kernel
    assert td.count_params() == 5 * 3 + 3
    _randomize(td, rng)   # set_weights through the wrapper reaches the Dense
    k, b = td.layer.kernel, td.layer.bias
    for t in range(4):
        np.testing.assert_allclose(td(x)[:, t], np.tanh(x[:, t] @ k + b), rtol=1e-12)
    _fd_check(td, x, rng.standard_normal((2, 4, 3)))
    assert len(td.grads) == 2 and td.grads[0].shape == (5, 3)


def test_time_distributed_config_and_logits():
    td = TimeDistributed(Dense(6, activation="softmax"))
    td.build((None, 3, 2))
    assert td.fused_activation == "softmax"
    x = np.random.default_rng(9).standard_normal((2, 3, 2)).astype(np.float32)
    logits = td.call_logits(x)
    k, b = td.layer.kernel, td.layer.bias
    np.testing.assert_allclose(logits, x @ k + b, rtol=1e-5, atol=1e-6)
    config = json.loads(json.dumps(layers.serialize(td)))
    back = layers.deserialize(config)
    assert isinstance(back, TimeDistributed) and isinstance(back.layer, Dense)
    assert back.layer.units == 6 and back.layer.activation == "softmax"
    back.build((None, 3, 2))
    back.set_weights(td.get_weights())
    np.testing.assert_allclose(back(x), td(x), rtol=1e-6)
    with pytest.raises(ValueError, match="layer must be a nanonet Layer instance"):
        TimeDistributed("dense")
    with pytest.raises(ValueError, match="input must be at least 3-D"):
        TimeDistributed(Dense(2))(np.zeros((2, 3)))


# ---------------------------------------------------------------------------------------------
# in a model

def test_layers_train_inside_sequential():
    models = pytest.importorskip("nanonet.models")
    rng = np.random.default_rng(10)
    x = rng.standard_normal((64, 6, 4)).astype(np.float32)
    y = (x[:, :, 0].mean(axis=1) > 0).astype(np.int64)
    model = models.Sequential([
        TimeDistributed(Dense(8, activation="relu")),
        LayerNormalization(),
        BatchNormalization(),
        GlobalAveragePooling1D(),
        Reshape((8,)),
        Dense(2, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    history = model.fit(x, y, epochs=8, batch_size=16, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < losses[0]
    bn = model.layers[2]
    assert isinstance(bn, BatchNormalization) and np.abs(bn.moving_mean).max() > 0
    # inference uses the moving statistics: a sample's prediction does not depend on its batch
    np.testing.assert_allclose(model.predict(x)[:5], model.predict(x[:5]), rtol=1e-5, atol=1e-6)
