"""Bidirectional over LSTM, GRU and SimpleRNN: outputs against the NumPy reference composed by
hand, every merge mode, masks (the backward direction over each sequence's own valid steps),
initial and final states, float64 finite differences, the GRU / SimpleRNN / Bidirectional
layers in models, torch (optional) and Keras (optional) parity, and bad input."""
import zlib

import numpy as np
import pytest

import nanonet as nn
from nanonet import layers as L
from nanonet import reference

from .tolerances import TOL

B, T, I, H = 3, 6, 4, 5


def _x(rng, dtype=np.float64):
    return rng.standard_normal((B, T, I)).astype(dtype)


def _post_mask():
    lengths = np.array([T, 3, 1])
    return np.arange(T)[None, :] < lengths[:, None]


def _randomize(layer, rng):
    layer.set_weights([0.5 * rng.standard_normal(w.shape) for w in layer.weights])


def _ref_direction(sub, x, mask, go_backwards):
    """The NumPy reference of one direction's output sequence and final states."""
    w = dict(zip([n.split("/")[-1] for n in sub.weight_names], sub.weights))
    args = dict(x=x, kernel=w["kernel"], recurrent_kernel=w["recurrent_kernel"],
                bias=w.get("bias"), mask=mask, go_backwards=go_backwards, training=False,
                return_sequences=sub.return_sequences, activation=sub.activation)
    if isinstance(sub, L.LSTM):
        y, h, c, _ = reference.lstm_forward(recurrent_activation=sub.recurrent_activation, **args)
        return y, [h, c]
    if isinstance(sub, L.GRU):
        y, h, _ = reference.gru_forward(recurrent_activation=sub.recurrent_activation,
                                        reset_after=sub.reset_after, **args)
        return y, [h]
    y, h, _ = reference.simple_rnn_forward(**args)
    return y, [h]


def _make(kind, **kw):
    cls = {"lstm": L.LSTM, "gru": L.GRU, "gru_v1": L.GRU, "simple": L.SimpleRNN}[kind]
    if kind == "gru_v1":
        kw["reset_after"] = False
    return cls(H, dtype="float64", **kw)


KINDS = ("lstm", "gru", "gru_v1", "simple")
MODES = ("concat", "sum", "mul", "ave", None)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("return_sequences", [True, False])
@pytest.mark.parametrize("masked", [False, True])
def test_matches_reference_composition(kind, mode, return_sequences, masked):
    key = repr((kind, mode, return_sequences, masked)).encode()
    rng = np.random.default_rng(zlib.crc32(key))
    layer = L.Bidirectional(_make(kind, return_sequences=return_sequences), merge_mode=mode)
    x = _x(rng)
    mask = _post_mask() if masked else None
    out = layer(x, mask=mask)
    _randomize(layer, rng)
    out = layer(x, mask=mask)
    yf, _ = _ref_direction(layer.forward_layer, x, mask, False)
    yb, _ = _ref_direction(layer.backward_layer, x, mask, True)
    if return_sequences:
        yb = yb[:, ::-1]
        if masked:  # Keras's zero_output_for_mask inside Bidirectional
            yf, yb = yf * mask[..., None], yb * mask[..., None]
    want = {"concat": lambda: np.concatenate([yf, yb], -1), "sum": lambda: yf + yb,
            "mul": lambda: yf * yb, "ave": lambda: (yf + yb) / 2,
            None: lambda: [yf, yb]}[mode]()
    got = out if mode is not None else list(out)
    for g, w in zip(got if mode is None else [got], want if mode is None else [want]):
        np.testing.assert_allclose(g, w, rtol=0, atol=TOL["float64"]["gru"] * 10)
    shape = layer.compute_output_shape((None, T, I))
    if mode is None:
        assert [tuple(s[1:]) for s in shape] == [g.shape[1:] for g in got]
    else:
        assert tuple(shape[1:]) == got.shape[1:]


@pytest.mark.parametrize("kind", KINDS)
def test_post_padding_backward_direction_starts_at_each_sequences_last_valid_step(kind):
    """With post-padding and a mask, each row's result equals the layer run on that row's
    unpadded sequence: the backward direction never sees padding first."""
    rng = np.random.default_rng(1)
    layer = L.Bidirectional(_make(kind, return_sequences=True))
    x = _x(rng)
    mask = _post_mask()
    x[~mask] = 7.0  # garbage in the padding
    layer(x, mask=mask)
    _randomize(layer, rng)
    out = layer(x, mask=mask)
    for b, n in enumerate(mask.sum(axis=1)):
        alone = layer(x[b:b + 1, :n])
        np.testing.assert_allclose(out[b, :n], alone[0], rtol=0, atol=1e-12)
        assert not out[b, n:].any()


@pytest.mark.parametrize("kind", KINDS)
def test_return_state_and_initial_state(kind):
    rng = np.random.default_rng(2)
    layer = L.Bidirectional(_make(kind, return_state=True))
    x = _x(rng)
    layer(x)
    _randomize(layer, rng)
    n = 4 if kind == "lstm" else 2
    states = [rng.standard_normal((B, H)) for _ in range(n)]
    out = layer(x, initial_state=states)
    assert len(out) == 1 + n
    f_states, b_states = states[:n // 2], states[n // 2:]
    yf, sf = _ref_direction_states(layer.forward_layer, x, f_states, False)
    yb, sb = _ref_direction_states(layer.backward_layer, x, b_states, True)
    np.testing.assert_allclose(out[0], np.concatenate([yf, yb], -1), atol=1e-12)
    for g, w in zip(out[1:], sf + sb):
        np.testing.assert_allclose(g, w, atol=1e-12)


def _ref_direction_states(sub, x, states, go_backwards):
    w = dict(zip([n.split("/")[-1] for n in sub.weight_names], sub.weights))
    args = dict(x=x, kernel=w["kernel"], recurrent_kernel=w["recurrent_kernel"],
                bias=w.get("bias"), h0=states[0], go_backwards=go_backwards, training=False,
                return_sequences=False, activation=sub.activation)
    if isinstance(sub, L.LSTM):
        y, h, c, _ = reference.lstm_forward(c0=states[1],
                                            recurrent_activation=sub.recurrent_activation, **args)
        return y, [h, c]
    if isinstance(sub, L.GRU):
        y, h, _ = reference.gru_forward(recurrent_activation=sub.recurrent_activation,
                                        reset_after=sub.reset_after, **args)
        return y, [h]
    y, h, _ = reference.simple_rnn_forward(**args)
    return y, [h]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", MODES)
def test_gradients_match_finite_differences(kind, mode):
    rng = np.random.default_rng(3)
    Bs, Ts = 2, 3
    layer = L.Bidirectional(_make(kind, return_sequences=True, return_state=True),
                            merge_mode=mode)
    x = rng.standard_normal((Bs, Ts, I))
    mask = np.array([[True, True, True], [True, True, False]])
    layer(x)
    _randomize(layer, rng)
    n = 4 if kind == "lstm" else 2
    states = [rng.standard_normal((Bs, H)) * 0.5 for _ in range(n)]
    inputs = [x] + states
    out, ctx = layer.forward(inputs, training=True, mask=mask)
    Rs = [rng.standard_normal(o.shape) for o in out]
    dinputs, grads = layer.backprop(ctx, Rs)

    def loss():
        o, _ = layer.forward(inputs, training=False, mask=mask)
        return sum(np.sum(a * r) for a, r in zip(o, Rs))

    h = 1e-6
    arrays = inputs + layer.trainable_weights
    analytic = list(dinputs) + list(grads)
    for a, g in zip(arrays, analytic):
        num = np.zeros_like(a)
        for idx in np.ndindex(a.shape):
            old = a[idx]
            a[idx] = old + h
            lp = loss()
            a[idx] = old - h
            lm = loss()
            a[idx] = old
            num[idx] = (lp - lm) / (2 * h)
        err = np.linalg.norm(g - num)
        assert err <= TOL["float64"]["grad_fd"] * max(np.linalg.norm(g), 1e-3), err


def test_weights_order_names_and_constructor_weights():
    layer = L.Bidirectional(L.GRU(4, name="g"))
    layer.build((None, T, I))
    assert layer.weight_names == ["forward_g/kernel", "forward_g/recurrent_kernel",
                                  "forward_g/bias", "backward_g/kernel",
                                  "backward_g/recurrent_kernel", "backward_g/bias"]
    assert [w.shape for w in layer.weights] == [(I, 12), (4, 12), (2, 12)] * 2
    assert layer.forward_layer.weights[0] is layer.weights[0]
    assert layer.backward_layer.go_backwards and not layer.forward_layer.go_backwards
    values = [np.full(w.shape, k, np.float32) for k, w in enumerate(layer.weights)]
    other = L.Bidirectional(L.GRU(4), weights=values)
    other.build((None, T, I))
    for v, w in zip(values, other.weights):
        np.testing.assert_array_equal(v, w)


def test_training_a_model_with_every_recurrent_layer():
    rng = np.random.default_rng(4)
    nn.set_seed(0)
    ids = rng.integers(1, 20, size=(48, 8))
    ids[::3, 5:] = 0
    y = (ids[:, 0] % 2).astype(np.int64)
    model = nn.Sequential([
        L.Embedding(20, 8, mask_zero=True),
        L.Bidirectional(L.GRU(8, return_sequences=True, dropout=0.1, recurrent_dropout=0.1)),
        L.Bidirectional(L.SimpleRNN(6, return_sequences=True)),
        L.Bidirectional(L.LSTM(6), merge_mode="ave"),
        L.Dense(2, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(ids, y, epochs=8, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert model.predict(ids, verbose=0).shape == (48, 2)


def test_functional_api_with_initial_state():
    inp = nn.Input((T, I))
    h0 = nn.Input((H,))
    out = L.GRU(H, return_state=True)(inp)
    seq = L.GRU(H, return_sequences=True)(inp, initial_state=[out[1]])
    bi = L.Bidirectional(L.GRU(3))(seq)
    model = nn.Model([inp, h0], [bi, L.Add()([out[1], h0])])
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, T, I)).astype(np.float32)
    a, b = model.predict([x, np.zeros((2, H), np.float32)], verbose=0)
    assert a.shape == (2, 6) and b.shape == (2, H)


def test_errors():
    with pytest.raises(ValueError, match="layer must be a recurrent layer instance"):
        L.Bidirectional(L.Dense(3))
    with pytest.raises(ValueError, match=r"merge_mode must be one of .*; got 'max'"):
        L.Bidirectional(L.GRU(3), merge_mode="max")
    with pytest.raises(ValueError, match="different go_backwards"):
        L.Bidirectional(L.GRU(3), backward_layer=L.GRU(3))
    with pytest.raises(ValueError, match="same return_sequences"):
        L.Bidirectional(L.GRU(3, return_sequences=True),
                        backward_layer=L.GRU(3, go_backwards=True))
    with pytest.raises(ValueError, match="GRU: units must be a positive int; got 0"):
        L.GRU(0)
    with pytest.raises(ValueError, match="SimpleRNN: dropout must be a number in"):
        L.SimpleRNN(3, dropout=1.5)
    with pytest.raises(ValueError, match="GRU: reset_after must be True or False"):
        L.GRU(3, reset_after="yes")
    layer = L.Bidirectional(L.GRU(3))
    layer(np.zeros((2, 4, 5), np.float32))
    with pytest.raises(ValueError, match=r"initial_state must be a list of 2 states"):
        layer(np.zeros((2, 4, 5), np.float32), initial_state=[np.zeros((2, 3))])
    with pytest.raises(ValueError, match=r"input must be \(batch, timesteps, 5\)"):
        layer(np.zeros((2, 4, 6), np.float32))


def test_matches_torch_bidirectional():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    for kind in ("lstm", "gru"):
        layer = L.Bidirectional(_make(kind, return_sequences=True))
        x = _x(rng)
        layer(x)
        _randomize(layer, rng)
        net = (torch.nn.LSTM if kind == "lstm" else torch.nn.GRU)(
            I, H, batch_first=True, bidirectional=True).double()
        fw, bw = layer.forward_layer, layer.backward_layer

        def conv(w):  # Keras columns -> torch rows (GRU: z, r, h -> r, z, n)
            if kind == "gru":
                z, r, h = np.split(w, 3, axis=-1)
                w = np.concatenate([r, z, h], axis=-1)
            return torch.from_numpy(np.ascontiguousarray(w.T))

        with torch.no_grad():
            for sub, sfx in ((fw, ""), (bw, "_reverse")):
                k, rk, b = sub.weights
                getattr(net, "weight_ih_l0" + sfx).copy_(conv(k))
                getattr(net, "weight_hh_l0" + sfx).copy_(conv(rk))
                if kind == "gru":
                    getattr(net, "bias_ih_l0" + sfx).copy_(conv(b[0]))
                    getattr(net, "bias_hh_l0" + sfx).copy_(conv(b[1]))
                else:
                    getattr(net, "bias_ih_l0" + sfx).copy_(conv(b))
                    getattr(net, "bias_hh_l0" + sfx).zero_()
        xt = torch.from_numpy(x).requires_grad_(True)
        out, _ = net(xt)
        R = rng.standard_normal(out.shape)
        (out * torch.from_numpy(R)).sum().backward()
        y, ctx = layer.forward(x, training=True)
        np.testing.assert_allclose(y, out.detach().numpy(), atol=1e-12)
        dx, grads = layer.backprop(ctx, R)
        np.testing.assert_allclose(dx, xt.grad.numpy(), atol=1e-12)
        for sub, sfx, g in ((fw, "", grads[:3]), (bw, "_reverse", grads[3:])):
            np.testing.assert_allclose(conv(g[0]).numpy(),
                                       getattr(net, "weight_ih_l0" + sfx).grad.numpy(),
                                       atol=1e-12)
            np.testing.assert_allclose(conv(g[1]).numpy(),
                                       getattr(net, "weight_hh_l0" + sfx).grad.numpy(),
                                       atol=1e-12)


def test_matches_keras_bidirectional_gru():
    from .peers import keras_or_skip
    keras = keras_or_skip()
    rng = np.random.default_rng(7)
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    mask = _post_mask()
    ours = L.Bidirectional(L.GRU(H, return_sequences=True))
    ours(x)
    _randomize(ours, rng)
    theirs = keras.layers.Bidirectional(keras.layers.GRU(H, return_sequences=True))
    theirs(x)
    theirs.set_weights(ours.get_weights())
    got = theirs(x, mask=keras.ops.convert_to_tensor(mask))
    np.testing.assert_allclose(ours(x, mask=mask), keras.ops.convert_to_numpy(got),
                               atol=TOL["float32"]["gru"] * 10)
    simple = keras.layers.SimpleRNN(H, return_sequences=True)
    mine = L.SimpleRNN(H, return_sequences=True)
    mine(x)
    simple(x)
    _randomize(mine, rng)
    simple.set_weights(mine.get_weights())
    np.testing.assert_allclose(mine(x), keras.ops.convert_to_numpy(simple(x)),
                               atol=TOL["float32"]["gru"] * 10)


def test_demo_bigru_builder_trains():
    from nanonet.demo import MODELS
    nn.set_seed(1)
    model = MODELS["bigru"](30, 3, 8)
    rng = np.random.default_rng(8)
    ids = rng.integers(1, 30, size=(40, 6))
    ids[:10, :3] = 0  # pre-padding, as pad_sequences makes it
    y = np.eye(3, dtype=np.float32)[ids[:, -1] % 3]
    history = model.fit(ids, y, epochs=6, batch_size=8, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert [type(layer).__name__ for layer in model.layers] == [
        "Embedding", "Bidirectional", "Bidirectional", "Dense"]


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("mode", ["concat", None])
def test_two_threads_run_the_directions_concurrently_with_one_thread_results(kind, mode,
                                                                            monkeypatch):
    """At 2 threads the directions run as an ops.run_pair (one thread each): the training
    step's outputs and every gradient equal the 1-thread run bit for bit. Shapes above the
    kernels' parallel threshold (2 B T (I + H) G >= 1.2e8), so a sequential 2-thread run would
    differ in rounding."""
    from nanonet import ops
    calls = []
    real = ops.run_pair
    monkeypatch.setattr(ops, "run_pair", lambda f, b: calls.append(1) or real(f, b))
    rng = np.random.default_rng(9)
    Bq, Tq, Iq, Hq = 32, 50, 64, 96
    cls = {"lstm": L.LSTM, "gru": L.GRU}[kind]
    layer = L.Bidirectional(cls(Hq, return_sequences=True, return_state=True),
                            merge_mode=mode)
    layer.build((None, Tq, Iq))
    _randomize(layer, rng)
    x = rng.standard_normal((Bq, Tq, Iq)).astype(np.float32)
    mask = rng.random((Bq, Tq)) < 0.8

    def step():
        out, ctx = layer.forward(x, training=True, mask=mask)
        douts = [np.ones_like(o) * 0.1 + o for o in out]
        dx, grads = layer.backprop(ctx, douts)
        return list(out) + [dx] + list(grads)
    before = nn.get_num_threads()
    try:
        nn.set_num_threads(1)
        one = step()
        nn.set_num_threads(2)
        two = step()
    finally:
        nn.set_num_threads(before)
    assert len(calls) == 4  # forward and backprop, at each thread count
    assert len(one) == len(two)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


def test_dropout_from_the_shared_generator_stays_sequential_and_repeatable():
    """Sub-layers without their own seed draw dropout masks from nanonet's generator: the two
    directions then run in order (the draw order fixes which mask each gets)."""
    rng = np.random.default_rng(2)
    layer = L.Bidirectional(L.GRU(H, dropout=0.3, recurrent_dropout=0.2, dtype="float64"))
    layer.build((None, T, I))
    _randomize(layer, rng)
    x = _x(rng)
    before = nn.get_num_threads()
    try:
        nn.set_num_threads(2)
        nn.set_seed(4)
        a, _ = layer.forward(x, training=True)
        nn.set_seed(4)
        b, _ = layer.forward(x, training=True)
        nn.set_num_threads(1)
        nn.set_seed(4)
        c, _ = layer.forward(x, training=True)
    finally:
        nn.set_num_threads(before)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, c, rtol=1e-12, atol=1e-12)


def test_small_calls_run_the_directions_in_order(monkeypatch):
    """run_pair only above the kernels' parallel threshold (one direction's forward flops
    >= kLstmParallelFlops): a batch-1 call stays on the calling thread."""
    from nanonet import ops
    calls = []
    real = ops.run_pair
    monkeypatch.setattr(ops, "run_pair", lambda f, b: calls.append(1) or real(f, b))
    before = nn.get_num_threads()
    try:
        nn.set_num_threads(2)
        small = L.Bidirectional(L.LSTM(H, dtype="float64"))
        small(np.zeros((1, T, I)))
        assert calls == []
        big = L.Bidirectional(L.GRU(96, return_sequences=True))  # 2 B T (I + H) G = 1.8e8
        big.build((None, 50, 96))
        out, ctx = big.forward(np.zeros((32, 50, 96), np.float32), training=True)
        big.backprop(ctx, np.ones_like(out))
        assert calls == [1, 1]
    finally:
        nn.set_num_threads(before)
