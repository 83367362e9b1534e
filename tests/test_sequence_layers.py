"""Sequence layers: Embedding, LSTM and Masking against nanonet.reference and float64 finite
differences; masks, states, dropout, config; stacked LSTMs and a whole-model gradient check of the
showcase architecture (Embedding -> LSTM(return_sequences) -> LSTM -> Dense softmax)."""
import numpy as np
import pytest

import nanonet as nn
from nanonet import layers, reference
from nanonet.layers import LSTM, Dense, Embedding, Masking
from nanonet.models import Sequential
from nanonet.optimizers import SGD, Adam

from .tolerances import TOL

FD = TOL["float64"]["grad_fd"]


def _fd_check(loss, params, grads, h=1e-6):
    """Central differences of loss() for every element of every param, against grads."""
    for p, g in zip(params, grads):
        num = np.zeros_like(p)
        for idx in np.ndindex(p.shape):
            old = p[idx]
            p[idx] = old + h
            lp = loss()
            p[idx] = old - h
            lm = loss()
            p[idx] = old
            num[idx] = (lp - lm) / (2 * h)
        err = np.linalg.norm(g - num)
        assert err <= FD * max(np.linalg.norm(g), 1e-3), (p.shape, err)


def _randomize(layer, rng, scale=0.5):
    for w in layer.weights:
        w[...] = rng.standard_normal(w.shape) * scale


# ---- Embedding ------------------------------------------------------------------------------

def test_embedding_forward_backward_and_mask():
    rng = np.random.default_rng(0)
    emb = Embedding(10, 4, mask_zero=True, dtype="float64")
    ids = np.array([[0, 3, 3, 9], [2, 0, 0, 1]])
    y = emb(ids, training=True)
    assert y.shape == (2, 4, 4) and emb.embeddings.shape == (10, 4)
    np.testing.assert_array_equal(y, emb.embeddings[ids])
    np.testing.assert_array_equal(emb.compute_mask(ids), ids != 0)
    dy = rng.standard_normal(y.shape)
    assert emb.backward(dy) is None
    np.testing.assert_allclose(emb.grads[0], reference.embedding_backward(dy, ids, 10), atol=1e-15)
    assert Embedding(5, 2).compute_mask(ids) is None
    assert emb.compute_output_shape((None, 4)) == (None, 4, 4)


def test_embedding_defaults_and_config():
    nn.set_seed(1)
    emb = Embedding(100, 7)
    emb.build((None, 5))
    w = emb.embeddings
    assert w.dtype == np.float32 and np.all(np.abs(w) <= 0.05) and w.std() > 0.01  # "uniform"
    emb2 = layers.deserialize(layers.serialize(Embedding(100, 7, mask_zero=True, input_length=5,
                                                         embeddings_regularizer="l2")))
    assert (emb2.input_dim, emb2.output_dim, emb2.mask_zero) == (100, 7, True)
    assert emb2.embeddings_regularizer is not None
    with pytest.raises(ValueError, match="input_dim must be a positive int; got 0"):
        Embedding(0, 3)
    with pytest.raises(ValueError, match="mask_zero must be True or False"):
        Embedding(3, 3, mask_zero=1)
    with pytest.raises(ValueError, match=r"ids must be in \[0, V\) = \[0, 100\); got 100"):
        emb(np.array([[1, 100]]))


# ---- LSTM -----------------------------------------------------------------------------------

def test_lstm_weights_unit_forget_bias_and_shapes():
    lstm = LSTM(5, return_sequences=True)
    lstm.build((None, 7, 3))
    assert lstm.kernel.shape == (3, 20) and lstm.recurrent_kernel.shape == (5, 20)
    np.testing.assert_array_equal(lstm.bias, np.r_[np.zeros(5), np.ones(5), np.zeros(10)])
    assert lstm.weight_names == ["kernel", "recurrent_kernel", "bias"]
    rk = lstm.recurrent_kernel.astype(np.float64)  # orthogonal rows
    np.testing.assert_allclose(rk @ rk.T, np.eye(5), atol=1e-5)
    plain = LSTM(5, unit_forget_bias=False, bias_initializer="ones", use_bias=True)
    plain.build((None, 7, 3))
    np.testing.assert_array_equal(plain.bias, np.ones(20))
    nobias = LSTM(5, use_bias=False)
    nobias.build((None, 7, 3))
    assert len(nobias.weights) == 2
    assert lstm.compute_output_shape((None, 7, 3)) == (None, 7, 5)
    assert LSTM(5).compute_output_shape((None, 7, 3)) == (None, 5)
    assert LSTM(5, return_state=True).compute_output_shape((4, 7, 3)) == [(4, 5), (4, 5), (4, 5)]
    m = np.ones((2, 7), bool)
    assert lstm.compute_mask(None, m) is m and LSTM(5).compute_mask(None, m) is None


@pytest.mark.parametrize("opts", [
    {}, {"return_sequences": True}, {"go_backwards": True, "return_sequences": True},
    {"use_bias": False}, {"activation": "relu", "recurrent_activation": "tanh"},
    {"activation": None}])
@pytest.mark.parametrize("masked", [False, True])
def test_lstm_layer_matches_reference(opts, masked):
    rng = np.random.default_rng(2)
    B, T, I, H = 3, 5, 4, 6
    lstm = LSTM(H, dtype="float64", **opts)
    lstm.build((None, T, I))
    _randomize(lstm, rng)
    x = rng.standard_normal((B, T, I))
    mask = None
    if masked:
        mask = np.ones((B, T), bool)
        mask[0, :2] = False   # pre-padding
        mask[1, 3:] = False   # post-padding
        mask[2] = False       # fully padded
    y = lstm(x, training=True, mask=mask)
    want = reference.lstm_forward(x, lstm.kernel, lstm.recurrent_kernel, lstm.bias, mask=mask,
                                  go_backwards=lstm.go_backwards, activation=lstm.activation,
                                  recurrent_activation=lstm.recurrent_activation,
                                  return_sequences=lstm.return_sequences)
    np.testing.assert_allclose(y, want[0], rtol=0, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    dx = lstm.backward(dy)
    g = reference.lstm_backward(dy, want[3])
    np.testing.assert_allclose(dx, g[0], rtol=0, atol=1e-12)
    for got, w in zip(lstm.grads, [g[1], g[2]] + ([g[3]] if lstm.use_bias else [])):
        np.testing.assert_allclose(got, w, rtol=0, atol=1e-12)


def test_lstm_states_in_and_out():
    rng = np.random.default_rng(3)
    B, T, I, H = 2, 4, 3, 5
    lstm = LSTM(H, return_state=True, return_sequences=True, dtype="float64")
    lstm.build((None, T, I))
    _randomize(lstm, rng)
    x = rng.standard_normal((B, T, I))
    h0, c0 = rng.standard_normal((B, H)), rng.standard_normal((B, H))
    y, h, c = lstm(x, training=True, initial_state=[h0, c0])
    np.testing.assert_array_equal(y[:, -1], h)
    R = [rng.standard_normal(a.shape) for a in (y, h, c)]
    dx = lstm.backward(R)
    dh0, dc0 = lstm.initial_state_grads
    grads = list(lstm.grads)

    def loss():
        y, h, c = lstm(x, initial_state=[h0, c0])
        return np.sum(y * R[0]) + np.sum(h * R[1]) + np.sum(c * R[2])

    _fd_check(loss, [x, h0, c0] + lstm.trainable_weights, [dx, dh0, dc0] + grads)
    # None entries: only the sequence output has a gradient.
    lstm(x, training=True)
    lstm.backward([R[0], None, None])
    assert lstm.initial_state_grads is None
    with pytest.raises(ValueError, match=r"initial_state h0 must be \(2, 5\); got \(3, 5\)"):
        lstm(x, initial_state=[np.zeros((3, H)), c0])


def test_lstm_dropout_is_variational_seeded_and_training_only():
    rng = np.random.default_rng(4)
    B, T, I, H = 4, 6, 5, 3
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    lstm = LSTM(H, dropout=0.4, recurrent_dropout=0.3, seed=7, return_sequences=True)
    y_inf = lstm(x)
    lstm2 = LSTM(H, return_sequences=True)
    lstm2.build((None, T, I))
    lstm2.set_weights(lstm.get_weights())
    np.testing.assert_array_equal(y_inf, lstm2(x))  # no dropout at inference
    y_tr = lstm(x, training=True)
    # The same seed draws the same two per-sequence masks: the input mask first, then h's.
    g = np.random.default_rng(7)
    idm = ((g.random((B, I)) >= 0.4) / 0.6).astype(np.float32)
    rdm = ((g.random((B, H)) >= 0.3) / 0.7).astype(np.float32)
    want = nn.ops.lstm_forward(x, lstm.kernel, lstm.recurrent_kernel, lstm.bias,
                               input_dropout_mask=idm, recurrent_dropout_mask=rdm)[0]
    np.testing.assert_array_equal(y_tr, want)
    assert not np.allclose(y_tr, y_inf)
    lstm_b = LSTM(H, dropout=0.4, recurrent_dropout=0.3, seed=7, return_sequences=True)
    lstm_b.build((None, T, I))
    lstm_b.set_weights(lstm.get_weights())
    np.testing.assert_array_equal(lstm_b(x, training=True), y_tr)  # repeatable by seed
    # Gradients with the masks in place, by finite differences (float64).
    lstm64 = LSTM(H, dropout=0.4, recurrent_dropout=0.3, seed=9, return_sequences=True,
                  dtype="float64")
    lstm64.build((None, T, I))
    _randomize(lstm64, rng)
    x64 = x.astype(np.float64)
    R = rng.standard_normal((B, T, H))

    def loss():
        lstm64._generator = np.random.default_rng(9)  # the same masks every evaluation
        out = lstm64(x64, training=True)
        lstm64._cache = None
        return np.sum(out * R)

    lstm64._generator = np.random.default_rng(9)
    lstm64(x64, training=True)
    dx = lstm64.backward(R)
    grads = list(lstm64.grads)
    _fd_check(loss, [x64] + lstm64.trainable_weights, [dx] + grads)


def test_lstm_config_round_trip_and_errors():
    lstm = LSTM(4, activation="relu", recurrent_activation="tanh", dropout=0.2,
                recurrent_dropout=0.1, return_sequences=True, return_state=True,
                go_backwards=True, unit_forget_bias=False, kernel_regularizer="l2", seed=3)
    clone = layers.deserialize(layers.serialize(lstm))
    assert clone.get_config() == {**lstm.get_config(), "name": clone.name}
    with pytest.raises(ValueError, match="units must be a positive int; got 0"):
        LSTM(0)
    with pytest.raises(ValueError, match="activation must be None or one of"):
        LSTM(3, activation="softmax")
    with pytest.raises(ValueError, match="dropout must be a number in"):
        LSTM(3, dropout="a")
    with pytest.raises(ValueError, match="stateful=True is not supported"):
        LSTM(3, stateful=True)
    built = LSTM(3)
    built.build((None, 4, 2))
    with pytest.raises(ValueError, match=r"input must be \(batch, timesteps, 2\); got shape"):
        built(np.zeros((1, 4, 3), np.float32))
    with pytest.raises(ValueError, match="backward\\(\\) needs a preceding"):
        built.backward(np.zeros((1, 3)))


# ---- Masking --------------------------------------------------------------------------------

def test_masking_then_lstm_equals_explicit_mask():
    rng = np.random.default_rng(5)
    B, T, I, H = 3, 6, 4, 5
    x = rng.standard_normal((B, T, I))
    x[0, :2] = 0.0   # pre-padding
    x[1, 4:] = 0.0   # post-padding
    masking = Masking(0.0, dtype="float64")
    mask = masking.compute_mask(x)
    np.testing.assert_array_equal(mask, np.any(x != 0, axis=-1))
    out = masking(x, training=True)
    np.testing.assert_array_equal(out, x)
    lstm = LSTM(H, dtype="float64")
    lstm.build((None, T, I))
    _randomize(lstm, rng)
    y = lstm(out, training=True, mask=mask)
    want = reference.lstm_forward(x, lstm.kernel, lstm.recurrent_kernel, lstm.bias, mask=mask,
                                  return_sequences=False)[0]
    np.testing.assert_allclose(y, want, atol=1e-13)
    x2 = np.where(mask[..., None], x, 7.0)  # a non-zero mask value is zeroed in the output
    m7 = Masking(7.0, dtype="float64")
    np.testing.assert_array_equal(m7(x2, training=True), x)
    np.testing.assert_array_equal(m7.backward(np.ones_like(x2)),
                                  np.broadcast_to(mask[..., None], x.shape).astype(float))


# ---- stacks and the showcase model ----------------------------------------------------------

def test_stacked_lstms_gradients():
    rng = np.random.default_rng(6)
    B, T, I = 2, 4, 3
    l1 = LSTM(4, return_sequences=True, dtype="float64")
    l2 = LSTM(3, go_backwards=True, dtype="float64")
    l1.build((None, T, I))
    l2.build((None, T, 4))
    _randomize(l1, rng)
    _randomize(l2, rng)
    x = rng.standard_normal((B, T, I))
    mask = np.array([[True] * 4, [False, True, True, True]])
    R = rng.standard_normal((B, 3))
    y = l2(l1(x, training=True, mask=mask), training=True, mask=l1.compute_mask(x, mask))
    dx = l1.backward(l2.backward(R))
    grads = list(l1.grads) + list(l2.grads)

    def loss():
        return np.sum(l2(l1(x, mask=mask), mask=mask) * R)

    assert np.isclose(np.sum(y * R), loss())
    _fd_check(loss, [x] + l1.trainable_weights + l2.trainable_weights, [dx] + grads)


def test_showcase_model_whole_gradient_check():
    """Embedding(mask_zero) -> LSTM(return_sequences) -> LSTM -> Dense(softmax) with categorical
    cross-entropy through Sequential: one SGD step with learning rate 1 moves every weight by
    exactly minus its gradient, which must match central differences of the model's loss."""
    rng = np.random.default_rng(7)
    V, E, H1, H2, C, B, T = 7, 3, 4, 3, 3, 4, 5
    model = Sequential([Embedding(V, E, mask_zero=True, dtype="float64"),
                        LSTM(H1, return_sequences=True, dtype="float64"),
                        LSTM(H2, dtype="float64"),
                        Dense(C, activation="softmax", dtype="float64")])
    model.compile(optimizer=SGD(learning_rate=1.0), loss="categorical_crossentropy")
    x = rng.integers(1, V, size=(B, T))
    x[0, :2] = 0   # pre-padding
    x[1, 3:] = 0   # post-padding
    y = np.eye(C)[rng.integers(0, C, size=B)]
    model.build((None, T))
    for layer in model.layers:
        _randomize(layer, rng)
    before = [w.copy() for w in model.trainable_weights]

    def loss():
        return float(model.test_on_batch(x, y))

    numeric = []
    for w in model.trainable_weights:
        num = np.zeros_like(w)
        for idx in np.ndindex(w.shape):
            old = w[idx]
            w[idx] = old + 1e-6
            lp = loss()
            w[idx] = old - 1e-6
            lm = loss()
            w[idx] = old
            num[idx] = (lp - lm) / 2e-6
        numeric.append(num)
    model.train_on_batch(x, y)
    for b, w, num in zip(before, model.trainable_weights, numeric):
        g = b - w
        assert np.linalg.norm(g - num) <= FD * max(np.linalg.norm(g), 1e-3)
    # Id 0 appears only as padding, whose steps are masked: its embedding row gets no gradient.
    np.testing.assert_array_equal(model.layers[0].embeddings[0], before[0][0])


def test_showcase_model_trains_float32():
    nn.set_seed(0)
    rng = np.random.default_rng(8)
    V, T, C = 30, 8, 2
    x = rng.integers(1, V, size=(64, T))
    y_int = (x[:, -1] >= V // 2).astype(int)  # the class is decided by the last token
    model = Sequential([Embedding(V, 8), LSTM(8, return_sequences=True), LSTM(8),
                        Dense(C, activation="softmax")])
    model.compile(optimizer=Adam(learning_rate=0.01), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    hist = model.fit(x, np.eye(C)[y_int], epochs=30, batch_size=16, verbose=0)
    assert hist.history["loss"][-1] < 0.3 * hist.history["loss"][0]
    assert hist.history["accuracy"][-1] > 0.9
    assert model.predict(x, verbose=0).shape == (64, C)


@pytest.mark.parametrize("kwargs", [dict(dropout=1.5), dict(dropout=-0.1),
                                    dict(recurrent_dropout=float("nan")), dict(dropout="0.2")])
def test_lstm_rejects_bad_dropout_rates(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=f"LSTM: {name} must be a number in \\[0, 1\\]"):
        nn.layers.LSTM(4, **kwargs)
