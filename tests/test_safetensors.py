"""save_weights / load_weights in the safetensors format, and PyTorch state dicts."""
import os

import numpy as np
import pytest

import nanonet as nn
from nanonet.interchange import keras_weight_names

st = pytest.importorskip("safetensors.numpy")


def showcase(vocab=30, classes=4, dtype=None):
    model = nn.Sequential([nn.layers.Embedding(vocab, 8, mask_zero=True, dtype=dtype),
                           nn.layers.LSTM(6, return_sequences=True, dtype=dtype),
                           nn.layers.LSTM(5, dtype=dtype),
                           nn.layers.Dense(classes, activation="softmax", dtype=dtype)])
    model.build((None, 7))
    return model


def graph():
    i = nn.Input((5, 8))
    h = nn.layers.MultiHeadAttention(2, 4)(i, i)
    h = nn.layers.LayerNormalization()(h)
    h = nn.layers.GlobalAveragePooling1D()(h)
    o = nn.layers.Dense(3)(nn.layers.BatchNormalization()(h))
    return nn.Model(i, o)


def randomize(model, seed=0):
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(size=w.shape).astype(w.dtype) for w in model.get_weights()])


@pytest.mark.parametrize("make", [showcase, graph, lambda: showcase(dtype="float64")])
def test_round_trip_is_bit_identical(tmp_path, make):
    model = make()
    randomize(model)
    path = tmp_path / "w.safetensors"
    model.save_weights(path)
    other = make()
    other.load_weights(path)
    for a, b in zip(model.get_weights(), other.get_weights()):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()


def test_names_are_keras_variable_paths(tmp_path):
    model = showcase()
    path = tmp_path / "w.safetensors"
    model.save_weights(path)
    names = sorted(st.load_file(str(path)))
    assert names == sorted(["embedding/embeddings", "lstm/lstm_cell/kernel",
                            "lstm/lstm_cell/recurrent_kernel", "lstm/lstm_cell/bias",
                            "lstm_1/lstm_cell/kernel", "lstm_1/lstm_cell/recurrent_kernel",
                            "lstm_1/lstm_cell/bias", "dense/kernel", "dense/bias"])
    mha = [n for n in keras_weight_names(graph()) if "multi_head_attention" in n]
    assert [n.split("/", 1)[1] for n in mha] == [
        "query/kernel", "query/bias", "key/kernel", "key/bias", "value/kernel", "value/bias",
        "attention_output/kernel", "attention_output/bias"]


def wrapped_and_new_layers(lib):
    """The same graph in nanonet or Keras (lib = nanonet or keras): wrappers, recurrent, conv
    and attention layers."""
    L = lib.layers
    i = lib.Input((7, 4))
    h = L.TimeDistributed(L.Dense(3))(i)
    h = L.Dense(2)(h)
    h = L.Bidirectional(L.GRU(3, return_sequences=True))(h)
    h = L.GRU(2, return_sequences=True, reset_after=False)(h)
    h = L.Bidirectional(L.SimpleRNN(2, return_sequences=True),
                        backward_layer=L.SimpleRNN(2, return_sequences=True, go_backwards=True))(h)
    h = L.Bidirectional(L.LSTM(2, return_sequences=True))(h)
    a = L.Attention(use_scale=True, score_mode="concat")([h, h])
    b = L.AdditiveAttention()([h, h])
    c = L.Conv1D(2, 3)(L.Concatenate()([a, b]))
    o = L.Reshape((5, 2, 1))(c)
    o = L.SeparableConv2D(3, 1)(L.DepthwiseConv2D(1)(L.Conv2D(2, 1)(o)))
    return lib.Model(i, o)


# Keras 3.15's variable.path for wrapped_and_new_layers(keras) in a fresh session
KERAS_PATHS = (
    ["time_distributed/dense/kernel", "time_distributed/dense/bias", "dense_1/kernel",
     "dense_1/bias"]
    + [f"bidirectional/{d}_gru/gru_cell/{w}" for d in ("forward", "backward")
       for w in ("kernel", "recurrent_kernel", "bias")]
    + [f"gru_1/gru_cell/{w}" for w in ("kernel", "recurrent_kernel", "bias")]
    + [f"bidirectional_1/{d}/simple_rnn_cell/{w}" for d in ("forward_simple_rnn", "simple_rnn_1")
       for w in ("kernel", "recurrent_kernel", "bias")]
    + [f"bidirectional_2/{d}_lstm/lstm_cell/{w}" for d in ("forward", "backward")
       for w in ("kernel", "recurrent_kernel", "bias")]
    + ["attention/scale", "attention/concat_score_weight", "additive_attention/scale",
       "conv1d/kernel", "conv1d/bias", "conv2d/kernel", "conv2d/bias", "depthwise_conv2d/kernel",
       "depthwise_conv2d/bias", "separable_conv2d/depthwise_kernel",
       "separable_conv2d/pointwise_kernel", "separable_conv2d/bias"])


def test_names_of_wrapped_recurrent_conv_and_attention_layers(tmp_path):
    model = wrapped_and_new_layers(nn)
    assert keras_weight_names(model) == KERAS_PATHS
    randomize(model)
    model.save_weights(tmp_path / "w.safetensors")
    other = wrapped_and_new_layers(nn)
    other.load_weights(tmp_path / "w.safetensors")
    for a, b in zip(model.get_weights(), other.get_weights()):
        assert a.tobytes() == b.tobytes()


def test_names_match_keras_variable_paths_live():
    from .peers import keras_or_skip
    keras = keras_or_skip()
    keras.backend.clear_session()  # Keras's automatic names count from a fresh session
    want = [v.path for v in wrapped_and_new_layers(keras).weights]
    assert keras_weight_names(wrapped_and_new_layers(nn)) == want == KERAS_PATHS


def test_unbuilt_model_is_built_from_the_stored_input_shape(tmp_path):
    model = showcase()
    randomize(model)
    model.save_weights(tmp_path / "w.safetensors")
    fresh = nn.Sequential([nn.layers.Embedding(30, 8, mask_zero=True),
                           nn.layers.LSTM(6, return_sequences=True), nn.layers.LSTM(5),
                           nn.layers.Dense(4, activation="softmax")])
    fresh.load_weights(tmp_path / "w.safetensors")
    x = np.array([[3, 4, 5, 0, 0, 0, 0]])
    np.testing.assert_array_equal(fresh.predict(x, verbose=0), model.predict(x, verbose=0))


def test_mismatch_and_corruption_are_clear_errors(tmp_path):
    model = showcase()
    path = tmp_path / "w.safetensors"
    model.save_weights(path)
    with pytest.raises(ValueError, match=r"has shape \(30, 8\); model .* needs \(31, 8\)"):
        showcase(vocab=31).load_weights(path)
    with pytest.raises(ValueError, match="does not match model.*missing.*unexpected"):
        graph().load_weights(path)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="not a valid safetensors file"):
        model.load_weights(bad)
    tensors = st.load_file(str(path))
    first = sorted(tensors)[0]
    tensors[first] = tensors[first].copy()
    tensors[first].flat[0] = np.nan
    st.save_file(tensors, str(tmp_path / "nan.safetensors"))
    with pytest.raises(ValueError, match="NaN or inf"):
        model.load_weights(tmp_path / "nan.safetensors")
    with pytest.raises(FileNotFoundError):
        model.load_weights(tmp_path / "missing.safetensors")


def test_failed_save_keeps_the_previous_file(tmp_path, monkeypatch):
    model = showcase()
    path = tmp_path / "w.safetensors"
    model.save_weights(path)
    before = path.read_bytes()
    from nanonet import saving

    def boom(f):
        f.write(b"partial")
        raise OSError(28, "No space left on device")
    real = saving._atomic_write
    monkeypatch.setattr(saving, "_atomic_write",
                        lambda p, write, overwrite, fn: real(p, boom, overwrite, fn))
    randomize(model, 1)
    with pytest.raises(OSError, match="No space left"):
        model.save_weights(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["w.safetensors"]
    with pytest.raises(FileExistsError):
        real(str(path), lambda f: None, False, "save_weights")


def test_missing_safetensors_names_the_extra(tmp_path, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)
    with pytest.raises(ImportError, match=r'pip install "nanonet\[safetensors\]"'):
        showcase().save_weights(tmp_path / "w.safetensors")


# -- PyTorch state dicts -----------------------------------------------------------------------
def _torch_like_state_dict(rng, vocab=30, e=8, h1=6, h2=5, classes=4):
    """A state dict shaped like torch's Embedding, 2-layer LSTM, Linear (NumPy only)."""
    sd = {"emb.weight": rng.normal(size=(vocab, e))}
    for k, (i, h) in enumerate([(e, h1), (h1, h2)]):
        sd[f"rnn.weight_ih_l{k}"] = rng.normal(size=(4 * h, i))
        sd[f"rnn.weight_hh_l{k}"] = rng.normal(size=(4 * h, h))
        sd[f"rnn.bias_ih_l{k}"] = rng.normal(size=4 * h)
        sd[f"rnn.bias_hh_l{k}"] = rng.normal(size=4 * h)
    sd["fc.weight"] = rng.normal(size=(classes, h2))
    sd["fc.bias"] = rng.normal(size=classes)
    return {k: v.astype("float32") for k, v in sd.items()}


def test_from_torch_state_dict_layouts():
    rng = np.random.default_rng(0)
    sd = _torch_like_state_dict(rng)
    model = showcase()
    w = nn.interchange.from_torch_state_dict(model, sd)
    np.testing.assert_array_equal(w[0], sd["emb.weight"])
    np.testing.assert_array_equal(w[1], sd["rnn.weight_ih_l0"].T)
    np.testing.assert_array_equal(w[2], sd["rnn.weight_hh_l0"].T)
    np.testing.assert_allclose(w[3], sd["rnn.bias_ih_l0"] + sd["rnn.bias_hh_l0"], rtol=1e-6)
    np.testing.assert_array_equal(w[7], sd["fc.weight"].T)
    back = nn.interchange.to_torch_state_dict(model)
    np.testing.assert_array_equal(back[f"{model.layers[1].name}.weight_ih_l0"],
                                  sd["rnn.weight_ih_l0"])


def test_from_torch_state_dict_errors():
    rng = np.random.default_rng(0)
    sd = _torch_like_state_dict(rng)
    with pytest.raises(ValueError, match=r"shape \(30, 8\); the layer needs \(31, 8\)"):
        nn.interchange.from_torch_state_dict(showcase(vocab=31), sd)
    bi = dict(sd, **{"rnn.weight_ih_l0_reverse": sd["rnn.weight_ih_l0"]})
    with pytest.raises(ValueError, match="bidirectional"):
        nn.interchange.from_torch_state_dict(showcase(), bi)
    short = {k: v for k, v in sd.items() if not k.startswith("fc.")}
    with pytest.raises(ValueError, match="3 modules with parameters.*4 layers with weights"):
        nn.interchange.from_torch_state_dict(showcase(), short)
    nobias = {k: v for k, v in sd.items() if k != "fc.bias"}
    with pytest.raises(ValueError, match=r"'fc' has parameters \['weight'\]"):
        nn.interchange.from_torch_state_dict(showcase(), nobias)


def test_torch_predictions_match():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(30, 8)
            self.rnn = torch.nn.LSTM(8, 6, num_layers=2, batch_first=True)
            self.norm = torch.nn.LayerNorm(6)
            self.fc = torch.nn.Linear(6, 4)

        def forward(self, x):
            out, _ = self.rnn(self.emb(x))
            return torch.softmax(self.fc(self.norm(out[:, -1])), dim=-1)

    net = Net().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.5)
    model = nn.Sequential([nn.layers.Embedding(30, 8), nn.layers.LSTM(6, return_sequences=True),
                           nn.layers.LSTM(6), nn.layers.LayerNormalization(epsilon=1e-5),
                           nn.layers.Dense(4, activation="softmax")])
    model.build((None, 9))
    nn.interchange.from_torch_state_dict(
        model, {k: v.detach().numpy() for k, v in net.state_dict().items()})
    x = np.random.default_rng(1).integers(0, 30, size=(5, 9))
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model.predict(x, verbose=0), want, atol=1e-5, rtol=0)


def recurrent_conv_model():
    """Conv1D, a 2-layer bidirectional GRU, a relu SimpleRNN, a bidirectional LSTM, Dense: the
    nanonet twin of TorchRecurrent below."""
    L = nn.layers
    model = nn.Sequential([L.Conv1D(5, 3, padding="same"),
                           L.Bidirectional(L.GRU(6, return_sequences=True)),
                           L.Bidirectional(L.GRU(6, return_sequences=True)),
                           L.SimpleRNN(3, activation="relu", return_sequences=True),
                           L.Bidirectional(L.LSTM(2, return_sequences=True)), L.Dense(2)])
    model.build((None, 7, 4))
    return model


def _torch_like_recurrent_state_dict(rng):
    """The state dict of TorchRecurrent, NumPy only."""
    sd = {"conv.weight": rng.normal(size=(5, 4, 3)), "conv.bias": rng.normal(size=5)}
    for name, gates, layers in (("gru", 3, [(5, 6), (12, 6)]), ("rnn", 1, [(12, 3)]),
                                ("lstm", 4, [(3, 2)])):
        for k, (i, h) in enumerate(layers):
            for sfx in ("", "_reverse") if name != "rnn" else ("",):
                sd[f"{name}.weight_ih_l{k}{sfx}"] = rng.normal(size=(gates * h, i))
                sd[f"{name}.weight_hh_l{k}{sfx}"] = rng.normal(size=(gates * h, h))
                sd[f"{name}.bias_ih_l{k}{sfx}"] = rng.normal(size=gates * h)
                sd[f"{name}.bias_hh_l{k}{sfx}"] = rng.normal(size=gates * h)
    sd["fc.weight"], sd["fc.bias"] = rng.normal(size=(2, 4)), rng.normal(size=2)
    return {k: v.astype("float32") for k, v in sd.items()}


def test_torch_gru_conv_and_bidirectional_layouts():
    sd = _torch_like_recurrent_state_dict(np.random.default_rng(0))
    model = recurrent_conv_model()
    w = dict(zip(keras_weight_names(model), nn.interchange.from_torch_state_dict(model, sd)))
    np.testing.assert_array_equal(w["conv1d/kernel"], sd["conv.weight"].transpose(2, 1, 0))
    H = 6
    r, z, n = (sd["gru.weight_ih_l0"][g * H:(g + 1) * H] for g in range(3))
    kernel = w["bidirectional/forward_gru/gru_cell/kernel"]
    np.testing.assert_array_equal(kernel, np.concatenate([z, r, n]).T)  # Keras: z, r, h
    bias = w["bidirectional/backward_gru/gru_cell/bias"]
    b_ih, b_hh = sd["gru.bias_ih_l0_reverse"], sd["gru.bias_hh_l0_reverse"]
    np.testing.assert_array_equal(bias[0], np.concatenate([b_ih[H:2 * H], b_ih[:H], b_ih[2 * H:]]))
    np.testing.assert_array_equal(bias[1], np.concatenate([b_hh[H:2 * H], b_hh[:H], b_hh[2 * H:]]))
    np.testing.assert_allclose(w["simple_rnn/simple_rnn_cell/bias"],
                               sd["rnn.bias_ih_l0"] + sd["rnn.bias_hh_l0"], rtol=1e-6)
    np.testing.assert_array_equal(w["bidirectional_2/backward_lstm/lstm_cell/recurrent_kernel"],
                                  sd["lstm.weight_hh_l0_reverse"].T)
    # back to torch: GRU, convolution and the LSTM's weights exactly; the folded biases sum
    back = nn.interchange.to_torch_state_dict(model)
    names = [la.name for la in model.layers]
    for theirs, ours in (("conv.weight", f"{names[0]}.weight"),
                         ("gru.weight_ih_l0_reverse", f"{names[1]}.weight_ih_l0_reverse"),
                         ("gru.bias_hh_l1", f"{names[2]}.bias_hh_l0"),
                         ("lstm.weight_ih_l0_reverse", f"{names[4]}.weight_ih_l0_reverse")):
        np.testing.assert_array_equal(back[ours], sd[theirs])
    np.testing.assert_allclose(back[f"{names[3]}.bias_ih_l0"] + back[f"{names[3]}.bias_hh_l0"],
                               sd["rnn.bias_ih_l0"] + sd["rnn.bias_hh_l0"], rtol=1e-6)


def test_torch_recurrent_mapping_errors():
    sd = _torch_like_recurrent_state_dict(np.random.default_rng(0))
    L = nn.layers
    no_reset_after = nn.Sequential([L.Conv1D(5, 3, padding="same"),
                                    L.Bidirectional(L.GRU(6, return_sequences=True,
                                                          reset_after=False))])
    no_reset_after.build((None, 7, 4))
    with pytest.raises(ValueError, match="reset_after=True"):
        nn.interchange.from_torch_state_dict(no_reset_after, {
            k: v for k, v in sd.items() if k.startswith(("conv.", "gru.")) and "_l1" not in k})
    one_way = nn.Sequential([L.Conv1D(5, 3, padding="same"),
                             L.GRU(6, return_sequences=True)])
    one_way.build((None, 7, 4))
    with pytest.raises(ValueError, match="bidirectional RNN.*wrap it in Bidirectional"):
        nn.interchange.from_torch_state_dict(one_way, {
            k: v for k, v in sd.items() if k.startswith(("conv.", "gru.")) and "_l1" not in k})
    sigmoid = nn.Sequential([L.SimpleRNN(3, activation="sigmoid")])
    sigmoid.build((None, 7, 12))
    with pytest.raises(ValueError, match="tanh or relu"):
        nn.interchange.from_torch_state_dict(sigmoid, {
            k: v for k, v in sd.items() if k.startswith("rnn.")})


def test_torch_gru_rnn_conv_bidirectional_predictions_match():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)

    class TorchRecurrent(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv1d(4, 5, 3, padding=1)
            self.gru = torch.nn.GRU(5, 6, num_layers=2, batch_first=True, bidirectional=True)
            self.rnn = torch.nn.RNN(12, 3, nonlinearity="relu", batch_first=True)
            self.lstm = torch.nn.LSTM(3, 2, batch_first=True, bidirectional=True)
            self.fc = torch.nn.Linear(4, 2)

        def forward(self, x):  # x (B, T, C), channels last as in Keras
            h = self.conv(x.transpose(1, 2)).transpose(1, 2)
            h = self.lstm(self.rnn(self.gru(h)[0])[0])[0]
            return self.fc(h)

    net = TorchRecurrent().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.5)
    model = recurrent_conv_model()
    nn.interchange.from_torch_state_dict(
        model, {k: v.detach().numpy() for k, v in net.state_dict().items()})
    x = np.random.default_rng(1).normal(size=(3, 7, 4)).astype("float32")
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model.predict(x, verbose=0), want, atol=1e-5, rtol=0)
    # and back: nanonet's weights into a fresh torch module give nanonet's predictions
    fresh = TorchRecurrent().eval()
    back = nn.interchange.to_torch_state_dict(model)
    renamed = dict(zip(fresh.state_dict(), back.values()))
    assert [v.shape for v in renamed.values()] == \
        [tuple(t.shape) for t in fresh.state_dict().values()]
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in renamed.items()})
    with torch.no_grad():
        np.testing.assert_allclose(fresh(torch.from_numpy(x)).numpy(), want, atol=1e-5, rtol=0)


def test_torch_conv2d_predictions_match():
    torch = pytest.importorskip("torch")
    torch.manual_seed(1)
    conv = torch.nn.Conv2d(3, 4, (3, 2), stride=(1, 2)).eval()
    model = nn.Sequential([nn.layers.Conv2D(4, (3, 2), strides=(1, 2))])
    model.build((None, 6, 7, 3))
    nn.interchange.from_torch_state_dict(
        model, {k: v.detach().numpy() for k, v in conv.state_dict().items()})
    x = np.random.default_rng(2).normal(size=(2, 6, 7, 3)).astype("float32")
    with torch.no_grad():
        want = conv(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(model.predict(x, verbose=0), want, atol=1e-5, rtol=0)
    back = nn.interchange.to_torch_state_dict(model)
    np.testing.assert_array_equal(back[f"{model.layers[0].name}.weight"],
                                  conv.weight.detach().numpy())
