"""Attention core: nanonet.ops.attention_forward / attention_backward (the flash kernel) against
the NumPy twin (nanonet.reference, the full score matrix) and, when torch is importable,
torch.nn.functional.scaled_dot_product_attention forward + autograd backward. float32, no mask,
threads pinned on every side (conftest.threads).

Groups: "attention fwd+bwd ..." (one training step of the core) and "attention fwd ..."
(inference). Each nanonet answer is checked against the NumPy twin's (float64), so
--benchmark-disable turns this file into a test. extra_info holds flops (forward 4 B H T^2 D,
backward 2.5x that: five T x T x D products vs two) and, after the run, gflops.
"""
import numpy as np
import pytest

import nanonet as nn
from nanonet import reference

from conftest import record, torch

# (label, B, H, T, D); the NumPy twin is skipped at T = 512 (its (B, H, T, T) arrays are 134 MB
# each).
SHAPES = [("B32 H4 T128 D32", 32, 4, 128, 32), ("B4 H4 T512 D32", 4, 4, 512, 32)]
SIDES = ["numpy", "nanonet", "torch"]


def _inputs(B, H, T, D):
    rng = np.random.default_rng(0)
    return [rng.standard_normal((B, H, T, D)).astype(np.float32) for _ in range(4)]


def _nanonet_step(q, k, v, do):
    out, lse = nn.ops.attention_forward(q, k, v)
    return (out,) + nn.ops.attention_backward(do, q, k, v, out, lse)


def _numpy_step(q, k, v, do):
    out, lse = reference.attention_forward(q, k, v)
    return (out,) + reference.attention_backward(do, q, k, v, out, lse)


def _torch_step(tq, tk, tv, tdo):
    for t in (tq, tk, tv):
        t.grad = None
    out = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv)
    out.backward(tdo)
    return out, tq.grad, tk.grad, tv.grad


def _run(benchmark, fn, *args):
    return benchmark.pedantic(fn, args=args, rounds=7, iterations=1, warmup_rounds=1)


def _gflops(benchmark, flops):
    stats = getattr(benchmark, "stats", None)  # None with --benchmark-disable
    if stats is not None:
        benchmark.extra_info["gflops"] = round(flops / stats.stats.median / 1e9, 2)


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("label,B,H,T,D", SHAPES, ids=[s[0] for s in SHAPES])
def test_attention_fwd_bwd(benchmark, threads, side, label, B, H, T, D):
    if side == "torch" and torch is None:
        pytest.skip("torch is not installed")
    if side == "numpy" and T > 256:
        pytest.skip("the NumPy twin's score arrays are too large here")
    q, k, v, do = _inputs(B, H, T, D)
    flops = 3.5 * 4.0 * B * H * T * T * D
    benchmark.group = f"attention fwd+bwd {label} t{threads}"
    record(benchmark, side, threads, flops=flops, shape=label)
    if side == "torch":
        ts = [torch.tensor(a, requires_grad=i < 3) for i, a in enumerate((q, k, v, do))]
        got = [t.detach().numpy() for t in _run(benchmark, _torch_step, *ts)]
    elif side == "numpy":
        got = _run(benchmark, _numpy_step, q, k, v, do)
    else:
        got = _run(benchmark, _nanonet_step, q, k, v, do)
    _gflops(benchmark, flops)
    if T <= 256 or side == "nanonet":
        want = _numpy_step(*(a.astype(np.float64) for a in (q, k, v, do))) if T <= 256 else \
            _nanonet_step(*(a.astype(np.float64) for a in (q, k, v, do)))
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=0, atol=2e-5 * (np.abs(w).max() + 1))


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("label,B,H,T,D", SHAPES, ids=[s[0] for s in SHAPES])
def test_attention_fwd(benchmark, threads, side, label, B, H, T, D):
    if side == "torch" and torch is None:
        pytest.skip("torch is not installed")
    if side == "numpy" and T > 256:
        pytest.skip("the NumPy twin's score arrays are too large here")
    q, k, v, _ = _inputs(B, H, T, D)
    flops = 4.0 * B * H * T * T * D
    benchmark.group = f"attention fwd {label} t{threads}"
    record(benchmark, side, threads, flops=flops, shape=label)
    if side == "torch":
        ts = [torch.tensor(a) for a in (q, k, v)]
        with torch.no_grad():
            got = _run(benchmark, torch.nn.functional.scaled_dot_product_attention, *ts).numpy()
    elif side == "numpy":
        got = _run(benchmark, reference.attention_forward, q, k, v)[0]
    else:
        got = _run(benchmark, nn.ops.attention_forward, q, k, v)[0]
    _gflops(benchmark, flops)
    want = (reference if T <= 256 else nn.ops).attention_forward(
        *(a.astype(np.float64) for a in (q, k, v)))[0]
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * (np.abs(want).max() + 1))
