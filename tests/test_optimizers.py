"""Optimizers: in-place SGD / Adam(W) / RMSprop / Adagrad / Adamax / Nadam / Lion updates,
sum_squares and the L1L2 regulariser.

Each update runs a short trajectory (fresh random gradient every step, random starting slots)
through nanonet.ops and nanonet.reference side by side; sizes cross the threading threshold.
"""
import re

import numpy as np
import pytest

import nanonet as nn
from nanonet import _core, ops, reference

from .tolerances import TOL

DTYPES = [np.float32, np.float64]
SIZES = [1, 7, 16, 17, 1000, 100003]  # 100003 > kOptimParallelMin (32768): threaded
STEPS = 6


def _close(got, want, dtype, what=""):
    tol = TOL[np.dtype(dtype).name]["optimizer"]
    # Relative per element, with an absolute floor at the array's scale: after a few steps an
    # element near zero is the difference of two O(1) numbers.
    scale = np.abs(want).max(initial=0.0) + 1.0
    if not (np.abs(got - want) <= tol * (np.abs(want) + scale)).all():  # fast path when close
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * scale, err_msg=what)


def _rand(rng, shape, dtype, lo=None, hi=None):
    if lo is None:
        return rng.standard_normal(shape).astype(dtype)
    return rng.uniform(lo, hi, shape).astype(dtype)


def _shape(n):
    # Parameters have any shape; use a 2-D one where n allows, so shapes are compared too.
    return (n // 2, 2) if n % 2 == 0 and n > 2 else (n,)


def _pairs(arrays):
    """Two independent copies (ops side, reference side) of every array (None stays None)."""
    return ([None if a is None else a.copy() for a in arrays],
            [None if a is None else a.copy() for a in arrays])


# --------------------------------------------------------------------------------------------
# trajectories against the reference

SGD_CONFIGS = [
    dict(momentum=0.0),
    dict(momentum=0.9),
    dict(momentum=0.5, nesterov=True),
    dict(momentum=0.9, nesterov=True, grad_scale=0.3, clipvalue=0.25),
    dict(momentum=0.0, grad_scale=2.0, clipvalue=0.5),
    dict(momentum=1.0),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("cfg", SGD_CONFIGS, ids=lambda c: repr(c))
def test_sgd_trajectory_matches_reference(cfg, n, dtype):
    rng = np.random.default_rng(n + 11)
    shape = _shape(n)
    p0 = _rand(rng, shape, dtype)
    v0 = _rand(rng, shape, dtype) if cfg["momentum"] > 0 else None
    (p, v), (rp, rv) = _pairs([p0, v0])
    for step in range(STEPS):
        g = _rand(rng, shape, dtype)
        lr = 0.01 * (step + 1)
        ops.sgd_update(p, g, v, lr, **cfg)
        reference.sgd_update(rp, g, rv, lr, **cfg)
        _close(p, rp, dtype, f"param, step {step}")
        if v is not None:
            _close(v, rv, dtype, f"velocity, step {step}")
    assert not np.array_equal(p, p0)


ADAM_CONFIGS = [
    dict(),
    dict(beta_1=0.5, beta_2=0.75, epsilon=1e-3),
    dict(weight_decay=0.004),
    dict(grad_scale=0.4, clipvalue=0.3),
    dict(weight_decay=0.01, grad_scale=1.7, clipvalue=1.0, epsilon=0.0),
    dict(beta_1=0.0, beta_2=0.0),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("cfg", ADAM_CONFIGS, ids=lambda c: repr(c))
def test_adam_trajectory_matches_reference(cfg, n, dtype):
    rng = np.random.default_rng(n + 23)
    shape = _shape(n)
    p0 = _rand(rng, shape, dtype)
    # Random slots: m anywhere, v > 0 and not tiny, so that m / sqrt(v) is well conditioned.
    (p, m, v), (rp, rm, rv) = _pairs([p0, _rand(rng, shape, dtype),
                                      _rand(rng, shape, dtype, 0.2, 1.5)])
    first = int(rng.integers(1, 50))
    for step in range(first, first + STEPS):
        g = _rand(rng, shape, dtype)
        ops.adam_update(p, g, m, v, 0.01, step, **cfg)
        reference.adam_update(rp, g, rm, rv, 0.01, step, **cfg)
        _close(p, rp, dtype, f"param, step {step}")
        _close(m, rm, dtype, f"m, step {step}")
        _close(v, rv, dtype, f"v, step {step}")
    assert not np.array_equal(p, p0)


RMSPROP_CONFIGS = [
    dict(),
    dict(momentum=0.9),
    dict(centered=True),
    dict(centered=True, momentum=0.5, rho=0.8),
    dict(grad_scale=0.5, clipvalue=0.4, epsilon=1e-4),
    dict(centered=True, momentum=0.9, grad_scale=3.0, clipvalue=2.0),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("cfg", RMSPROP_CONFIGS, ids=lambda c: repr(c))
def test_rmsprop_trajectory_matches_reference(cfg, n, dtype):
    rng = np.random.default_rng(n + 37)
    shape = _shape(n)
    p0 = _rand(rng, shape, dtype)
    ag0 = _rand(rng, shape, dtype) if cfg.get("centered") else None
    # A consistent random state: velocity (mean of g^2) exceeds average_grad^2 (squared mean).
    vel0 = _rand(rng, shape, dtype, 0.2, 1.5)
    if ag0 is not None:
        vel0 = (vel0 + np.square(ag0)).astype(dtype)
    mb0 = _rand(rng, shape, dtype) if cfg.get("momentum", 0.0) > 0 else None
    (p, vel, mb, ag), (rp, rvel, rmb, rag) = _pairs([p0, vel0, mb0, ag0])
    for step in range(STEPS):
        g = _rand(rng, shape, dtype)
        ops.rmsprop_update(p, g, vel, 0.01, momentum_buf=mb, average_grad=ag, **cfg)
        reference.rmsprop_update(rp, g, rvel, 0.01, momentum_buf=rmb, average_grad=rag, **cfg)
        _close(p, rp, dtype, f"param, step {step}")
        _close(vel, rvel, dtype, f"velocity, step {step}")
        if mb is not None:
            _close(mb, rmb, dtype, f"momentum_buf, step {step}")
        if ag is not None:
            _close(ag, rag, dtype, f"average_grad, step {step}")
    assert not np.array_equal(p, p0)


def test_clipvalue_and_grad_scale_semantics():
    # g' = clip(g * grad_scale, -clipvalue, clipvalue): plain SGD shows it directly.
    g = np.array([-4.0, -1.0, -0.1, 0.0, 0.2, 3.0], np.float64)
    p = np.zeros_like(g)
    ops.sgd_update(p, g, None, 1.0, grad_scale=0.5, clipvalue=1.0)
    np.testing.assert_array_equal(p, -np.array([-1.0, -0.5, -0.05, 0.0, 0.1, 1.0]))
    # clipvalue 0 is off; a NaN gradient stays NaN (as np.clip leaves it).
    p = np.zeros(3)
    ops.sgd_update(p, np.array([1e6, np.nan, -2.0]), None, 1.0, clipvalue=0.0)
    assert p[0] == -1e6 and np.isnan(p[1]) and p[2] == 2.0
    p = np.zeros(2)
    ops.sgd_update(p, np.array([np.nan, 5.0]), None, 1.0, clipvalue=1.0)
    assert np.isnan(p[0]) and p[1] == -1.0


def test_unused_slots_are_untouched():
    rng = np.random.default_rng(5)
    p, g, vel, mb, ag = (rng.standard_normal(9) for _ in range(5))
    vel = np.abs(vel)
    mb0, ag0 = mb.copy(), ag.copy()
    ops.rmsprop_update(p, g, vel, 0.1, momentum=0.0, centered=False, momentum_buf=mb,
                       average_grad=ag)
    np.testing.assert_array_equal(mb, mb0)
    np.testing.assert_array_equal(ag, ag0)
    vel_before = vel.copy()
    ops.sgd_update(p, g, vel, 0.1, momentum=0.0)  # velocity is not touched without momentum
    np.testing.assert_array_equal(vel, vel_before)


# --------------------------------------------------------------------------------------------
# the fast kernels against their scalar C++ twins, and thread counts


def _run_all(fns_suffix, dtype, n, seed):
    """Runs every update once through _core.<name><suffix>; returns all arrays it wrote."""
    rng = np.random.default_rng(seed)
    out = []

    def r(lo=None, hi=None):
        return _rand(rng, n, dtype, lo, hi)

    def f(name):
        return getattr(_core, name + fns_suffix)

    g = r()
    for cfg in SGD_CONFIGS:
        p, v = r(), r()
        f("sgd_update")(p, g, v, 0.05, cfg.get("momentum", 0.0), cfg.get("nesterov", False),
                        cfg.get("grad_scale", 1.0), cfg.get("clipvalue", 0.0))
        out += [p, v]
    for cfg in ADAM_CONFIGS:
        p, m, v = r(), r(), r(0.2, 1.5)
        c = dict(dict(beta_1=0.9, beta_2=0.999, epsilon=1e-7, weight_decay=0.0, grad_scale=1.0,
                      clipvalue=0.0), **cfg)
        f("adam_update")(p, g, m, v, 0.01, 7, c["beta_1"], c["beta_2"], c["epsilon"],
                         c["weight_decay"], c["grad_scale"], c["clipvalue"])
        out += [p, m, v]
    for cfg in RMSPROP_CONFIGS:
        p, ag, mb = r(), r(), r()
        vel = (r(0.2, 1.5) + np.square(ag)).astype(dtype)
        c = dict(dict(rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, grad_scale=1.0,
                      clipvalue=0.0), **cfg)
        f("rmsprop_update")(p, g, vel, 0.01, c["rho"], c["momentum"], c["epsilon"],
                            c["centered"], mb, ag, c["grad_scale"], c["clipvalue"])
        out += [p, vel, mb, ag]
    for l1, l2 in [(0.01, 0.0), (0.0, 0.02), (0.01, 0.02)]:
        acc = r()
        f("l1_l2_grad_acc")(acc, g, l1, l2)
        out.append(acc)
    return out


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [17, 40009])  # 40009 > kOptimParallelMin: threaded
def test_fast_kernels_equal_scalar_twins(n, dtype):
    # Elementwise updates compute every element with the same expression: bit-identical.
    fast = _run_all("", dtype, n, seed=n)
    ref = _run_all("_ref", dtype, n, seed=n)
    for a, b in zip(fast, ref):
        np.testing.assert_array_equal(a, b)
    x = _rand(np.random.default_rng(1), n, dtype)
    tol = TOL[np.dtype(dtype).name]["reduction"]
    assert _core.sum_squares(x) == pytest.approx(_core.sum_squares_ref(x), rel=tol)
    assert _core.l1_l2_value(x, 0.3, 0.7) == pytest.approx(_core.l1_l2_value_ref(x, 0.3, 0.7),
                                                           rel=tol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_one_and_two_threads_bit_identical(dtype):
    n = 40009  # > kOptimParallelMin (32768): threaded, 10 blocks
    before = nn.get_num_threads()
    try:
        nn.set_num_threads(1)
        one = _run_all("", dtype, n, seed=3)
        x = _rand(np.random.default_rng(4), n, dtype)
        s1, r1 = ops.sum_squares(x), ops.l1_l2_value(x, 0.1, 0.2)
        nn.set_num_threads(2)
        two = _run_all("", dtype, n, seed=3)
        s2, r2 = ops.sum_squares(x), ops.l1_l2_value(x, 0.1, 0.2)
    finally:
        nn.set_num_threads(before)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)
    assert s1 == s2 and r1 == r2  # fixed chunks, ordered reduction


# --------------------------------------------------------------------------------------------
# sum_squares and the regulariser


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 4095, 4097, 100003])
def test_sum_squares_matches_numpy(n, dtype):
    x = _rand(np.random.default_rng(n), n, dtype)
    want = float(np.sum(x.astype(np.float64) ** 2))
    got = ops.sum_squares(x)
    assert isinstance(got, float)
    assert got == pytest.approx(want, rel=TOL[np.dtype(dtype).name]["reduction"], abs=1e-300)
    assert got == pytest.approx(reference.sum_squares(x), rel=TOL["float64"]["reduction"])


def test_sum_squares_accepts_strided_read_only_and_nd():
    x = np.random.default_rng(2).standard_normal((40, 30))
    view = x[::3, 1::2]
    view.flags.writeable = False
    assert ops.sum_squares(view) == pytest.approx(np.sum(view ** 2), rel=1e-12)
    assert ops.sum_squares(x.astype(np.float32)) == pytest.approx(
        np.sum(x.astype(np.float32).astype(np.float64) ** 2), rel=1e-12)
    assert ops.sum_squares([3.0, 4.0]) == 25.0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 7, 17, 1000, 100003])
@pytest.mark.parametrize("l1,l2", [(0.01, 0.0), (0.0, 0.003), (0.02, 0.05)])
def test_l1_l2_value_and_grad_match_reference(l1, l2, n, dtype):
    rng = np.random.default_rng(n + 7)
    p = _rand(rng, _shape(n), dtype)
    p.flat[0] = 0.0  # sign(0) = 0
    got = ops.l1_l2_value(p, l1=l1, l2=l2)
    assert isinstance(got, float)
    assert got == pytest.approx(reference.l1_l2_value(p, l1, l2),
                                rel=TOL[np.dtype(dtype).name]["reduction"])
    g0 = _rand(rng, p.shape, dtype)
    g, rg = g0.copy(), g0.copy()
    ops.l1_l2_grad_acc(g, p, l1=l1, l2=l2)
    reference.l1_l2_grad_acc(rg, p, l1, l2)
    _close(g, rg, dtype)


def test_l1_l2_grad_equals_finite_differences():
    rng = np.random.default_rng(9)
    p = rng.standard_normal((5, 3))
    p[np.abs(p) < 0.05] = 0.3  # keep away from the kink of |p|
    l1, l2 = 0.07, 0.4
    r = rng.standard_normal()  # random upstream scale of the loss term
    grad = np.zeros_like(p)
    ops.l1_l2_grad_acc(grad, p, l1, l2)
    grad *= r
    h = 1e-6
    fd = np.zeros_like(p)
    for i in range(p.size):
        hi, lo = p.copy(), p.copy()
        hi.flat[i] += h
        lo.flat[i] -= h
        fd.flat[i] = r * (ops.l1_l2_value(hi, l1, l2) - ops.l1_l2_value(lo, l1, l2)) / (2 * h)
    err = np.linalg.norm(grad - fd) / np.linalg.norm(fd)
    assert err < TOL["float64"]["grad_fd"]


def test_l1_l2_zero_factor_terms_are_skipped():
    # As Keras: a zero factor adds nothing, even for inf (0 * inf would be NaN).
    p = np.array([np.inf, 1.0])
    assert ops.l1_l2_value(p, l1=0.0, l2=0.0) == 0.0
    g = np.zeros(2)
    ops.l1_l2_grad_acc(g, p, l1=0.5, l2=0.0)
    np.testing.assert_array_equal(g, [0.5, 0.5])
    g = np.ones(3)
    ops.l1_l2_grad_acc(g, np.array([-2.0, 0.0, np.nan]), l1=0.5, l2=0.25)
    np.testing.assert_array_equal(g[:2], [1 - 0.5 - 1.0, 1.0])
    assert np.isnan(g[2])


# --------------------------------------------------------------------------------------------
# in place really is in place


def _ptr(a):
    return a.__array_interface__["data"][0]


@pytest.mark.parametrize("dtype", DTYPES)
def test_updates_are_in_place(dtype):
    rng = np.random.default_rng(6)
    shape = (13, 5)
    arrs = {k: _rand(rng, shape, dtype, 0.2, 1.0) for k in ("p", "m", "v", "vel", "mb", "ag")}
    before = {k: (a, _ptr(a), a.copy()) for k, a in arrs.items()}
    g = _rand(rng, shape, dtype)
    assert ops.adam_update(arrs["p"], g, arrs["m"], arrs["v"], 0.1, 1) is None
    ops.sgd_update(arrs["p"], g, arrs["vel"], 0.1, momentum=0.9)
    ops.rmsprop_update(arrs["p"], g, arrs["v"], 0.1, momentum=0.5, centered=True,
                       momentum_buf=arrs["mb"], average_grad=arrs["ag"])
    for k, (obj, ptr, old) in before.items():
        assert arrs[k] is obj and _ptr(obj) == ptr and obj.shape == shape and obj.dtype == dtype
        assert not np.array_equal(obj, old), k
    gacc = g.copy()
    ptr = _ptr(gacc)
    ops.l1_l2_grad_acc(gacc, arrs["p"], l1=0.1)
    assert _ptr(gacc) == ptr and not np.array_equal(gacc, g)


@pytest.mark.parametrize("dtype", DTYPES)
def test_grad_may_be_read_only_strided_or_a_list(dtype):
    rng = np.random.default_rng(8)
    big = _rand(rng, (12, 10), dtype)
    g = big[::2, ::2]  # (6, 5), not contiguous
    g.flags.writeable = False
    p, m, v = _rand(rng, (6, 5), dtype), _rand(rng, (6, 5), dtype), _rand(rng, (6, 5), dtype, 0.1, 1)
    (rp, rm, rv) = p.copy(), m.copy(), v.copy()
    ops.adam_update(p, g, m, v, 0.01, 3)
    reference.adam_update(rp, np.ascontiguousarray(g), rm, rv, 0.01, 3)
    _close(p, rp, dtype)
    q = np.zeros(3, np.float32)
    ops.sgd_update(q, [1.0, 2.0, 3.0], None, 0.5)
    np.testing.assert_array_equal(q, [-0.5, -1.0, -1.5])


def test_wrong_param_or_slot_raises_instead_of_updating_a_copy():
    p32, g32 = np.ones(6, np.float32), np.ones(6, np.float32)
    p64, g64 = np.ones(6), np.ones(6)
    # dtype
    with pytest.raises(TypeError, match="grad must have the dtype of param"):
        ops.adam_update(p64, g32, np.zeros(6), np.zeros(6), 0.1, 1)
    with pytest.raises(TypeError, match="m must have the dtype of grad"):
        ops.adam_update(p32, g32, np.zeros(6), np.zeros(6, np.float32), 0.1, 1)
    with pytest.raises(TypeError, match="velocity must have the dtype of grad"):
        ops.sgd_update(p32, g32, np.zeros(6), 0.1, momentum=0.9)
    with pytest.raises(TypeError, match="param must be float32 or float64; got int64"):
        ops.sgd_update(np.ones(6, np.int64), np.ones(6, np.int64), None, 0.1)
    with pytest.raises(TypeError, match="param must be a numpy.ndarray"):
        ops.sgd_update([1.0, 2.0], [1.0, 2.0], None, 0.1)
    with pytest.raises(TypeError, match="momentum_buf must be a numpy.ndarray"):
        ops.rmsprop_update(p64, g64, np.ones(6), 0.1, momentum=0.5, momentum_buf=[0.0] * 6)
    # layout
    wide = np.ones((6, 2))
    with pytest.raises(ValueError, match="param must be C-contiguous"):
        ops.sgd_update(wide[:, 0], g64, None, 0.1)
    with pytest.raises(ValueError, match="v must be C-contiguous"):
        ops.adam_update(p64, g64, np.zeros(6), wide[:, 1], 0.1, 1)
    with pytest.raises(ValueError, match="param must be C-contiguous"):
        ops.sgd_update(np.asfortranarray(np.ones((3, 2))), np.ones((3, 2)), None, 0.1)
    ro = np.ones(6)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="param must be writeable"):
        ops.sgd_update(ro, g64, None, 0.1)
    with pytest.raises(ValueError, match="average_grad must be writeable"):
        ops.rmsprop_update(p64, g64, np.ones(6), 0.1, centered=True, average_grad=ro)
    with pytest.raises(ValueError, match="grad must be writeable"):
        ops.l1_l2_grad_acc(ro, p64, l1=0.1)
    # shape
    with pytest.raises(ValueError, match=r"param must have the shape of grad \(2, 3\); got \(6,\)"):
        ops.sgd_update(p64, np.ones((2, 3)), None, 0.1)
    with pytest.raises(ValueError, match=r"m must have the shape of grad \(6,\); got \(5,\)"):
        ops.adam_update(p64, g64, np.zeros(5), np.zeros(6), 0.1, 1)
    with pytest.raises(ValueError, match=r"grad must have the shape of param"):
        ops.l1_l2_grad_acc(np.zeros(5), p64, l2=0.1)
    # aliasing: one array as two slots would be updated twice per element
    m = np.zeros(6)
    with pytest.raises(ValueError, match="m and v share memory"):
        ops.adam_update(p64, g64, m, m, 0.1, 1)
    with pytest.raises(ValueError, match="param and grad share memory"):
        ops.sgd_update(p64, p64, None, 0.1)
    # missing slots
    with pytest.raises(ValueError, match="velocity is required when momentum > 0"):
        ops.sgd_update(p64, g64, None, 0.1, momentum=0.9)
    with pytest.raises(ValueError, match="momentum_buf is required when momentum > 0"):
        ops.rmsprop_update(p64, g64, np.ones(6), 0.1, momentum=0.9)
    with pytest.raises(ValueError, match="average_grad is required when centered"):
        ops.rmsprop_update(p64, g64, np.ones(6), 0.1, centered=True)
    # nothing above touched the arrays
    np.testing.assert_array_equal(p64, np.ones(6))
    np.testing.assert_array_equal(p32, np.ones(6, np.float32))


def test_binding_checks_without_ops():
    # The compiled layer checks on its own (noconvert): no silent copy from any caller.
    p = np.ones(4)
    with pytest.raises(TypeError):
        _core.sgd_update([1.0, 1.0, 1.0, 1.0], np.ones(4), None, 0.1)
    with pytest.raises(TypeError, match="grad must have the dtype of param|param must have"):
        _core.sgd_update(np.ones(4, np.float32), np.ones(4), None, 0.1)
    with pytest.raises(ValueError, match="grad must be C-contiguous"):
        _core.sgd_update(p, np.ones(8)[::2], None, 0.1)
    with pytest.raises(ValueError, match="x must be C-contiguous"):
        _core.sum_squares(np.ones(8)[::2])


# --------------------------------------------------------------------------------------------
# validation


def _arrays(n=4):
    return np.ones(n), np.ones(n), np.ones(n), np.ones(n)


BAD = [
    # (op, kwargs, message)
    ("sgd", dict(lr=-1.0), r"sgd_update: lr must be >= 0 and finite; got -1"),
    ("sgd", dict(lr=float("inf")), r"lr must be >= 0 and finite; got inf"),
    ("sgd", dict(lr=float("nan")), r"lr must be >= 0 and finite; got nan"),
    ("sgd", dict(momentum=1.5), r"sgd_update: momentum must be in \[0, 1\]; got 1.5"),
    ("sgd", dict(momentum=-0.1), r"momentum must be in \[0, 1\]; got -0.1"),
    ("sgd", dict(grad_scale=-1.0), r"grad_scale must be >= 0 and finite; got -1"),
    ("sgd", dict(grad_scale=float("inf")), r"grad_scale must be >= 0 and finite; got inf"),
    ("sgd", dict(clipvalue=-0.5), r"clipvalue must be >= 0 \(0 = off\); got -0.5"),
    ("adam", dict(lr=-0.1), r"adam_update: lr must be >= 0 and finite; got -0.1"),
    ("adam", dict(step=0), r"adam_update: step must be >= 1; got 0"),
    ("adam", dict(beta_1=1.0), r"adam_update: beta_1 must be in \[0, 1\); got 1"),
    ("adam", dict(beta_1=-0.5), r"beta_1 must be in \[0, 1\); got -0.5"),
    ("adam", dict(beta_2=1.2), r"beta_2 must be in \[0, 1\); got 1.2"),
    ("adam", dict(epsilon=-1e-7), r"epsilon must be >= 0 and finite; got -1e-07"),
    ("adam", dict(weight_decay=-0.1), r"weight_decay must be >= 0 and finite; got -0.1"),
    ("adam", dict(clipvalue=float("nan")), r"clipvalue must be >= 0 \(0 = off\); got nan"),
    ("rmsprop", dict(lr=-1e-3), r"rmsprop_update: lr must be >= 0 and finite; got -0.001"),
    ("rmsprop", dict(rho=1.0), r"rmsprop_update: rho must be in \[0, 1\); got 1"),
    ("rmsprop", dict(momentum=2.0), r"momentum must be in \[0, 1\]; got 2"),
    ("rmsprop", dict(epsilon=float("inf")), r"epsilon must be >= 0 and finite; got inf"),
    ("l1_l2_value", dict(l1=-0.1), r"l1_l2_value: l1 must be >= 0 and finite; got -0.1"),
    ("l1_l2_value", dict(l2=float("nan")), r"l1_l2_value: l2 must be >= 0 and finite; got nan"),
    ("l1_l2_grad_acc", dict(l2=-1.0), r"l1_l2_grad_acc: l2 must be >= 0 and finite; got -1"),
]


@pytest.mark.parametrize("op,kwargs,msg", BAD, ids=[f"{b[0]}-{b[1]}" for b in BAD])
def test_validation_errors_name_argument_and_value(op, kwargs, msg):
    p, g, s1, s2 = _arrays()
    before = p.copy()
    with pytest.raises(ValueError, match=msg):
        if op == "sgd":
            ops.sgd_update(p, g, s1, **dict(dict(lr=0.1, momentum=0.5), **kwargs))
        elif op == "adam":
            ops.adam_update(p, g, s1, s2, **dict(dict(lr=0.1, step=1), **kwargs))
        elif op == "rmsprop":
            ops.rmsprop_update(p, g, s1, **dict(dict(lr=0.1), **kwargs))
        elif op == "l1_l2_value":
            ops.l1_l2_value(p, **kwargs)
        else:
            ops.l1_l2_grad_acc(g, p, **kwargs)
    np.testing.assert_array_equal(p, before)


def test_step_must_be_an_integer():
    p, g, m, v = _arrays()
    with pytest.raises(TypeError, match="adam_update: step must be an int; got float"):
        ops.adam_update(p, g, m, v, 0.1, 1.5)
    ops.adam_update(p, g, m, v, 0.1, np.int64(2))  # numpy integers are fine


# --------------------------------------------------------------------------------------------
# behaviour


def test_adam_converges_on_a_quadratic():
    # f(p) = 0.5 * sum(a * (p - c)^2): minimum at c, gradient a * (p - c).
    rng = np.random.default_rng(10)
    a = rng.uniform(0.5, 5.0, 50)
    c = rng.standard_normal(50)
    p = rng.standard_normal(50) * 3
    m, v = np.zeros(50), np.zeros(50)
    start = np.abs(p - c).max()
    for step in range(1, 1501):
        ops.adam_update(p, a * (p - c), m, v, 0.05 if step < 1000 else 0.005, step)
    assert np.abs(p - c).max() < 1e-2 * start


def test_adamw_decay_pulls_towards_zero_without_gradient():
    p = np.full(4, 2.0)
    m, v = np.zeros(4), np.zeros(4)
    ops.adam_update(p, np.zeros(4), m, v, 0.1, 1, weight_decay=0.5)
    np.testing.assert_allclose(p, 2.0 * (1 - 0.5 * 0.1))


def test_nan_grad_scale_propagates_instead_of_raising():
    # clipnorm of a NaN gradient gives grad_scale = NaN; Keras yields NaN weights, not an error.
    p = np.ones(3, np.float32)
    ops.sgd_update(p, np.ones(3, np.float32), None, 0.1, grad_scale=float("nan"))
    assert np.isnan(p).all()


def test_zero_learning_rate_leaves_params_unchanged():
    # A schedule may decay to exactly 0 (CosineDecay with alpha=0), as Keras allows.
    p = np.array([1.0, -2.0], np.float32)
    m, v = np.zeros_like(p), np.zeros_like(p)
    ops.adam_update(p, np.ones_like(p), m, v, 0.0, 1)
    ops.sgd_update(p, np.ones_like(p), None, 0.0)
    ops.rmsprop_update(p, np.ones_like(p), np.zeros_like(p), 0.0)
    assert p.tolist() == [1.0, -2.0]


# --------------------------------------------------------------------------------------------
# Adagrad, Adamax, Nadam, Lion: trajectories against the twin, the scalar C++ twin, threads

def _nadam_u_product(t, beta_1=0.9):
    return float(np.prod([beta_1 * (1 - 0.5 * 0.96 ** i) for i in range(1, t + 1)]))


# (name, slot count, positive slots?, extra kwargs per step (a function of the 1-based step))
NEW_OPS = {
    "adagrad": (1, True, lambda t, c: dict(epsilon=c.get("epsilon", 1e-7))),
    "adamax": (2, False, lambda t, c: dict(step=t, beta_1=c.get("beta_1", 0.9),
                                           beta_2=c.get("beta_2", 0.999))),
    "nadam": (2, False, lambda t, c: dict(step=t, u_product=_nadam_u_product(
        t, c.get("beta_1", 0.9)), beta_1=c.get("beta_1", 0.9), beta_2=c.get("beta_2", 0.999))),
    "lion": (1, False, lambda t, c: dict(beta_1=c.get("beta_1", 0.9),
                                         beta_2=c.get("beta_2", 0.99))),
}
NEW_CONFIGS = [dict(), dict(grad_scale=0.4, clipvalue=0.3), dict(beta_1=0.5, beta_2=0.8)]


def _new_slots(rng, name, shape, dtype):
    count, positive, _ = NEW_OPS[name]
    if name in ("adamax", "nadam"):  # m any sign; u / v >= 0
        return [_rand(rng, shape, dtype), _rand(rng, shape, dtype, 0.0, 1.5)]
    return [_rand(rng, shape, dtype, 0.05, 1.5) if positive else _rand(rng, shape, dtype)
            for _ in range(count)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("name,cfg", [(nm, c) for nm in sorted(NEW_OPS) for c in NEW_CONFIGS
                                      if not (nm == "adagrad" and "beta_1" in c)],
                         ids=lambda v: repr(v))
def test_new_update_trajectories_match_reference(name, cfg, n, dtype):
    rng = np.random.default_rng(n + 17)
    shape = _shape(n)
    p0 = _rand(rng, shape, dtype)
    (mine, want) = _pairs([p0] + _new_slots(rng, name, shape, dtype))
    clip = {k: cfg[k] for k in ("grad_scale", "clipvalue") if k in cfg}
    for t in range(1, STEPS + 1):
        g = _rand(rng, shape, dtype)
        kw = dict(NEW_OPS[name][2](t, cfg), **clip)
        getattr(ops, f"{name}_update")(mine[0], g, *mine[1:], 0.01, **kw)
        getattr(reference, f"{name}_update")(want[0], g, *want[1:], 0.01, **kw)
    for a, b in zip(mine, want):
        assert a.dtype == dtype and a.shape == shape
        _close(a, b, dtype, name)


def _run_new(suffix, dtype, n, seed):
    rng = np.random.default_rng(seed)
    out = []
    for name in sorted(NEW_OPS):
        arrays = [_rand(rng, n, dtype)] + _new_slots(rng, name, n, dtype)
        g = _rand(rng, n, dtype)
        kw = NEW_OPS[name][2](5, {})
        getattr(_core, f"{name}_update{suffix}")(arrays[0], g, *arrays[1:], 0.01, **kw,
                                                 grad_scale=0.7, clipvalue=0.9)
        out += arrays
    return out


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [17, 40009])
def test_new_updates_fast_equal_scalar_twins_and_threads(n, dtype):
    fast = _run_new("", dtype, n, seed=n)
    for a, b in zip(fast, _run_new("_ref", dtype, n, seed=n)):
        _close(a, b, dtype)  # same expressions; FMA contraction may round differently
    before = nn.get_num_threads()
    try:
        nn.set_num_threads(1)
        one = _run_new("", dtype, n, seed=n)
        nn.set_num_threads(2)
        two = _run_new("", dtype, n, seed=n)
    finally:
        nn.set_num_threads(before)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


def test_new_updates_written_out():
    """One step of each rule on hand-sized float64 arrays, the Keras 3 formulas spelled out."""
    p0, g = np.array([0.5, -1.0, 2.0]), np.array([0.3, -0.2, 0.0])
    lr = 0.1
    # Adagrad
    p, acc = p0.copy(), np.full(3, 0.1)
    ops.adagrad_update(p, g, acc, lr, epsilon=1e-7)
    np.testing.assert_allclose(acc, 0.1 + g ** 2, rtol=1e-15)
    np.testing.assert_allclose(p, p0 - lr * g / np.sqrt(0.1 + g ** 2 + 1e-7), rtol=1e-15)
    # Adamax, step 2
    p, m, u = p0.copy(), np.array([0.1, 0.1, -0.1]), np.array([0.2, 0.05, 0.3])
    m_want = m + (g - m) * 0.1
    u_want = np.maximum(0.999 * u, np.abs(g))
    ops.adamax_update(p, g, m, u, lr, 2)
    np.testing.assert_allclose(m, m_want, rtol=1e-15)
    np.testing.assert_allclose(u, u_want, rtol=1e-15)
    np.testing.assert_allclose(p, p0 - lr * m_want / ((1 - 0.9 ** 2) * (u_want + 1e-7)),
                               rtol=1e-14)
    # Nadam, step 1 from zero slots: u_1, u_2 = 0.9 (1 - 0.5 * 0.96^t)
    u1, u2 = 0.9 * (1 - 0.5 * 0.96), 0.9 * (1 - 0.5 * 0.96 ** 2)
    p, m, v = p0.copy(), np.zeros(3), np.zeros(3)
    ops.nadam_update(p, g, m, v, lr, 1, u1)
    m_w, v_w = 0.1 * g, 0.001 * g ** 2
    m_hat = u2 * m_w / (1 - u1 * u2) + (1 - u1) * g / (1 - u1)
    v_hat = v_w / (1 - 0.999)
    np.testing.assert_allclose(p, p0 - lr * m_hat / (np.sqrt(v_hat) + 1e-7), rtol=1e-14)
    # Lion: the step is lr * sign(...) exactly; sign(0) = 0 leaves that entry alone
    p, m = p0.copy(), np.array([0.0, 1.0, 0.0])
    ops.lion_update(p, g, m, lr)
    np.testing.assert_array_equal(p, p0 - lr * np.sign(0.9 * np.array([0, 1.0, 0]) + 0.1 * g))
    np.testing.assert_allclose(m, 0.99 * np.array([0, 1.0, 0]) + 0.01 * g, rtol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lion_sign_of_special_values_matches_numpy(dtype):
    # The kernel forms lr * sign(c) branch-free (c scaled, then clamped to [-lr, lr]) so that
    # it vectorises: zeros, the smallest subnormal, huge values, infinities and NaN must give
    # NumPy's sign exactly, in the vector body and in the scalar tail (37 = odd length).
    tiny = np.finfo(dtype).smallest_subnormal
    special = np.array([0.0, -0.0, tiny, -tiny, 1e-30, -3.5, np.finfo(dtype).max,
                        -np.finfo(dtype).max, np.inf, -np.inf, np.nan], dtype=dtype)
    c = np.resize(special, 37).astype(dtype)
    rng = np.random.default_rng(3)
    p0 = rng.standard_normal(37).astype(dtype)
    p, m = p0.copy(), np.zeros(37, dtype=dtype)
    g = c.copy()  # m = 0 and beta_1 = 0: c is g itself
    ops.lion_update(p, g, m, 0.25, beta_1=0.0, beta_2=0.5)
    want = p0 - dtype(0.25) * np.sign(c)
    np.testing.assert_array_equal(p, want)


@pytest.mark.parametrize("op,kwargs,msg", [
    ("adagrad_update", dict(epsilon=-1.0), "epsilon must be >= 0 and finite; got -1"),
    ("adamax_update", dict(step=0), "step must be >= 1; got 0"),
    ("adamax_update", dict(step=1, beta_1=1.0), "beta_1 must be in [0, 1); got 1"),
    ("nadam_update", dict(step=1, u_product=1.0), "u_product must be in [0, 1); got 1"),
    ("lion_update", dict(beta_2=1.5), "beta_2 must be in [0, 1]; got 1.5"),
])
def test_new_update_validation(op, kwargs, msg):
    p, g = np.zeros(3), np.ones(3)
    slots = [np.zeros(3) for _ in range(NEW_OPS[op.split("_")[0]][0])]
    with pytest.raises(ValueError, match=re.escape(f"{op}: {msg}")):
        getattr(ops, op)(p, g, *slots, 0.1, **kwargs)
    ok = {"nadam_update": {"step": 1, "u_product": 0.5}, "adamax_update": {"step": 1}}.get(op, {})
    with pytest.raises(TypeError, match="must have the dtype of grad"):
        getattr(ops, op)(p, g, *[s.astype(np.float32) for s in slots], 0.1, **ok)
    with pytest.raises(ValueError, match="share memory"):
        getattr(_core, op)(p, g, *([p] + slots[1:]), 0.1, **ok)
