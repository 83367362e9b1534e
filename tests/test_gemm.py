"""GEMM: nanonet.ops.matmul / gemm against nanonet.reference, edge shapes, both dtypes, errors."""
import numpy as np
import pytest

import nanonet as nn
from nanonet import ops, reference

from .tolerances import TOL

# 1, primes, around MR (6, 12), NR (8, 16, 32), MC (72, 144), KC (256).
SIZES = [1, 2, 7, 13, 16, 17, 33, 143, 145, 257]
SHAPES = [(m, n, k) for m in (1, 7, 13, 145) for n in (1, 16, 17, 33) for k in (1, 15, 257)]
SHAPES += [(143, 257, 255), (256, 256, 256), (300, 7, 520), (5, 600, 3)]


def _operands(rng, m, n, k, ta, tb, dtype):
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
    return a, b


def _close(got, want, dtype, k):
    # Error of a K-term dot product grows like sqrt(K) * eps * |a||b|; the scale is the norm.
    scale = np.sqrt(max(k, 1)) * (np.abs(want).max() + 1.0)
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL[np.dtype(dtype).name]["gemm"] * scale)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("m,n,k", SHAPES)
def test_matmul_matches_reference(m, n, k, ta, tb, dtype):
    rng = np.random.default_rng(m * 10007 + n * 101 + k)
    a, b = _operands(rng, m, n, k, ta, tb, dtype)
    got = ops.matmul(a, b, transpose_a=ta, transpose_b=tb)
    want = reference.matmul(a.astype(np.float64), b.astype(np.float64), ta, tb)
    assert got.dtype == dtype and got.shape == (m, n)
    _close(got, want, dtype, k)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("isa", ["ref", "avx2", "avx512"])
def test_every_available_microkernel(isa, dtype):
    order = ["ref", "avx2", "avx512"]
    if order.index(isa) > order.index(ops.detect_isa()):
        pytest.skip(f"CPU lacks {isa}")
    rng = np.random.default_rng(3)
    before = ops.active_isa()
    try:
        ops.set_isa(isa)
        assert isa.split("_")[0] in ops.gemm_kernel_name(dtype)
        for m, n, k in [(1, 1, 1), (13, 33, 257), (145, 17, 15), (37, 100, 300)]:
            for ta in (False, True):
                for tb in (False, True):
                    a, b = _operands(rng, m, n, k, ta, tb, dtype)
                    want = reference.matmul(a.astype(np.float64), b.astype(np.float64), ta, tb)
                    _close(ops.matmul(a, b, ta, tb), want, dtype, k)
    finally:
        ops.set_isa(before)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,n,k", [(19, 29, 23), (37, 70, 300)])  # edge tiles; full 12x32 tiles
def test_gemm_alpha_beta_in_place(dtype, m, n, k):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    c = rng.standard_normal((m, n)).astype(dtype)
    want = reference.gemm(a, b, c.copy(), alpha=0.5, beta=-2.0)
    out = ops.gemm(a, b, c, alpha=0.5, beta=-2.0)
    assert out is c
    _close(c, want, dtype, k)


def test_beta_zero_never_reads_c():
    rng = np.random.default_rng(2)
    a = rng.standard_normal((20, 30)).astype(np.float32)
    b = rng.standard_normal((30, 40)).astype(np.float32)
    c = np.full((20, 40), np.nan, np.float32)
    ops.gemm(a, b, c, beta=0.0)
    assert np.isfinite(c).all()


def test_k_zero_scales_c():
    a = np.zeros((3, 0), np.float32)
    b = np.zeros((0, 4), np.float32)
    assert np.array_equal(ops.matmul(a, b), np.zeros((3, 4), np.float32))
    c = np.ones((3, 4), np.float32)
    ops.gemm(a, b, c, beta=3.0)
    assert np.array_equal(c, np.full((3, 4), 3.0, np.float32))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_strided_and_noncontiguous_inputs(dtype):
    rng = np.random.default_rng(4)
    big = rng.standard_normal((60, 50)).astype(dtype)
    a = big[3:20, 5:30]          # rows spaced by 50 elements: used in place
    b = big[::2, ::3][:25, :9]   # inner stride 3: copied
    c_f = np.asfortranarray(rng.standard_normal((25, 9)).astype(dtype))
    want = reference.matmul(a.astype(np.float64), b.astype(np.float64))
    _close(ops.matmul(a, b), want, dtype, 25)
    _close(ops.matmul(a, c_f), reference.matmul(a, c_f), dtype, 25)
    _close(ops.matmul(b.T, b.T, transpose_b=True), reference.matmul(b.T, b), dtype, 25)


def test_threads_agree():
    rng = np.random.default_rng(5)
    a = rng.standard_normal((300, 400)).astype(np.float32)
    b = rng.standard_normal((400, 350)).astype(np.float32)
    before = nn.get_num_threads()
    try:
        nn.set_num_threads(1)
        one = ops.matmul(a, b)
        nn.set_num_threads(2)
        two = ops.matmul(a, b)
    finally:
        nn.set_num_threads(before)
    # The K order of accumulation is fixed, so the results are identical.
    assert np.array_equal(one, two)


def test_errors_name_argument_and_shapes():
    a = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match=r"matmul: inner dimensions differ.*\(4, 3\)"):
        ops.matmul(a, a)
    with pytest.raises(TypeError, match="b must have the dtype of a"):
        ops.matmul(a, np.zeros((3, 2), np.float64))
    with pytest.raises(ValueError, match=r"a must be 2-D; got shape \(3,\)"):
        ops.matmul(np.zeros(3, np.float32), a)
    with pytest.raises(TypeError, match="a must be float32 or float64; got int64|a must be float32"):
        ops.matmul(np.zeros((2, 2), np.int64), np.zeros((2, 2), np.int64))
    with pytest.raises(ValueError, match=r"c must be \(M, N\) = \(4, 4\); got \(4, 5\)"):
        ops.gemm(a, a.T, np.zeros((4, 5), np.float32))
    with pytest.raises(TypeError):
        ops.gemm(a, a.T, np.zeros((4, 4), np.float64))  # c of another dtype is never copied
    with pytest.raises(ValueError, match="n must be >= 1"):
        nn.set_num_threads(0)
    with pytest.raises(ValueError, match="isa must be one of"):
        ops.set_isa("sse9")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (32, 512, 128), (7, 33, 300), (150, 17, 513)])
@pytest.mark.parametrize("ta,tb", [(False, False), (True, True), (False, True)])
def test_prepacked_serial_path(m, n, k, ta, tb, dtype):
    """pack_b + gemm_packed_serial (used inside the LSTM's parallel region) over split panels."""
    from nanonet import _core
    rng = np.random.default_rng(m + n + k)
    a, b = _operands(rng, m, n, k, ta, tb, dtype)
    want = reference.matmul(a.astype(np.float64), b.astype(np.float64), ta, tb)
    for split in (0, 1, 3):
        _close(_core.matmul_prepacked(a, b, ta, tb, split), want, dtype, k)


@pytest.mark.parametrize("isa", ["avx2", "avx512"])
@pytest.mark.parametrize("k", [5, 300])  # 300 > KC: the edge kernels accumulate with beta = 1
def test_edge_row_kernels_give_the_full_kernels_bits(isa, k):
    """A block's last m < MR rows run a kernel of exactly m rows: every row of an M-row product
    equals (bitwise) the same row of the product padded to whole MR-row tiles, where the full
    kernel computed it."""
    order = ["ref", "avx2", "avx512"]
    if order.index(isa) > order.index(ops.detect_isa()):
        pytest.skip(f"CPU lacks {isa}")
    rng = np.random.default_rng(k)
    before_isa, before_threads = ops.active_isa(), nn.get_num_threads()
    try:
        ops.set_isa(isa)
        nn.set_num_threads(1)
        mr = 12 if isa == "avx512" else 6
        for n in (32, 45, 7):
            b = rng.standard_normal((k, n)).astype(np.float32)
            for tb in (False, True):
                bb = np.ascontiguousarray(b.T) if tb else b
                for m in list(range(1, mr)) + [mr + 4, 5 * mr + 4]:
                    pad = -(-m // mr) * mr
                    a = rng.standard_normal((pad, k)).astype(np.float32)
                    full = ops.matmul(a, bb, transpose_b=tb)
                    edge = ops.matmul(a[:m], bb, transpose_b=tb)
                    assert np.array_equal(edge, full[:m]), (m, n, tb)
    finally:
        ops.set_isa(before_isa)
        nn.set_num_threads(before_threads)
