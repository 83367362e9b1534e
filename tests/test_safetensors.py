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
