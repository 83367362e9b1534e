"""The showcase model: Embedding(20000, 128) -> LSTM(128, return_sequences=True) -> LSTM(128) ->
Dense(4, softmax), batch 32, sequence length 100, adam + categorical cross-entropy.

Groups: one training step, inference at batch 32, and inference latency at batch 1; nanonet vs a
NumPy implementation of the same model (input projections and weight gradients as whole-sequence
BLAS products, a Python loop over time steps) vs PyTorch's CPU build (nn.Embedding, nn.LSTM
batch_first, nn.Linear, Adam; skipped when torch is absent); 1 and 2 threads, pinned on all sides.
The LSTM work of a training step is recorded as flops so the report shows achieved GFLOP/s
(fp32 peak here is about 116 GFLOP/s per core).
"""
import numpy as np
import pytest

import nanonet as nn

from conftest import record

V, E, H, C, B, T = 20000, 128, 128, 4, 32, 100
# LSTM multiply-adds per (sample, step): (I + H) * 4H for each layer (I = E = H = 128).
LSTM_FWD_FLOPS = 2 * 2.0 * (E + H) * 4 * H * T  # per sample, both layers
TRAIN_FLOPS = 3 * LSTM_FWD_FLOPS * B  # backward ~ twice forward


def _data(batch=B):
    rng = np.random.default_rng(0)
    x = rng.integers(1, V, size=(batch, T)).astype(np.int32)
    y = np.eye(C, dtype=np.float32)[rng.integers(0, C, batch)]
    return x, y


def _nanonet_model():
    nn.set_seed(0)
    model = nn.Sequential([
        nn.layers.Embedding(V, E),
        nn.layers.LSTM(H, return_sequences=True),
        nn.layers.LSTM(H),
        nn.layers.Dense(C, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    model.build((None, T))
    return model


# --------------------------------------------------------------------------------------------
# NumPy implementation of the same model (Keras layout, gate order i, f, c, o).

def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


class NumpyShowcase:
    def __init__(self, weights):
        self.w = [w.copy() for w in weights]  # emb, k1, r1, b1, k2, r2, b2, dk, db
        self.m = [np.zeros_like(w) for w in self.w]
        self.v = [np.zeros_like(w) for w in self.w]
        self.t = 0

    @staticmethod
    def lstm_forward(x, k, r, b, keep):
        n, steps, _ = x.shape
        h = np.zeros((n, r.shape[0]), np.float32)
        c = np.zeros_like(h)
        xw = (x.reshape(n * steps, -1) @ k + b).reshape(n, steps, -1)
        hs = np.empty((n, steps, h.shape[1]), np.float32)
        cache = []
        for t in range(steps):
            z = xw[:, t] + h @ r
            i, f, g, o = np.split(z, 4, axis=1)
            i, f, g, o = _sigmoid(i), _sigmoid(f), np.tanh(g), _sigmoid(o)
            c_prev = c
            c = f * c + i * g
            tc = np.tanh(c)
            h = o * tc
            hs[:, t] = h
            if keep:
                cache.append((i, f, g, o, c_prev, tc))
        return hs, cache

    @staticmethod
    def lstm_backward(x, hs, cache, k, r, dhs):
        n, steps, _ = x.shape
        units = r.shape[0]
        dz_all = np.empty((n, steps, 4 * units), np.float32)
        dh = np.zeros((n, units), np.float32)
        dc = np.zeros_like(dh)
        for t in range(steps - 1, -1, -1):
            i, f, g, o, c_prev, tc = cache[t]
            dh = dh + dhs[:, t]
            dc = dc + dh * o * (1 - tc * tc)
            dz = np.concatenate([dc * g * i * (1 - i), dc * c_prev * f * (1 - f),
                                 dc * i * (1 - g * g), dh * tc * o * (1 - o)], axis=1)
            dz_all[:, t] = dz
            dh = dz @ r.T
            dc = dc * f
        h_prev = np.concatenate([np.zeros((n, 1, units), np.float32), hs[:, :-1]], axis=1)
        dz2 = dz_all.reshape(n * steps, -1)
        dk = x.reshape(n * steps, -1).T @ dz2
        dr = h_prev.reshape(n * steps, -1).T @ dz2
        dx = (dz2 @ k.T).reshape(x.shape)
        return dx, dk, dr, dz2.sum(axis=0)

    def predict(self, ids):
        emb, k1, r1, b1, k2, r2, b2, dk, db = self.w
        h1, _ = self.lstm_forward(emb[ids], k1, r1, b1, False)
        h2, _ = self.lstm_forward(h1, k2, r2, b2, False)
        z = h2[:, -1] @ dk + db
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def train_step(self, ids, y):
        emb, k1, r1, b1, k2, r2, b2, dk, db = self.w
        x0 = emb[ids]
        h1, c1 = self.lstm_forward(x0, k1, r1, b1, True)
        h2, c2 = self.lstm_forward(h1, k2, r2, b2, True)
        z = h2[:, -1] @ dk + db
        e = np.exp(z - z.max(axis=1, keepdims=True))
        p = e / e.sum(axis=1, keepdims=True)
        n = ids.shape[0]
        loss = -np.mean(np.sum(y * np.log(np.clip(p, 1e-7, 1)), axis=1))
        dzl = (p - y) / n
        g_dk, g_db = h2[:, -1].T @ dzl, dzl.sum(axis=0)
        dh2 = np.zeros_like(h2)
        dh2[:, -1] = dzl @ dk.T
        dh1, g_k2, g_r2, g_b2 = self.lstm_backward(h1, h2, c2, k2, r2, dh2)
        dx0, g_k1, g_r1, g_b1 = self.lstm_backward(x0, h1, c1, k1, r1, dh1)
        g_emb = np.zeros_like(emb)
        np.add.at(g_emb, ids.reshape(-1), dx0.reshape(-1, E))
        grads = [g_emb, g_k1, g_r1, g_b1, g_k2, g_r2, g_b2, g_dk, g_db]
        self.t += 1
        alpha = 1e-3 * np.sqrt(1 - 0.999 ** self.t) / (1 - 0.9 ** self.t)
        for w, g, m, v in zip(self.w, grads, self.m, self.v):
            m += (g - m) * 0.1
            v += (g * g - v) * 0.001
            w -= alpha * m / (np.sqrt(v) + 1e-7)
        return float(loss)


# --------------------------------------------------------------------------------------------
# PyTorch, same architecture and weights.

def _torch_model(weights):
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(V, E)
            self.l1 = torch.nn.LSTM(E, H, batch_first=True)
            self.l2 = torch.nn.LSTM(H, H, batch_first=True)
            self.out = torch.nn.Linear(H, C)

        def forward(self, ids):
            h, _ = self.l1(self.emb(ids))
            h, _ = self.l2(h)
            return self.out(h[:, -1])

    net = Net()
    emb, k1, r1, b1, k2, r2, b2, dk, db = weights
    with torch.no_grad():
        net.emb.weight.copy_(torch.from_numpy(emb))
        for lstm, k, r, b in ((net.l1, k1, r1, b1), (net.l2, k2, r2, b2)):
            # Keras (I, 4H) with gates i, f, c, o == torch (4H, I) with i, f, g, o: a transpose
            lstm.weight_ih_l0.copy_(torch.from_numpy(k.T.copy()))
            lstm.weight_hh_l0.copy_(torch.from_numpy(r.T.copy()))
            lstm.bias_ih_l0.copy_(torch.from_numpy(b))
            lstm.bias_hh_l0.zero_()
        net.out.weight.copy_(torch.from_numpy(dk.T.copy()))
        net.out.bias.copy_(torch.from_numpy(db))
    return torch, net


@pytest.mark.parametrize("side", ["numpy", "nanonet", "torch"])
def test_train_step(benchmark, threads, side):
    x, y = _data()
    model = _nanonet_model()
    benchmark.group = f"showcase train step b{B} T{T} t{threads}"
    record(benchmark, side, threads, flops=TRAIN_FLOPS)
    if side == "nanonet":
        first = float(model.train_on_batch(x, y)[0])
        benchmark(model.train_on_batch, x, y)
        last = float(model.train_on_batch(x, y)[0])
    elif side == "numpy":
        ref = NumpyShowcase(model.get_weights())
        first = ref.train_step(x, y)
        benchmark(ref.train_step, x, y)
        last = ref.train_step(x, y)
    else:
        torch, net = _torch_model(model.get_weights())
        opt = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7)
        xt, yt = torch.from_numpy(x.astype(np.int64)), torch.from_numpy(y)

        def step():
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(net(xt), yt)
            loss.backward()
            opt.step()
            return float(loss.detach())

        first = step()
        benchmark(step)
        last = step()
    assert last < first  # every side learns the fixed batch


@pytest.mark.parametrize("batch", [B, 1], ids=["b32", "b1"])
@pytest.mark.parametrize("side", ["numpy", "nanonet", "torch"])
def test_inference(benchmark, threads, side, batch):
    x, _ = _data(batch)
    model = _nanonet_model()
    want = NumpyShowcase(model.get_weights()).predict(x)
    benchmark.group = f"showcase inference b{batch} T{T} t{threads}"
    record(benchmark, side, threads, flops=LSTM_FWD_FLOPS * batch)
    if side == "nanonet":
        # batch 32 through predict_on_batch; batch 1 through a direct call, the serving path
        fn = model.predict_on_batch if batch > 1 else model
        out = np.asarray(benchmark(fn, x))
    elif side == "numpy":
        out = benchmark(NumpyShowcase(model.get_weights()).predict, x)
    else:
        torch, net = _torch_model(model.get_weights())
        xt = torch.from_numpy(x.astype(np.int64))

        def infer():
            with torch.inference_mode():
                return torch.softmax(net(xt), dim=1).numpy()

        out = benchmark(infer)
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5)
