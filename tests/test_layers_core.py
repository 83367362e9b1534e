"""Core layers (Dense, Activation, Dropout, Flatten, Input), the Layer base class, initializers
and regularizers: forward vs NumPy, backward vs float64 finite differences, config, weights,
seeding and every error path."""
import math

import numpy as np
import pytest

import nanonet as nn
from nanonet import initializers, layers, reference, regularizers

from .tolerances import TOL

ACTS = ["linear", "sigmoid", "tanh", "relu", "softmax", "log_softmax", "gelu", "gelu_approximate",
        "silu", "swish", "elu", "selu", "leaky_relu", "softplus", "softsign", "hard_sigmoid",
        "exponential"]


def _np_act(z, a):
    if a not in ("linear", "sigmoid", "tanh", "relu", "softmax", "log_softmax"):
        return reference.activation_forward(z, a)  # the newer ones: their NumPy twin
    if a == "linear":
        return z
    if a == "sigmoid":
        return 1 / (1 + np.exp(-z))
    if a == "tanh":
        return np.tanh(z)
    if a == "relu":
        return np.maximum(z, 0)
    e = np.exp(z - z.max(-1, keepdims=True))
    s = e / e.sum(-1, keepdims=True)
    return s if a == "softmax" else np.log(s)


def _fd_check(f, arrays, grads, h=1e-6):
    """Central differences of the scalar f() wrt each array (perturbed in place)."""
    tol = TOL["float64"]["grad_fd"]
    for a, g in zip(arrays, grads):
        num = np.zeros_like(a)
        for i in np.ndindex(a.shape):
            old = a[i]
            a[i] = old + h
            fp = f()
            a[i] = old - h
            fm = f()
            a[i] = old
            num[i] = (fp - fm) / (2 * h)
        scale = max(np.linalg.norm(num), 1e-3)
        assert np.linalg.norm(num - g) <= tol * scale * 10, (num, g)


def _random_weights(layer, rng):
    layer.set_weights([rng.standard_normal(w.shape) * 0.5 for w in layer.weights])


# -- Dense ------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation", ACTS)
@pytest.mark.parametrize("shape", [(5, 7), (1, 3), (2, 3, 4)])
def test_dense_forward_matches_numpy(shape, activation, dtype):
    rng = np.random.default_rng(1)
    layer = layers.Dense(6, activation=activation, dtype=dtype)
    x = rng.standard_normal(shape).astype(dtype)
    layer.build((None,) + shape[1:])
    _random_weights(layer, rng)
    y = layer(x)
    kernel, bias = layer.get_weights()
    want = _np_act(x.astype(np.float64) @ kernel + bias, activation)
    assert y.shape == shape[:-1] + (6,) and y.dtype == dtype
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(y, want, rtol=tol, atol=tol)


def test_dense_layout_and_defaults():
    layer = layers.Dense(3)
    assert layer.activation == "linear" and layer.use_bias
    y = layer(np.ones((2, 5), np.float32))
    assert layer.kernel.shape == (5, 3) and layer.bias.shape == (3,)
    assert layer.weight_names == ["kernel", "bias"]
    np.testing.assert_array_equal(layer.bias, 0)  # bias_initializer "zeros"
    limit = math.sqrt(6 / (5 + 3))                # glorot_uniform
    assert np.all(np.abs(layer.kernel) <= limit)
    assert y.shape == (2, 3) and y.dtype == np.float32
    assert layer.count_params() == 18
    nobias = layers.Dense(3, use_bias=False)
    nobias.build((None, 5))
    assert len(nobias.weights) == 1 and nobias.count_params() == 15


@pytest.mark.parametrize("activation", ACTS)
@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 3)])
@pytest.mark.parametrize("use_bias", [True, False])
def test_dense_backward_finite_differences(activation, shape, use_bias):
    rng = np.random.default_rng(2)
    layer = layers.Dense(5, activation=activation, use_bias=use_bias, dtype="float64")
    layer.build((None,) + shape[1:])
    _random_weights(layer, rng)  # random biases too
    x = rng.standard_normal(shape)
    r = rng.standard_normal(shape[:-1] + (5,))
    y = layer.call(x, training=True)
    dx = layer.backward(r)
    assert dx.shape == x.shape
    assert [g.shape for g in layer.grads] == [w.shape for w in layer.trainable_weights]
    f = lambda: float(np.sum(layer.call(x) * r))  # noqa: E731
    _fd_check(f, [x] + layer.weights, [dx] + layer.grads)
    np.testing.assert_allclose(y, layer.call(x), rtol=1e-15)


def test_dense_call_logits_skips_activation():
    rng = np.random.default_rng(3)
    layer = layers.Dense(4, activation="softmax", dtype="float64")
    layer.build((None, 3))
    _random_weights(layer, rng)
    x = rng.standard_normal((2, 3))
    z = layer.call_logits(x, training=True)
    np.testing.assert_allclose(z, x @ layer.kernel + layer.bias, rtol=1e-14)
    dz = rng.standard_normal(z.shape)
    dx = layer.backward(dz)          # dz is d loss / d logits: no softmax backward
    np.testing.assert_allclose(dx, dz @ layer.kernel.T, rtol=1e-14)
    np.testing.assert_allclose(layer.grads[0], x.T @ dz, rtol=1e-14)
    assert layer.fused_activation == "softmax"


def test_dense_needs_input_grad_false_returns_none():
    layer = layers.Dense(2)
    layer.build((None, 3))
    layer.needs_input_grad = False
    layer.call(np.ones((4, 3), np.float32), training=True)
    assert layer.backward(np.ones((4, 2), np.float32)) is None
    assert len(layer.grads) == 2


def test_dense_integer_and_float64_input_are_converted():
    layer = layers.Dense(2)
    y = layer(np.arange(6).reshape(2, 3))
    assert y.dtype == np.float32
    y64 = layer(np.arange(6, dtype=np.float64).reshape(2, 3))
    np.testing.assert_allclose(y, y64)


def test_dense_errors():
    with pytest.raises(ValueError, match="units must be a positive int; got 0"):
        layers.Dense(0)
    with pytest.raises(ValueError, match="units must be a positive int"):
        layers.Dense(2.5)
    with pytest.raises(ValueError, match=r"activation must be None or one of .*'relu'.*got 'mish'"):
        layers.Dense(2, activation="mish")
    with pytest.raises(ValueError, match="use_bias must be True or False"):
        layers.Dense(2, use_bias="no")
    with pytest.raises(ValueError, match="dtype must be one of"):
        layers.Dense(2, dtype="float16")
    with pytest.raises(ValueError, match="Unknown initializer 'nope'"):
        layers.Dense(2, kernel_initializer="nope")
    with pytest.raises(ValueError, match="Unknown regularizer 'l3'"):
        layers.Dense(2, kernel_regularizer="l3")
    layer = layers.Dense(2)
    with pytest.raises(ValueError, match="not built yet"):
        layer.count_params()
    with pytest.raises(ValueError, match=r"input shape must be \(batch, \.\.\., features\)"):
        layer.build((None, None))
    layer.build((None, 3))
    with pytest.raises(ValueError, match=r"input must be \(batch, \.\.\., 3\); got shape \(4, 5\)"):
        layer(np.ones((4, 5)))
    with pytest.raises(ValueError, match="backward\\(\\) needs a preceding call"):
        layer.backward(np.ones((4, 2)))
    layer.call(np.ones((4, 3)), training=True)
    with pytest.raises(ValueError, match=r"dy must have the output's shape \(4, 2\)"):
        layer.backward(np.ones((4, 3)))
    with pytest.raises(ValueError, match="expects numeric input"):
        layer(np.array([["a", "b", "c"]]))


def test_dense_config_round_trip():
    layer = layers.Dense(4, activation="tanh", use_bias=False, kernel_initializer="he_normal",
                         kernel_regularizer=regularizers.L2(0.1), name="d", dtype="float64")
    config = layer.get_config()
    assert config["units"] == 4 and config["activation"] == "tanh"
    assert config["kernel_initializer"] == {"class_name": "HeNormal", "config": {"seed": None}}
    assert config["kernel_regularizer"] == {"class_name": "L2", "config": {"l2": 0.1}}
    again = layers.deserialize(layers.serialize(layer))
    assert type(again) is layers.Dense and again.get_config() == config
    with pytest.raises(ValueError, match="unknown layer class 'Conv3D'"):
        layers.deserialize({"class_name": "Conv3D", "config": {}})


def test_layer_names_are_unique_and_repr():
    a, b = layers.Dense(1), layers.Dense(1)
    assert a.name != b.name and a.name.startswith("dense")
    assert "units=1" in repr(a)
    assert layers.Dropout(0.5).name.startswith("dropout")


# -- weights ----------------------------------------------------------------------------------

def test_get_set_weights_round_trip_and_errors():
    layer = layers.Dense(3)
    layer.build((None, 2))
    values = [np.arange(6, dtype=np.float64).reshape(2, 3), np.array([1.0, 2.0, 3.0])]
    layer.set_weights(values)
    got = layer.get_weights()
    for g, v in zip(got, values):
        np.testing.assert_array_equal(g, v)
        assert g.dtype == np.float32
    got[0][0, 0] = 99  # copies, not views
    assert layer.kernel[0, 0] == 0
    kernel_id = id(layer.kernel)
    layer.set_weights(values)
    assert id(layer.kernel) == kernel_id  # updated in place (optimizer slots stay attached)
    with pytest.raises(ValueError, match=r"expects 2 weights \(kernel, bias\); got 1"):
        layer.set_weights(values[:1])
    with pytest.raises(ValueError, match=r"weight 'kernel' has shape \(2, 3\); got \(3, 2\)"):
        layer.set_weights([values[0].T, values[1]])
    np.testing.assert_array_equal(layer.kernel, values[0])  # unchanged after a failed call


def test_trainable_flags_and_add_weight():
    class Scale(layers.Layer):
        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="w")
            self.s = self.add_weight(shape=(), initializer="zeros", trainable=False, name="s")

        def call(self, x, training=False, mask=None):
            return x * self.w

    layer = Scale()
    layer(np.ones((2, 3)))
    assert layer.weight_names == ["w", "s"]
    assert len(layer.trainable_weights) == 1 and len(layer.non_trainable_weights) == 1
    layer.trainable = False
    assert layer.trainable_weights == [] and len(layer.non_trainable_weights) == 2
    assert layers.deserialize(layers.serialize(layer)).name == layer.name  # registered by class
    with pytest.raises(TypeError, match="shape must be a tuple of ints; got 'kernel'"):
        layer.add_weight("kernel", (2, 2))
    with pytest.raises(ValueError, match="shape must be fully known"):
        layer.add_weight(shape=(None, 2))


def test_regularization_losses_and_gradients():
    layer = layers.Dense(2, kernel_regularizer=regularizers.L1L2(l1=0.1, l2=0.2),
                         bias_regularizer="l2", dtype="float64")
    layer.build((None, 3))
    rng = np.random.default_rng(4)
    _random_weights(layer, rng)
    k, b = layer.kernel, layer.bias
    want = [0.1 * np.abs(k).sum() + 0.2 * (k * k).sum(), 0.01 * (b * b).sum()]
    np.testing.assert_allclose(layer.losses, want, rtol=1e-12)
    layer.call(rng.standard_normal((4, 3)), training=True)
    layer.backward(np.zeros((4, 2)))
    layer.add_regularization_gradients()
    np.testing.assert_allclose(layer.grads[0], 0.1 * np.sign(k) + 0.4 * k, rtol=1e-12)
    np.testing.assert_allclose(layer.grads[1], 0.02 * b, rtol=1e-12)


# -- Activation, Flatten, Input ---------------------------------------------------------------

@pytest.mark.parametrize("activation", ACTS)
def test_activation_layer_forward_backward(activation):
    rng = np.random.default_rng(5)
    layer = layers.Activation(activation)
    x = rng.standard_normal((3, 2, 4))
    y = layer.call(x, training=True)
    np.testing.assert_allclose(y, _np_act(x, activation), rtol=1e-12, atol=1e-14)
    assert y.dtype == np.float64  # keeps a float input's dtype
    r = rng.standard_normal(x.shape)
    dx = layer.backward(r)
    _fd_check(lambda: float(np.sum(layer.call(x) * r)), [x], [dx])
    assert layer.weights == [] and layer.fused_activation == activation
    assert layers.Activation(None).activation == "linear"
    with pytest.raises(ValueError, match="activation must be None or one of"):
        layers.Activation("mish")


def test_flatten():
    layer = layers.Flatten()
    x = np.arange(24.0).reshape(2, 3, 4)
    y = layer.call(x, training=True)
    assert y.shape == (2, 12)
    np.testing.assert_array_equal(layer.backward(y), x)
    assert layer.compute_output_shape((None, 3, 4)) == (None, 12)
    assert layer.compute_output_shape((None, None, 4)) == (None, None)
    assert layer.compute_mask(x, np.ones((2, 3), bool)) is None


def test_input_layer():
    inp = layers.Input(shape=(8,))
    # Keras 3: Input is a symbolic tensor; its layer is the InputLayer.
    assert isinstance(inp, layers.SymbolicTensor) and isinstance(inp.layer, layers.InputLayer)
    assert inp.shape == (None, 8) and inp.dtype == "float32"
    assert layers.Input(batch_shape=(4, 5), dtype="int32").shape == (4, 5)
    assert layers.Input((3, 2), batch_size=7).shape == (7, 3, 2)
    with pytest.raises(ValueError, match="exactly one of shape and batch_shape"):
        layers.Input()
    with pytest.raises(ValueError, match="shape must be a tuple"):
        layers.Input(shape=(-1,))
    with pytest.raises(ValueError, match="dtype must be a numeric dtype"):
        layers.Input((3,), dtype="str")


# -- Dropout ----------------------------------------------------------------------------------

def test_dropout_inference_is_identity_and_training_scales():
    x = np.ones((200, 50), np.float32)
    layer = layers.Dropout(0.3, seed=1)
    assert layer(x) is x or np.array_equal(layer(x), x)
    y = layer.call(x, training=True)
    kept = y != 0
    assert abs(kept.mean() - 0.7) < 0.02
    np.testing.assert_allclose(y[kept], 1 / 0.7, rtol=1e-6)
    dy = np.full_like(x, 2.0)
    np.testing.assert_allclose(layer.backward(dy), np.where(kept, 2 / 0.7, 0), rtol=1e-6)
    assert y.dtype == np.float32


def test_dropout_seed_and_set_seed_repeat():
    x = np.ones((4, 6))
    a = layers.Dropout(0.5, seed=3).call(x, training=True)
    b = layers.Dropout(0.5, seed=3).call(x, training=True)
    np.testing.assert_array_equal(a, b)
    nn.set_seed(11)
    c = layers.Dropout(0.5).call(x, training=True)
    nn.set_seed(11)
    d = layers.Dropout(0.5).call(x, training=True)
    np.testing.assert_array_equal(c, d)


def test_dropout_noise_shape_rate_edges_and_errors():
    x = np.ones((3, 5, 4))
    y = layers.Dropout(0.5, noise_shape=(None, 1, 4), seed=0).call(x, training=True)
    assert np.all(y == y[:, :1, :])  # the same features dropped at every step
    assert np.array_equal(layers.Dropout(0.0).call(x, training=True), x)
    assert np.all(layers.Dropout(1.0).call(x, training=True) == 0)
    with pytest.raises(ValueError, match=r"rate must be a number in \[0, 1\]; got 1.5"):
        layers.Dropout(1.5)
    with pytest.raises(ValueError, match="does not broadcast"):
        layers.Dropout(0.5, noise_shape=(None, 2, 4)).call(x, training=True)
    with pytest.raises(ValueError, match="must have the input's rank"):
        layers.Dropout(0.5, noise_shape=(None, 4)).call(x, training=True)
    with pytest.raises(TypeError, match="seed must be an int"):
        layers.Dropout(0.5, seed="a")
    cfg = layers.Dropout(0.25, noise_shape=(None, 1), seed=2).get_config()
    assert (cfg["rate"], cfg["noise_shape"], cfg["seed"]) == (0.25, (None, 1), 2)


# -- initializers -----------------------------------------------------------------------------

def test_compute_fans():
    assert initializers.compute_fans((7, 12)) == (7, 12)
    assert initializers.compute_fans((3, 4 * 5)) == (3, 20)  # LSTM kernel (I, 4H)
    assert initializers.compute_fans((5,)) == (5, 5)
    assert initializers.compute_fans(()) == (1, 1)
    assert initializers.compute_fans((2, 3, 4, 5)) == (24, 30)


@pytest.mark.parametrize("name,std", [
    ("glorot_uniform", math.sqrt(2 / (200 + 300))), ("glorot_normal", math.sqrt(2 / 500)),
    ("he_uniform", math.sqrt(2 / 200)), ("he_normal", math.sqrt(2 / 200)),
    ("lecun_uniform", math.sqrt(1 / 200)), ("lecun_normal", math.sqrt(1 / 200)),
    ("random_normal", 0.05), ("random_uniform", 0.1 / math.sqrt(12)),
    ("truncated_normal", 0.05 * 0.87962566103423978),
])
def test_initializer_statistics(name, std):
    w = initializers.get(name)((200, 300), dtype="float64")
    assert w.shape == (200, 300) and w.dtype == np.float64
    assert abs(w.mean()) < 0.05 * std * 3
    assert abs(w.std() / std - 1) < 0.02


def test_initializer_bounds_and_constants():
    w = initializers.GlorotUniform(seed=1)((4, 6))
    assert w.dtype == np.float32 and np.all(np.abs(w) <= math.sqrt(6 / 10))
    t = initializers.HeNormal(seed=1)((50, 40))
    assert np.all(np.abs(t) <= 2 * math.sqrt(2 / 50) / 0.87962566103423978 + 1e-6)
    np.testing.assert_array_equal(initializers.get("zeros")((2, 2)), 0)
    np.testing.assert_array_equal(initializers.get("ones")((2,)), 1)
    np.testing.assert_array_equal(initializers.Constant(0.5)((3,)), 0.5)
    u = initializers.RandomUniform(-1, 2, seed=0)((1000,))
    assert u.min() >= -1 and u.max() < 2


def test_orthogonal():
    for shape in [(6, 4), (4, 6), (5, 5), (3, 2, 4)]:
        w = initializers.Orthogonal(gain=2.0, seed=0)(shape, dtype="float64")
        m = w.reshape(-1, shape[-1])
        gram = m.T @ m if m.shape[0] >= m.shape[1] else m @ m.T
        np.testing.assert_allclose(gram, 4 * np.eye(gram.shape[0]), atol=1e-12)
    with pytest.raises(ValueError, match="rank >= 2"):
        initializers.Orthogonal()((3,))


def test_initializer_seeding():
    a = initializers.GlorotUniform(seed=5)((3, 3))
    b = initializers.GlorotUniform(seed=5)((3, 3))
    np.testing.assert_array_equal(a, b)
    init = initializers.RandomNormal(seed=9)
    np.testing.assert_array_equal(init((4,)), init((4,)))  # seeded: same values every call
    nn.set_seed(3)
    c = initializers.get("he_uniform")((3, 3))
    nn.set_seed(3)
    d = initializers.get("he_uniform")((3, 3))
    np.testing.assert_array_equal(c, d)
    assert not np.array_equal(c, initializers.get("he_uniform")((3, 3)))


def test_initializer_registry_and_errors():
    assert type(initializers.get("GlorotNormal")) is initializers.GlorotNormal
    vs = initializers.VarianceScaling(scale=2.0, mode="fan_out", distribution="uniform", seed=1)
    again = initializers.deserialize(initializers.serialize(vs))
    np.testing.assert_array_equal(vs((3, 4)), again((3, 4)))
    with pytest.raises(ValueError, match=r"Unknown initializer 'xavier'; valid names: .*"
                                         r"'glorot_uniform'"):
        initializers.get("xavier")
    with pytest.raises(ValueError, match="mode must be one of"):
        initializers.VarianceScaling(mode="fan")
    with pytest.raises(ValueError, match="distribution must be one of"):
        initializers.VarianceScaling(distribution="cauchy")
    with pytest.raises(ValueError, match="stddev must be >= 0"):
        initializers.RandomNormal(stddev=-1)
    with pytest.raises(ValueError, match="maxval must be >= minval"):
        initializers.RandomUniform(1, 0)
    with pytest.raises(ValueError, match="dtype must be one of"):
        initializers.Zeros()((2,), dtype="int32")
    with pytest.raises(ValueError, match="shape must hold non-negative ints"):
        initializers.Zeros()((2, -1))


# -- regularizers -----------------------------------------------------------------------------

def test_regularizer_values_and_registry():
    w = np.array([[1.0, -2.0], [0.5, 0.0]])
    assert regularizers.L1()(w) == pytest.approx(0.01 * 3.5)
    assert regularizers.L2(0.5)(w) == pytest.approx(0.5 * 5.25)
    assert regularizers.L1L2()(w) == 0.0
    assert regularizers.l1_l2()(w) == pytest.approx(0.01 * 3.5 + 0.01 * 5.25)
    assert regularizers.get("l1").get_config() == {"l1": 0.01}
    assert regularizers.get("l2").get_config() == {"l2": 0.01}
    assert regularizers.get("l1_l2").get_config() == {"l1": 0.01, "l2": 0.01}
    assert regularizers.get(None) is None
    r = regularizers.L1L2(l1=0.3, l2=0.1)
    assert regularizers.deserialize(regularizers.serialize(r)).get_config() == r.get_config()
    g = np.zeros_like(w)
    r.add_gradient(g, w)
    np.testing.assert_allclose(g, 0.3 * np.sign(w) + 0.2 * w)
    with pytest.raises(ValueError, match="l2 must be a finite number >= 0; got -1"):
        regularizers.L2(-1)
    with pytest.raises(ValueError, match="Unknown regularizer 'l0'"):
        regularizers.get("l0")


def test_keras_short_initializer_aliases():
    from nanonet import initializers
    assert isinstance(initializers.get("uniform"), initializers.RandomUniform)
    assert isinstance(initializers.get("normal"), initializers.RandomNormal)
    assert isinstance(initializers.get("one"), initializers.Ones)
    assert isinstance(initializers.get("zero"), initializers.Zeros)
