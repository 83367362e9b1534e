"""The Transformer showcase's training step (python -m nanonet demo --model transformer) against
the same model in PyTorch: token + position embedding (d_model 128), two post-norm encoder
blocks of 4-head self-attention (head width 32) + residual + LayerNorm + feed-forward 128 (relu)
+ residual + LayerNorm, masked mean pooling, a softmax classifier; Adam, categorical
cross-entropy. One step = forward, backward and the Adam update, B = 32, T = 100, vocabulary
20000, 26 classes, 25% of each row padding (id 0, masked as attention keys and in the pooling).
torch uses nn.MultiheadAttention(batch_first=True, key_padding_mask), nn.LayerNorm, nn.Linear.

Threads pinned on both sides (conftest.threads). Both sides start from the same weights and
the test checks that one step gives the same loss, so --benchmark-disable turns it into a test.
"""
import numpy as np
import pytest

import nanonet as nn
from nanonet.demo import build_transformer

from conftest import record, torch

B, T, V, C, D_MODEL = 32, 100, 20000, 26, 128


def _data():
    rng = np.random.default_rng(0)
    ids = rng.integers(1, V, size=(B, T)).astype(np.int32)
    ids[:, :T // 4] = 0  # pre-padding, as pad_sequences does
    y = np.eye(C, dtype=np.float32)[rng.integers(0, C, B)]
    return ids, y


def _nanonet_model():
    nn.set_seed(0)
    return build_transformer(V, C, 128, sequence_length=T)


def _torch_model(weights):
    """The same architecture in torch, with the nanonet model's weights copied in."""
    tnn = torch.nn

    class Block(tnn.Module):
        def __init__(self):
            super().__init__()
            self.att = tnn.MultiheadAttention(D_MODEL, 4, batch_first=True)
            self.ln1 = tnn.LayerNorm(D_MODEL, eps=1e-6)
            self.ff1 = tnn.Linear(D_MODEL, 128)
            self.ff2 = tnn.Linear(128, D_MODEL)
            self.ln2 = tnn.LayerNorm(D_MODEL, eps=1e-6)

        def forward(self, x, pad):
            h, _ = self.att(x, x, x, key_padding_mask=pad, need_weights=False)
            x = self.ln1(x + h)
            return self.ln2(x + self.ff2(torch.relu(self.ff1(x))))

    class Net(tnn.Module):
        def __init__(self):
            super().__init__()
            self.tok = tnn.Embedding(V, D_MODEL)
            self.pos = tnn.Parameter(torch.zeros(T, D_MODEL))
            self.blocks = tnn.ModuleList([Block(), Block()])
            self.out = tnn.Linear(D_MODEL, C)

        def forward(self, ids):
            keep = ids != 0
            x = self.tok(ids) + self.pos[: ids.shape[1]]
            for blk in self.blocks:
                x = blk(x, ~keep)
            m = keep.unsqueeze(-1).to(x.dtype)
            return self.out((x * m).sum(1) / m.sum(1).clamp_min(1))

    net = Net()
    w = iter(weights)
    t = lambda a: torch.tensor(np.asarray(a))  # noqa: E731
    with torch.no_grad():
        net.tok.weight.copy_(t(next(w)))
        net.pos.copy_(t(next(w)))
        for blk in net.blocks:
            wq, bq, wk, bk, wv, bv, wo, bo = (next(w) for _ in range(8))
            blk.att.in_proj_weight.copy_(t(np.concatenate(
                [a.reshape(D_MODEL, -1).T for a in (wq, wk, wv)])))
            blk.att.in_proj_bias.copy_(t(np.concatenate([a.reshape(-1) for a in (bq, bk, bv)])))
            blk.att.out_proj.weight.copy_(t(wo.reshape(-1, D_MODEL).T))
            blk.att.out_proj.bias.copy_(t(bo))
            blk.ln1.weight.copy_(t(next(w)))
            blk.ln1.bias.copy_(t(next(w)))
            for lin in (blk.ff1, blk.ff2):
                lin.weight.copy_(t(next(w).T))
                lin.bias.copy_(t(next(w)))
            blk.ln2.weight.copy_(t(next(w)))
            blk.ln2.bias.copy_(t(next(w)))
        net.out.weight.copy_(t(next(w).T))
        net.out.bias.copy_(t(next(w)))
    assert next(w, None) is None
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7)
    return net, opt


def _torch_step(net, opt, ids, labels):
    opt.zero_grad()
    loss = torch.nn.functional.cross_entropy(net(ids), labels)
    loss.backward()
    opt.step()
    return float(loss)


@pytest.mark.parametrize("side", ["nanonet", "torch"])
def test_transformer_train_step(benchmark, threads, side):
    if side == "torch" and torch is None:
        pytest.skip("torch is not installed")
    ids, y = _data()
    model = _nanonet_model()
    benchmark.group = f"transformer train step B{B} T{T} d{D_MODEL} t{threads}"
    record(benchmark, side, threads, shape=f"B{B} T{T} d{D_MODEL}")
    if side == "nanonet":
        first = np.ravel(model.train_on_batch(ids, y))[0]  # [loss, accuracy]
        benchmark.pedantic(model.train_on_batch, args=(ids, y), rounds=5, iterations=1,
                           warmup_rounds=1)
    else:
        net, opt = _torch_model(model.get_weights())
        tids, tlab = torch.tensor(ids, dtype=torch.long), torch.tensor(y.argmax(1))
        first = _torch_step(net, opt, tids, tlab)
        benchmark.pedantic(_torch_step, args=(net, opt, tids, tlab), rounds=5, iterations=1,
                           warmup_rounds=1)
        # the same first step as nanonet's: the models are the same
        np.testing.assert_allclose(first, np.ravel(_nanonet_model().train_on_batch(ids, y))[0],
                                   rtol=1e-4)
    assert np.isfinite(first)
