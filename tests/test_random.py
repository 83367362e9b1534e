"""DP-SGD's noise generator: nanonet.ops.philox4x32 against the published known-answer vectors
and the NumPy twin, ops.gaussian_noise / gaussian_noise_acc against nanonet.reference and the
scalar C++ specification (_ref) on every ISA path, moments and the distribution, independence of
streams, thread-count invariance, the optimizer's counter scheme, and bad arguments."""
import math

import numpy as np
import pytest

import nanonet as nn
from nanonet import ops, reference

# Random123's kat_vectors (Salmon et al. 2011): counter (c0..c3), key (k0, k1), output.
KAT = [((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
       ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
       ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1))]

ISAS = ["ref", "avx2", "avx512"]
KEY = 0x0123456789ABCDEF
# Float32 arithmetic for the normals (random.hpp): |z| <= 6.7 with a few ulp in r and the angle.
ATOL = 1e-5


def _key(k0, k1):
    return k0 | (k1 << 32)


@pytest.fixture(params=ISAS)
def isa(request):
    if ISAS.index(request.param) > ISAS.index(ops.detect_isa()):
        pytest.skip(f"CPU lacks {request.param}")
    before = ops.active_isa()
    ops.set_isa(request.param)
    yield request.param
    ops.set_isa(before)


@pytest.mark.parametrize("ctr, key, want", KAT)
def test_philox_known_answers(ctr, key, want):
    c = np.array([ctr], dtype=np.uint32)
    assert ops.philox4x32(c, _key(*key)).tolist() == [list(want)]
    assert reference.philox4x32(c, _key(*key)).tolist() == [list(want)]


def test_philox_matches_twin_on_many_counters():
    rng = np.random.default_rng(0)
    c = rng.integers(0, 1 << 32, size=(1000, 4), dtype=np.uint64).astype(np.uint32)
    key = int(rng.integers(0, 1 << 63)) * 2 + 1
    np.testing.assert_array_equal(ops.philox4x32(c, key), reference.philox4x32(c, key))


# n around the chunk (64), the buffer (1024) and the parallel threshold (65536); counters that
# carry from the low 64 bits into the high ones inside a chunk.
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n, counter", [(1, 0), (5, 7), (63, 0), (64, 1 << 64), (65, 3),
                                        (1023, 2**64 - 5), (1025, 2**128 - 2**20), (3000, 99),
                                        (70001, 12345)])
def test_noise_matches_reference_on_every_isa(isa, n, counter, dtype):
    want = reference.gaussian_noise((n,), KEY, counter, 1.0, np.float64)
    got = ops.gaussian_noise((n,), KEY, counter, 1.0, dtype)
    assert got.dtype == dtype and got.shape == (n,)
    np.testing.assert_allclose(got, want, rtol=0, atol=ATOL)
    # the scalar C++ specification computes in double (u1 as the kernel, in float)
    ref = ops.gaussian_noise((n,), KEY, counter, 1.0, dtype, _ref=True)
    np.testing.assert_allclose(ref, want, rtol=0, atol=1e-6 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_noise_acc_is_scale_times_out_plus_std_noise(isa, dtype):
    rng = np.random.default_rng(1)
    out = rng.standard_normal((37, 29)).astype(dtype)  # 1073 elements: partial last chunk
    want = reference.gaussian_noise_acc(out.astype(np.float64), KEY, 5, 0.7, 1 / 16)
    got = ops.gaussian_noise_acc(out, KEY, 5, 0.7, 1 / 16)
    assert got is out
    np.testing.assert_allclose(out, want, rtol=0, atol=ATOL * 0.7 / 16 + 1e-6 * np.abs(want).max())
    ref = rng.standard_normal(100).astype(dtype)
    want = reference.gaussian_noise_acc(ref.astype(np.float64), KEY, 0, 2.0, 3.0)
    np.testing.assert_allclose(ops.gaussian_noise_acc(ref, KEY, 0, 2.0, 3.0, _ref=True), want,
                               rtol=1e-6, atol=1e-5)
    std = ops.gaussian_noise((10, 10), KEY, 9, 2.5, dtype)
    np.testing.assert_allclose(std, 2.5 * ops.gaussian_noise((10, 10), KEY, 9, 1.0, dtype),
                               rtol=1e-6)


def test_noise_moments_and_distribution():
    n = 1 << 20
    z = ops.gaussian_noise((n,), KEY, 0, 1.0, np.float64)
    assert abs(z.mean()) < 5 / math.sqrt(n)
    assert abs(z.std() - 1) < 5 * math.sqrt(0.5 / n)
    assert abs(np.mean(z ** 3)) < 5 * math.sqrt(15 / n)            # skewness 0
    assert abs(np.mean(z ** 4) - 3) < 5 * math.sqrt(96 / n)        # kurtosis 3
    # chi-square over 40 equiprobable-ish bins of [-4, 4] plus the two tails
    edges = np.concatenate([[-np.inf], np.linspace(-4, 4, 41), [np.inf]])
    cdf = np.array([0.5 * (1 + math.erf(e / math.sqrt(2))) if np.isfinite(e) else float(e > 0)
                    for e in edges])
    expected = n * np.diff(cdf)
    counts = np.histogram(z, edges)[0]
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 100, chi2  # 41 degrees of freedom: P(chi2 > 100) ~ 1e-6
    assert np.abs(z).max() < math.sqrt(64 * math.log(2)) + 1e-4


def test_streams_are_independent():
    n = 1 << 18
    a = ops.gaussian_noise((n,), KEY, 0)
    b = ops.gaussian_noise((n,), KEY, ops.noise_counters(n))  # the next stream
    c = ops.gaussian_noise((n,), KEY + 1, 0)                  # another key
    d = ops.gaussian_noise((n,), KEY, 1 << 64)                # the next step's counters
    bound = 5 / math.sqrt(n)
    for other in (b, c, d):
        assert abs(np.corrcoef(a, other)[0, 1]) < bound
    # within one stream: neighbours, and the cos / sin of one Box-Muller pair (16 apart)
    for lag in (1, 16, 32, 64):
        assert abs(np.corrcoef(a[:-lag], a[lag:])[0, 1]) < bound
    # squares too (the pair shares its radius: uncorrelated, not independent, by design)
    assert abs(np.corrcoef(a[:-1] ** 2, a[1:] ** 2)[0, 1]) < bound


def test_noise_is_a_function_of_the_element_index():
    whole = ops.gaussian_noise((1000,), KEY, 40)
    np.testing.assert_array_equal(ops.gaussian_noise((100,), KEY, 40), whole[:100])
    # the second chunk of 64 starts 16 counters later
    np.testing.assert_array_equal(ops.gaussian_noise((64,), KEY, 56), whole[64:128])
    np.testing.assert_array_equal(ops.gaussian_noise((10, 100), KEY, 40).ravel(),
                                  ops.gaussian_noise((1000,), KEY, 40))
    assert ops.noise_counters(0) == 0 and ops.noise_counters(1) == 16
    assert ops.noise_counters(64) == 16 and ops.noise_counters(65) == 32
    assert ops.gaussian_noise((0,), KEY).shape == (0,)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_noise_does_not_depend_on_the_thread_count(dtype):
    before = nn.get_num_threads()
    try:
        out = {}
        for t in (1, 2, 3):
            nn.set_num_threads(t)
            g = np.ones(300_001, dtype)
            out[t] = (ops.gaussian_noise((300_001,), KEY, 7, 1.0, dtype),
                      ops.gaussian_noise_acc(g, KEY, 7, 0.5, 0.25))
    finally:
        nn.set_num_threads(before)
    for t in (2, 3):
        np.testing.assert_array_equal(out[t][0], out[1][0])
        np.testing.assert_array_equal(out[t][1], out[1][1])


def test_privatize_uses_fresh_counters_per_parameter_and_step():
    opt = nn.optimizers.DPSGD(l2_norm_clip=0.5, noise_multiplier=2.0)
    opt._noise_key = KEY
    p1, p2 = np.zeros((3, 50)), np.zeros(7, np.float32)
    g1 = np.full((3, 50), 4.0)
    first = opt.privatize({id(p1): g1.copy()}, [p1, p2], 8)
    n1 = ops.noise_counters(p1.size)
    want1 = reference.gaussian_noise_acc(g1.copy(), KEY, 0, 1.0, 1 / 8)
    want2 = reference.gaussian_noise((7,), KEY, n1, 1.0 / 8, np.float32)
    np.testing.assert_allclose(first[id(p1)], want1, atol=1e-6)
    np.testing.assert_allclose(first[id(p2)], want2, atol=1e-6)
    assert first[id(p2)].dtype == np.float32
    second = opt.privatize({}, [p1, p2], 8)  # the next step: counters (1 << 64) + offset
    np.testing.assert_allclose(second[id(p1)],
                               reference.gaussian_noise((3, 50), KEY, 1 << 64, 1.0 / 8,
                                                        np.float64), atol=1e-6)


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="key must be in"):
        ops.gaussian_noise((3,), -1)
    with pytest.raises(ValueError, match="key must be in"):
        ops.gaussian_noise((3,), 1 << 64)
    with pytest.raises(TypeError, match="key must be an int"):
        ops.gaussian_noise((3,), 1.5)
    with pytest.raises(ValueError, match="counter must be in"):
        ops.gaussian_noise((3,), 1, 1 << 128)
    with pytest.raises(ValueError, match="std must be a finite number >= 0"):
        ops.gaussian_noise((3,), 1, 0, -1.0)
    with pytest.raises(ValueError, match="std must be a finite number"):
        ops.gaussian_noise_acc(np.zeros(3), 1, 0, float("nan"))
    with pytest.raises(ValueError, match="scale must be a finite number"):
        ops.gaussian_noise_acc(np.zeros(3), 1, 0, 1.0, float("inf"))
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        ops.gaussian_noise((3,), 1, dtype=np.int32)
    with pytest.raises(ValueError, match="shape"):
        ops.gaussian_noise((-3,), 1)
    with pytest.raises(TypeError, match="out must be a numpy.ndarray"):
        ops.gaussian_noise_acc([0.0, 1.0], 1, 0, 1.0)
    with pytest.raises(TypeError, match="out must be float32 or float64"):
        ops.gaussian_noise_acc(np.zeros(3, np.int64), 1, 0, 1.0)
    with pytest.raises(ValueError, match="out must be C-contiguous"):
        ops.gaussian_noise_acc(np.zeros((4, 4))[:, ::2], 1, 0, 1.0)
    ro = np.zeros(3)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out must be writeable"):
        ops.gaussian_noise_acc(ro, 1, 0, 1.0)
    with pytest.raises(TypeError, match="counters must be uint32"):
        ops.philox4x32(np.zeros((2, 4), np.int64), 0)
    with pytest.raises(ValueError, match=r"counters must be \(n, 4\)"):
        ops.philox4x32(np.zeros((2, 3), np.uint32), 0)
