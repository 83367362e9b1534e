"""ONNX export (nanonet.interchange.onnx): every exported model passes onnx.checker, and
onnxruntime's outputs match model.predict to 1e-5 (max abs, float32), per layer, for masked and
padded batches, graph models, nested models, batch sizes 1 and 7 through one file; the errors;
the command line. Skipped without onnx / onnxruntime (nanonet[onnx])."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import nanonet as nn
from nanonet import layers as L
from nanonet.layers.core import ACTIVATIONS

from .tolerances import TOL

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

ATOL = TOL["float32"]["onnx"]
V, T = 30, 9


def _randomize(model, rng, scale=0.5):
    """Random weights everywhere (biases included); variances positive."""
    ws = []
    for layer, w, name in model.named_weights():
        v = rng.standard_normal(w.shape) * scale
        if "variance" in name:
            v = np.abs(v) + 0.5
        ws.append(v.astype(w.dtype))
    model.set_weights(ws)


def _session(path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _export(model, tmp_path, name="model.onnx"):
    path = tmp_path / name
    model.export(str(path), format="onnx")
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    return path


def _compare(model, xs, tmp_path, sess=None):
    """Export (unless a session is given), run onnxruntime and predict; assert every output."""
    sess = sess or _session(_export(model, tmp_path))
    xs = xs if isinstance(xs, list) else [xs]
    feed = {i.name: x for i, x in zip(sess.get_inputs(), xs)}
    got = sess.run(None, feed)
    want = model.predict(xs if len(xs) > 1 else xs[0], verbose=0)
    want = want if isinstance(want, list) else [want]
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        assert np.all(np.isfinite(g))
        err = float(np.max(np.abs(g - w))) if g.size else 0.0
        assert err <= ATOL, f"max abs difference {err}"
    return got


def _ids(rng, B=7, padding="post"):
    """Token ids (B, T) int32 with 0 as padding: post-, pre-padded, holes and an all-padding
    row."""
    x = rng.integers(1, V, (B, T)).astype(np.int32)
    if padding is None:
        return x
    for b in range(B):
        n = int(rng.integers(1, T))
        if padding == "post":
            x[b, n:] = 0
        elif padding == "pre":
            x[b, :T - n] = 0
        else:
            x[b, rng.random(T) < 0.4] = 0
    if B > 2:
        x[B - 1] = 0
    return x


# -- core layers ---------------------------------------------------------------------------------

@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_dense_and_activation_every_activation(activation, tmp_path):
    rng = np.random.default_rng(1)
    nn.set_seed(1)
    inp = nn.Input((5,))
    h = L.Dense(6, activation=activation)(inp)
    out = L.Activation(activation)(L.Dense(4)(h))
    model = nn.Model(inp, out)
    small = activation == "exponential"  # exp(exp(.)) of large values leaves float32
    _randomize(model, rng, scale=0.2 if small else 0.5)
    _compare(model, (rng.standard_normal((7, 5)) * (1 if small else 2)).astype(np.float32),
             tmp_path)


def test_dense_on_sequences_dropout_flatten_reshape(tmp_path):
    rng = np.random.default_rng(2)
    model = nn.Sequential([nn.Input((4, 6)), L.Dense(3, activation="relu"), L.Dropout(0.5),
                           L.Flatten(), L.Dense(6, use_bias=False), L.Reshape((3, -1)),
                           L.Reshape((6,))])
    _randomize(model, rng)
    _compare(model, rng.standard_normal((7, 4, 6)).astype(np.float32), tmp_path)


@pytest.mark.parametrize("mask_zero", [False, True])
def test_embedding(mask_zero, tmp_path):
    rng = np.random.default_rng(3)
    model = nn.Sequential([L.Embedding(V, 5, mask_zero=mask_zero), L.Dense(2)])
    model.build((None, T))
    _randomize(model, rng)
    _compare(model, _ids(rng), tmp_path)


def test_masking_feeds_lstm(tmp_path):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((7, T, 3)).astype(np.float32)
    x[0, 5:] = 0.5
    x[1, :3] = 0.5
    x[2, 4] = 0.5
    model = nn.Sequential([nn.Input((T, 3)), L.Masking(0.5), L.LSTM(4, return_sequences=True),
                           L.Dense(2)])
    _randomize(model, rng)
    _compare(model, x, tmp_path)


# -- LSTM ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("padding", [None, "post", "pre", "holes"])
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_lstm_masks_and_directions(padding, return_sequences, go_backwards, tmp_path):
    rng = np.random.default_rng(5)
    model = nn.Sequential([L.Embedding(V, 4, mask_zero=padding is not None),
                           L.LSTM(5, return_sequences=return_sequences,
                                  go_backwards=go_backwards)])
    model.build((None, T))
    _randomize(model, rng)
    _compare(model, _ids(rng, padding=padding), tmp_path)


@pytest.mark.parametrize("activation,recurrent_activation,use_bias",
                         [("relu", "sigmoid", True), ("tanh", "tanh", False),
                          ("linear", "sigmoid", True), ("tanh", "linear", True)])
def test_lstm_activations(activation, recurrent_activation, use_bias, tmp_path):
    rng = np.random.default_rng(6)
    model = nn.Sequential([nn.Input((T, 3)),
                           L.LSTM(4, activation=activation,
                                  recurrent_activation=recurrent_activation, use_bias=use_bias,
                                  return_sequences=True)])
    _randomize(model, rng, scale=0.3)
    _compare(model, rng.standard_normal((7, T, 3)).astype(np.float32), tmp_path)


@pytest.mark.parametrize("padding", [None, "pre"])
def test_lstm_initial_state_and_return_state(padding, tmp_path):
    rng = np.random.default_rng(7)
    ids = nn.Input((T,), dtype="int32", name="ids")
    h0, c0 = nn.Input((4,), name="h0"), nn.Input((4,), name="c0")
    e = L.Embedding(V, 3, mask_zero=padding is not None)(ids)
    y, h, c = L.LSTM(4, return_sequences=True, return_state=True)(e, initial_state=[h0, c0])
    y2 = L.LSTM(4, go_backwards=True)(y, initial_state=[h, c])
    model = nn.Model([ids, h0, c0], [y, h, c, y2])
    _randomize(model, rng)
    xs = [_ids(rng, padding=padding), rng.standard_normal((7, 4)).astype(np.float32),
          rng.standard_normal((7, 4)).astype(np.float32)]
    _compare(model, xs, tmp_path)


def _showcase(mask_zero, vocab=V, units=8, classes=5):
    model = nn.Sequential([L.Embedding(vocab, 6, mask_zero=mask_zero),
                           L.LSTM(units, return_sequences=True), L.LSTM(units),
                           L.Dense(classes, activation="softmax")])
    model.build((None, T))
    return model


@pytest.mark.parametrize("mask_zero", [False, True])
def test_showcase_padded_batches_sizes_1_and_7_one_file(mask_zero, tmp_path):
    rng = np.random.default_rng(8)
    model = _showcase(mask_zero)
    _randomize(model, rng)
    sess = _session(_export(model, tmp_path))
    for padding in ("post", "pre"):
        x = _ids(rng, padding=padding)
        _compare(model, x, tmp_path, sess)
        _compare(model, x[:1], tmp_path, sess)


def test_dynamic_sequence_length(tmp_path):
    rng = np.random.default_rng(9)
    ids = nn.Input((None,), dtype="int32")
    h = L.LSTM(4, return_sequences=True)(L.Embedding(V, 3, mask_zero=True)(ids))
    model = nn.Model(ids, L.GlobalAveragePooling1D()(h))
    _randomize(model, rng)
    sess = _session(_export(model, tmp_path))
    dims = sess.get_inputs()[0].shape
    assert isinstance(dims[0], str) and isinstance(dims[1], str)
    for steps in (3, 11):
        x = rng.integers(0, V, (7, steps)).astype(np.int32)
        _compare(model, x, tmp_path, sess)


# -- normalization, pooling, TimeDistributed -------------------------------------------------------

@pytest.mark.parametrize("center,scale", [(True, True), (False, True), (True, False)])
def test_normalization(center, scale, tmp_path):
    rng = np.random.default_rng(10)
    model = nn.Sequential([nn.Input((4, 6)), L.BatchNormalization(center=center, scale=scale),
                           L.LayerNormalization(center=center, scale=scale, epsilon=1e-3)])
    _randomize(model, rng)
    _compare(model, (rng.standard_normal((7, 4, 6)) * 3 + 1).astype(np.float32), tmp_path)


@pytest.mark.parametrize("cls", [L.GlobalAveragePooling1D, L.GlobalMaxPooling1D])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pooling(cls, masked, keepdims, tmp_path):
    rng = np.random.default_rng(11)
    model = nn.Sequential([L.Embedding(V, 4, mask_zero=masked), cls(keepdims=keepdims)])
    model.build((None, T))
    _randomize(model, rng)
    _compare(model, _ids(rng, padding="holes"), tmp_path)


@pytest.mark.parametrize("cls", [L.GlobalAveragePooling1D, L.GlobalMaxPooling1D])
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pooling_channels_first(cls, keepdims, tmp_path):
    rng = np.random.default_rng(11)
    model = nn.Sequential([nn.Input((5, T)), cls(data_format="channels_first",
                                                 keepdims=keepdims)])
    _compare(model, rng.standard_normal((7, 5, T)).astype(np.float32), tmp_path)


def test_time_distributed_keeps_the_mask(tmp_path):
    rng = np.random.default_rng(12)
    model = nn.Sequential([L.Embedding(V, 4, mask_zero=True),
                           L.TimeDistributed(L.Dense(3, activation="tanh")),
                           L.GlobalAveragePooling1D()])
    model.build((None, T))
    _randomize(model, rng)
    _compare(model, _ids(rng, padding="post"), tmp_path)


# -- graph models: merges, attention, nesting ------------------------------------------------------

def test_graph_with_merges(tmp_path):
    rng = np.random.default_rng(13)
    a, b = nn.Input((6,), name="a"), nn.Input((6,), name="b")
    da, db = L.Dense(6, activation="tanh")(a), L.Dense(6)(b)
    merged = [L.Add()([da, db, a]), L.Subtract()([da, db]), L.Multiply()([da, db]),
              L.Average()([da, db]), L.Maximum()([da, db, b]), L.Minimum()([da, db])]
    cat = L.Concatenate()(merged)
    dots = L.Concatenate()([L.Dot(axes=1)([da, db]), L.Dot(axes=-1, normalize=True)([da, b])])
    out = L.Dense(3, activation="softmax")(L.Concatenate(axis=1)([cat, dots]))
    model = nn.Model([a, b], [out, dots])
    _randomize(model, rng)
    _compare(model, [rng.standard_normal((7, 6)).astype(np.float32) for _ in range(2)],
             tmp_path)


def test_merges_of_masked_sequences_and_3d_dot(tmp_path):
    rng = np.random.default_rng(14)
    i1, i2 = nn.Input((T,), dtype="int32", name="i1"), nn.Input((T,), dtype="int32", name="i2")
    e1, e2 = L.Embedding(V, 4, mask_zero=True)(i1), L.Embedding(V, 4, mask_zero=True)(i2)
    e3 = L.Embedding(V, 4)(i2)
    s = L.LSTM(3)(L.Add()([e1, e2]))
    c = L.LSTM(3)(L.Concatenate()([e1, e3]))
    c2 = L.LSTM(3)(L.Concatenate(axis=1)([e1, e2]))
    d = L.Flatten()(L.Dot(axes=2)([e1, e3]))
    d2 = L.Flatten()(L.Dot(axes=(1, 1), normalize=True)([e1, e3]))
    model = nn.Model([i1, i2], [s, c, c2, d, d2])
    _randomize(model, rng)
    _compare(model, [_ids(rng, padding="post"), _ids(rng, padding="pre")], tmp_path)


@pytest.mark.parametrize("variant", ["self", "causal", "key", "scores", "attention_mask",
                                     "no_bias"])
def test_multi_head_attention(variant, tmp_path):
    rng = np.random.default_rng(15)
    ids = nn.Input((T,), dtype="int32", name="ids")
    x = L.Embedding(V, 8, mask_zero=True)(ids)
    inputs = [ids]
    mha = L.MultiHeadAttention(2, 3, value_dim=4, use_bias=variant != "no_bias",
                               output_shape=5 if variant == "key" else None)
    if variant == "causal":
        y = mha(x, x, use_causal_mask=True)
    elif variant == "key":
        k = nn.Input((T, 6), name="k")
        inputs.append(k)
        y = mha(x, x, key=k)
    elif variant == "scores":
        y, scores = mha(x, x, return_attention_scores=True)
    elif variant == "attention_mask":
        am = nn.Input((T, T), name="am")
        inputs.append(am)
        y = mha(x, x, attention_mask=am)
    else:
        y = mha(x, x)
    outputs = [L.GlobalAveragePooling1D()(y), y]
    if variant == "scores":
        outputs.append(scores)
    model = nn.Model(inputs, outputs)
    _randomize(model, rng)
    xs = [_ids(rng, padding="post")]
    if variant == "key":
        xs.append(rng.standard_normal((7, T, 6)).astype(np.float32))
    if variant == "attention_mask":
        xs.append((rng.random((7, T, T)) < 0.7).astype(np.float32))
    _compare(model, xs, tmp_path)


def test_shared_layer_weights_stored_once(tmp_path):
    rng = np.random.default_rng(20)
    a, b = nn.Input((6,), name="a"), nn.Input((6,), name="b")
    shared = L.Dense(40)
    model = nn.Model([a, b], L.Add()([shared(a), shared(b)]))
    _randomize(model, rng)
    path = _export(model, tmp_path)
    kernels = [w for w in onnx.load(str(path)).graph.initializer if tuple(w.dims) == (6, 40)]
    assert len(kernels) == 1
    _compare(model, [rng.standard_normal((7, 6)).astype(np.float32) for _ in range(2)],
             tmp_path, _session(path))


def test_nested_models_receive_masks(tmp_path):
    rng = np.random.default_rng(16)
    inner = nn.Sequential([nn.Input((T, 4)), L.LSTM(5, return_sequences=True), L.LSTM(3)])
    seq_in = nn.Input((T, 4))
    branch = nn.Model(seq_in, L.Dense(2)(seq_in), name="branch")
    ids = nn.Input((T,), dtype="int32")
    e = L.Embedding(V, 4, mask_zero=True)(ids)
    out = L.Concatenate()([inner(e), L.Flatten()(branch(e))])
    model = nn.Model(ids, out)
    _randomize(model, rng)
    _compare(model, _ids(rng, padding="pre"), tmp_path)


# -- errors and the command line ----------------------------------------------------------------

class Doubler(L.Layer):
    def forward(self, x, training=False, mask=None):
        return x * 2, None


def test_unsupported_layer_names_layer_and_class(tmp_path):
    model = nn.Sequential([nn.Input((3,)), L.Dense(2), Doubler(name="twice")])
    with pytest.raises(ValueError, match=r"'twice'.*Doubler.*register_converter"):
        model.export(str(tmp_path / "m.onnx"))
    assert not (tmp_path / "m.onnx").exists()
    (tmp_path / "old.onnx").write_bytes(b"previous")  # a failed export leaves a file as it was
    with pytest.raises(ValueError, match="Doubler"):
        model.export(tmp_path / "old.onnx")
    assert (tmp_path / "old.onnx").read_bytes() == b"previous"


def test_bad_format_opset_and_unbuilt_model(tmp_path):
    model = nn.Sequential([L.Dense(2)])
    with pytest.raises(ValueError, match="not built"):
        model.export(str(tmp_path / "m.onnx"))
    model.build((None, 3))
    with pytest.raises(ValueError, match=r"format must be 'onnx'.*'tf_saved_model'"):
        model.export(str(tmp_path / "m.onnx"), format="tf_saved_model")
    with pytest.raises(ValueError, match="opset_version"):
        model.export(str(tmp_path / "m.onnx"), opset_version=11)
    with pytest.raises(TypeError, match="filepath"):
        model.export(None)


def test_register_converter_extends_the_table(tmp_path):
    from nanonet.interchange import onnx as export_onnx
    assert export_onnx.get_converter(Doubler) is None

    @export_onnx.register_converter(Doubler)
    def doubler(g, layer, x, mask):
        return g.op("Mul", [x, g.scalar(2.0)], layer.name), None
    try:
        rng = np.random.default_rng(17)
        model = nn.Sequential([nn.Input((3,)), L.Dense(2), Doubler()])
        _compare(model, rng.standard_normal((7, 3)).astype(np.float32), tmp_path)
    finally:
        export_onnx._CONVERTERS.pop(Doubler)


def test_cli_export(tmp_path):
    rng = np.random.default_rng(18)
    model = _showcase(True)
    _randomize(model, rng)
    model.save(str(tmp_path / "model.nnet"))
    out = subprocess.run([sys.executable, "-m", "nanonet", "export", str(tmp_path / "model.nnet"),
                          str(tmp_path / "model.onnx")], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert "model.onnx" in out.stdout
    _compare(model, _ids(rng, padding="post"), tmp_path, _session(tmp_path / "model.onnx"))
    bad = subprocess.run([sys.executable, "-m", "nanonet", "export", str(tmp_path / "none.nnet"),
                          str(tmp_path / "x.onnx")], capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "none.nnet" in bad.stderr


def test_missing_onnx_names_the_extra(monkeypatch, tmp_path):
    model = nn.Sequential([nn.Input((3,)), L.Dense(2)])
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    with pytest.raises(ImportError, match=r'pip install "nanonet\[onnx\]"'):
        model.export(str(tmp_path / "m.onnx"))


@pytest.mark.parametrize("opset", [17, 18, 20])
def test_newer_opsets(opset, tmp_path):
    rng = np.random.default_rng(19)
    x = rng.standard_normal((7, T, 3)).astype(np.float32)
    x[0, 4:] = 0.0
    model = nn.Sequential([nn.Input((T, 3)), L.Masking(), L.LSTM(4, return_sequences=True),
                           L.GlobalMaxPooling1D(), L.Dense(2, activation="gelu")])
    _randomize(model, rng)
    path = tmp_path / "m.onnx"
    model.export(str(path), opset_version=opset)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version == opset
    _compare(model, x, tmp_path, _session(path))


# -- GRU, SimpleRNN, Bidirectional -------------------------------------------------------------

def _rnn(kind, **kw):
    if kind == "gru":
        return L.GRU(5, **kw)
    if kind == "gru_reset_before":
        return L.GRU(5, reset_after=False, **kw)
    if kind == "simple_rnn":
        return L.SimpleRNN(5, **kw)
    return L.LSTM(5, **kw)


@pytest.mark.parametrize("kind", ["gru", "gru_reset_before", "simple_rnn"])
@pytest.mark.parametrize("padding", [None, "post", "holes"])
@pytest.mark.parametrize("return_sequences,go_backwards", [(False, False), (True, True)])
def test_gru_and_simple_rnn_masks_and_directions(kind, padding, return_sequences,
                                                  go_backwards, tmp_path):
    rng = np.random.default_rng(21)
    model = nn.Sequential([L.Embedding(V, 4, mask_zero=padding is not None),
                           _rnn(kind, return_sequences=return_sequences,
                                go_backwards=go_backwards)])
    model.build((None, T))
    _randomize(model, rng)
    sess = _session(_export(model, tmp_path))
    x = _ids(rng, padding=padding)
    _compare(model, x, tmp_path, sess)
    _compare(model, x[:1], tmp_path, sess)


@pytest.mark.parametrize("kind,activation,use_bias", [("gru", "relu", False),
                                                      ("simple_rnn", "relu", True),
                                                      ("simple_rnn", "linear", False),
                                                      ("gru_reset_before", "tanh", False)])
def test_gru_and_simple_rnn_activations(kind, activation, use_bias, tmp_path):
    rng = np.random.default_rng(22)
    model = nn.Sequential([nn.Input((T, 3)), _rnn(kind, activation=activation,
                                                  use_bias=use_bias, return_sequences=True)])
    _randomize(model, rng, scale=0.3)
    _compare(model, rng.standard_normal((7, T, 3)).astype(np.float32), tmp_path)


def test_gru_initial_and_returned_state(tmp_path):
    rng = np.random.default_rng(23)
    ids = nn.Input((T,), dtype="int32", name="ids")
    h0 = nn.Input((5,), name="h0")
    e = L.Embedding(V, 3, mask_zero=True)(ids)
    y, h = L.GRU(5, return_sequences=True, return_state=True)(e, initial_state=[h0])
    y2 = L.SimpleRNN(5)(y, initial_state=[h])
    model = nn.Model([ids, h0], [y, h, y2])
    _randomize(model, rng)
    _compare(model, [_ids(rng, padding="pre"), rng.standard_normal((7, 5)).astype(np.float32)],
             tmp_path)


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "ave", "mul", None])
@pytest.mark.parametrize("kind", ["lstm", "gru", "simple_rnn"])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_bidirectional(merge_mode, kind, return_sequences, tmp_path):
    rng = np.random.default_rng(24)
    ids = nn.Input((T,), dtype="int32")
    e = L.Embedding(V, 4, mask_zero=True)(ids)
    y = L.Bidirectional(_rnn(kind, return_sequences=return_sequences),
                        merge_mode=merge_mode)(e)
    model = nn.Model(ids, y)
    _randomize(model, rng)
    sess = _session(_export(model, tmp_path))
    for padding in ("post", "holes"):
        x = _ids(rng, padding=padding)
        _compare(model, x, tmp_path, sess)
        _compare(model, x[:1], tmp_path, sess)


def test_bidirectional_initial_state(tmp_path):
    rng = np.random.default_rng(26)
    ids, hf, hb = nn.Input((T,), dtype="int32"), nn.Input((4,)), nn.Input((4,))
    e = L.Embedding(V, 3, mask_zero=True)(ids)
    y = L.Bidirectional(L.GRU(4, return_sequences=True))(e, initial_state=[hf, hb])
    model = nn.Model([ids, hf, hb], y)
    _randomize(model, rng)
    _compare(model, [_ids(rng, padding="post")] +
             [rng.standard_normal((7, 4)).astype(np.float32) for _ in range(2)], tmp_path)


def test_time_distributed_conv_and_dynamic_image_size(tmp_path):
    rng = np.random.default_rng(27)
    td = nn.Sequential([nn.Input((5, 8, 8, 2)),
                        L.TimeDistributed(L.Conv2D(3, 3, padding="same", activation="relu")),
                        L.TimeDistributed(L.MaxPooling2D())])
    _randomize(td, rng)
    _compare(td, rng.standard_normal((7, 5, 8, 8, 2)).astype(np.float32), tmp_path)
    model = nn.Sequential([nn.Input((None, None, 3)), L.Conv2D(4, 3, padding="same"),
                           L.MaxPooling2D(), L.GlobalMaxPooling2D()])
    _randomize(model, rng)
    sess = _session(_export(model, tmp_path, "dynamic.onnx"))
    for size in ((11, 6), (8, 9)):
        _compare(model, rng.standard_normal((7,) + size + (3,)).astype(np.float32), tmp_path,
                 sess)


def test_bidirectional_return_state_then_pooling(tmp_path):
    rng = np.random.default_rng(25)
    ids = nn.Input((T,), dtype="int32")
    e = L.Embedding(V, 4, mask_zero=True)(ids)
    y, hf, cf, hb, cb = L.Bidirectional(L.LSTM(3, return_sequences=True, return_state=True))(e)
    model = nn.Model(ids, [L.GlobalAveragePooling1D()(y), hf, cf, hb, cb])
    _randomize(model, rng)
    _compare(model, _ids(rng, padding="pre"), tmp_path)


# -- convolution, pooling, image layers --------------------------------------------------------

def _images(rng, B=7, H=9, W=8, C=3):
    return rng.standard_normal((B, H, W, C)).astype(np.float32)


def _compare_batches(model, x, tmp_path):
    sess = _session(_export(model, tmp_path))
    _compare(model, x, tmp_path, sess)
    _compare(model, x[:1], tmp_path, sess)


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("strides,dilation", [(1, 1), (2, 1), (1, 2)])
def test_conv2d(padding, strides, dilation, tmp_path):
    rng = np.random.default_rng(30)
    model = nn.Sequential([nn.Input((9, 8, 4)),
                           L.Conv2D(6, (3, 2), strides=strides, padding=padding,
                                    dilation_rate=dilation, activation="relu"),
                           L.Conv2D(4, 1, groups=2, use_bias=False)])
    _randomize(model, rng)
    _compare_batches(model, _images(rng, C=4), tmp_path)


@pytest.mark.parametrize("padding,strides,dilation", [
    ("valid", 1, 1), ("valid", 2, 1), ("valid", 1, 2), ("same", 1, 1), ("same", 2, 1),
    ("same", 1, 2), ("causal", 1, 1), ("causal", 1, 2)])
def test_conv1d(padding, strides, dilation, tmp_path):
    rng = np.random.default_rng(31)
    model = nn.Sequential([nn.Input((T, 4)),
                           L.Conv1D(5, 3, strides=strides, padding=padding,
                                    dilation_rate=dilation, activation="tanh"),
                           L.MaxPooling1D(2, padding="same"), L.AveragePooling1D(2),
                           L.Flatten()])
    _randomize(model, rng)
    _compare_batches(model, rng.standard_normal((7, T, 4)).astype(np.float32), tmp_path)


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("strides", [1, 2])
@pytest.mark.parametrize("depth_multiplier", [1, 2])
def test_depthwise_and_separable_conv2d(padding, strides, depth_multiplier, tmp_path):
    rng = np.random.default_rng(32)
    model = nn.Sequential([nn.Input((9, 8, 3)),
                           L.DepthwiseConv2D(3, strides=strides, padding=padding,
                                             depth_multiplier=depth_multiplier,
                                             activation="relu"),
                           L.SeparableConv2D(4, 3, padding=padding,
                                             depth_multiplier=depth_multiplier,
                                             activation="sigmoid")])
    _randomize(model, rng)
    _compare_batches(model, _images(rng), tmp_path)


@pytest.mark.parametrize("cls", [L.MaxPooling2D, L.AveragePooling2D])
@pytest.mark.parametrize("pool_size,strides,padding", [(2, None, "valid"), (3, 2, "same"),
                                                        ((2, 3), 1, "same"), (3, 2, "valid")])
def test_pooling2d(cls, pool_size, strides, padding, tmp_path):
    rng = np.random.default_rng(33)
    model = nn.Sequential([nn.Input((9, 8, 3)), cls(pool_size, strides=strides,
                                                    padding=padding)])
    _compare_batches(model, _images(rng), tmp_path)


@pytest.mark.parametrize("cls", [L.GlobalAveragePooling2D, L.GlobalMaxPooling2D])
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pooling2d(cls, keepdims, tmp_path):
    rng = np.random.default_rng(34)
    model = nn.Sequential([nn.Input((9, 8, 3)), cls(keepdims=keepdims)])
    _compare_batches(model, _images(rng), tmp_path)


def test_padding_cropping_upsampling_rescaling(tmp_path):
    rng = np.random.default_rng(35)
    model = nn.Sequential([nn.Input((9, 8, 3)), L.Rescaling(1 / 4, offset=-0.5),
                           L.ZeroPadding2D(((1, 2), (0, 3))), L.Cropping2D(((2, 0), (1, 2))),
                           L.UpSampling2D((2, 3)), L.Cropping2D(((0, 3), (4, 0))),
                           L.ZeroPadding2D(1)])
    _compare_batches(model, _images(rng), tmp_path)


@pytest.mark.parametrize("height,width,interpolation,crop", [
    (5, 12, "bilinear", False), (13, 4, "nearest", False), (6, 6, "bilinear", True),
    (4, 9, "nearest", True)])
def test_resizing(height, width, interpolation, crop, tmp_path):
    rng = np.random.default_rng(36)
    model = nn.Sequential([nn.Input((9, 8, 3)),
                           L.Resizing(height, width, interpolation=interpolation,
                                      crop_to_aspect_ratio=crop)])
    _compare_batches(model, _images(rng), tmp_path)


@pytest.mark.parametrize("size", [(5, 4), (9, 8), (12, 10)])
def test_random_layers_are_the_identity_and_random_crop_centre_crops(size, tmp_path):
    rng = np.random.default_rng(37)
    model = nn.Sequential([nn.Input((9, 8, 3)), L.RandomFlip(), L.RandomRotation(0.2),
                           L.RandomZoom(0.2), L.RandomTranslation(0.1, 0.1),
                           L.RandomContrast(0.3), L.RandomCrop(*size)])
    _compare_batches(model, _images(rng), tmp_path)


# -- Attention, AdditiveAttention, position embeddings, preprocessing ------------------------------

@pytest.mark.parametrize("cls,kw", [(L.Attention, {}), (L.Attention, {"use_scale": True}),
                                    (L.Attention, {"score_mode": "concat"}),
                                    (L.Attention, {"score_mode": "concat", "use_scale": True}),
                                    (L.AdditiveAttention, {}),
                                    (L.AdditiveAttention, {"use_scale": False})])
@pytest.mark.parametrize("variant", ["plain", "key", "causal", "scores"])
def test_attention_and_additive_attention(cls, kw, variant, tmp_path):
    rng = np.random.default_rng(40)
    qi, vi = nn.Input((T,), dtype="int32", name="q"), nn.Input((T,), dtype="int32", name="v")
    q, v = L.Embedding(V, 6, mask_zero=True)(qi), L.Embedding(V, 6, mask_zero=True)(vi)
    att = cls(**kw)
    inputs, xs = [qi, vi], [_ids(rng, padding="post"), _ids(rng, padding="holes")]
    if variant == "key":
        ki = nn.Input((T, 6), name="k")
        inputs.append(ki)
        xs.append(rng.standard_normal((7, T, 6)).astype(np.float32))
        y = att([q, v, ki])
    elif variant == "causal":
        y = att([q, v], use_causal_mask=True)
    elif variant == "scores":
        y, scores = att([q, v], return_attention_scores=True)
    else:
        y = att([q, v])
    outputs = [y, L.GlobalAveragePooling1D()(y)] + ([scores] if variant == "scores" else [])
    model = nn.Model(inputs, outputs)
    _randomize(model, rng)
    sess = _session(_export(model, tmp_path))
    _compare(model, xs, tmp_path, sess)
    _compare(model, [x[:1] for x in xs], tmp_path, sess)


@pytest.mark.parametrize("start_index", [0, 3])
@pytest.mark.parametrize("mask_zero", [False, True])
def test_position_embeddings(start_index, mask_zero, tmp_path):
    rng = np.random.default_rng(41)
    ids = nn.Input((None,), dtype="int32")
    tp = L.TokenAndPositionEmbedding(V, 16, 6, mask_zero=mask_zero)(ids, start_index=start_index)
    e = L.Embedding(V, 6, mask_zero=mask_zero)(ids)
    pe = L.PositionEmbedding(16)(e, start_index=start_index)
    out = L.GlobalAveragePooling1D()(L.Add()([tp, pe]))
    model = nn.Model(ids, [tp, pe, out])
    _randomize(model, rng)
    sess = _session(_export(model, tmp_path))
    for steps in (T, 4):
        x = _ids(rng, padding="post")[:, :steps]
        x[:, 0] = 1
        _compare(model, x, tmp_path, sess)
        _compare(model, x[:1], tmp_path, sess)


def test_text_vectorization_cannot_be_exported(tmp_path):
    tv = L.TextVectorization(max_tokens=20, output_sequence_length=5)
    tv.adapt(["the cat sat", "a dog ran far"])
    model = nn.Sequential([nn.Input((1,), dtype="string"), tv, L.Embedding(20, 3),
                           L.GlobalAveragePooling1D()])
    with pytest.raises(ValueError, match=r"strings.*TextVectorization.*cannot be exported"):
        model.export(str(tmp_path / "m.onnx"))
    assert not (tmp_path / "m.onnx").exists()


# -- the demo models end to end ---------------------------------------------------------------

def test_showcase_cnn_of_the_fashion_mnist_demo(tmp_path):
    from nanonet.demo_vision import build_cnn
    rng = np.random.default_rng(50)
    model = build_cnn()
    _randomize(model, rng, scale=0.2)
    x = rng.integers(0, 256, (7, 28, 28, 1)).astype(np.float32)
    model.fit(x, rng.integers(0, 10, 7), epochs=1, batch_size=7, verbose=0)  # augmentation on
    _compare_batches(model, x, tmp_path)


@pytest.mark.parametrize("name", ["lstm", "cnn", "bigru", "transformer"])
def test_text_demo_models(name, tmp_path):
    from nanonet.demo import MODELS
    rng = np.random.default_rng(51)
    model = MODELS[name](V, 5, 16)
    if not model.built:
        model.build((None, T))
    _randomize(model, rng, scale=0.3)
    sess = _session(_export(model, tmp_path))
    for padding in ("post", "pre"):
        x = _ids(rng, padding=padding)
        _compare(model, x, tmp_path, sess)
        _compare(model, x[:1], tmp_path, sess)


def test_resizing_needs_a_known_image_size(tmp_path):
    model = nn.Sequential([nn.Input((None, None, 3)), L.Resizing(4, 4, name="resize")])
    with pytest.raises(ValueError, match=r"'resize'.*Resizing.*height and width"):
        model.export(str(tmp_path / "m.onnx"))
