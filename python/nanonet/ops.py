"""The one gateway to compiled code.

Every function here checks and converts its arrays, allocates outputs and calls ``nanonet._core``.
Each has a NumPy twin with the same name and arguments in :mod:`nanonet.reference`, which is its
specification. No other Python module imports ``_core``.

Conventions: float32 and float64 are supported; mixing them raises TypeError. Inputs whose rows
are not contiguous are copied once; arrays updated in place (parameters, optimizer slots) must
already be C-contiguous with the right dtype, otherwise ValueError/TypeError is raised instead of
silently updating a copy.
"""
from __future__ import annotations

import math
import operator
import os
import warnings

import numpy as np

# ---- OpenMP's idle spin, chosen before the extension loads
# After each parallel region libgomp's worker threads spin before they sleep: by default 300,000
# pause instructions, 3 ms by libgomp's own estimate but 10-15 ms on CPUs where a pause takes
# ~140 cycles (Intel since Skylake-SP). A NumPy (OpenBLAS) call made meanwhile shares its cores
# with the spinning workers: at 2 threads on 2 cores, a pair of 128^3 matmuls (nanonet's, then
# NumPy's) took 13 ms in a loop instead of 0.1 ms (benchmarks/RESULTS.md, "NumPy and nanonet in
# one process"). libgomp reads its wait policy once, when it loads, which is when _core loads.
# So unless the user chose one (OMP_WAIT_POLICY or GOMP_SPINCOUNT in the environment), _core is
# imported with GOMP_SPINCOUNT=_SPIN_COUNT, which still covers the gaps between the kernels of
# one training step, and the variable is removed again at once: no other library loaded later
# and no child process inherits it.
_SPIN_COUNT = "10000"


def _libgomp_mapped() -> bool | None:
    """Whether libgomp.so is already in this process (Linux; None where that cannot be read)."""
    try:
        with open("/proc/self/maps") as f:
            return any("/libgomp.so" in line for line in f)
    except OSError:
        return None


def _load_core():
    env = os.environ
    user = {k: env[k] for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT") if k in env}
    preloaded = _libgomp_mapped() if not user else None
    if not user:
        env["GOMP_SPINCOUNT"] = _SPIN_COUNT
    try:
        from . import _core as core
    finally:
        if not user:
            del env["GOMP_SPINCOUNT"]
    if user:
        wait = {"source": "environment", **user}
    elif preloaded:
        wait = {"source": "libgomp was loaded before nanonet: its own setting"}
    else:
        wait = {"source": "nanonet default", "GOMP_SPINCOUNT": _SPIN_COUNT}
    return core, wait


_core, _OPENMP_WAIT = _load_core()


def openmp_wait() -> dict:
    """The OpenMP wait policy nanonet's threads run with: {"source": ..., and the variables}.
    "nanonet default": GOMP_SPINCOUNT=10000, applied while the extension loaded; "environment":
    the user's OMP_WAIT_POLICY / GOMP_SPINCOUNT; or libgomp was already loaded by another
    library, whose setting stands."""
    return dict(_OPENMP_WAIT)


_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _float_array(x, name: str, fn: str) -> np.ndarray:
    """x as a float32/float64 ndarray (no copy when it already is one)."""
    if not isinstance(x, np.ndarray):
        x = np.asarray(x)
        if x.dtype not in _FLOATS and np.issubdtype(x.dtype, np.number):
            x = x.astype(np.float32)
    if x.dtype not in _FLOATS:
        raise TypeError(f"{fn}: {name} must be float32 or float64; got {x.dtype}")
    return x


def _rows_contiguous(x: np.ndarray) -> np.ndarray:
    """A 2-D array whose rows are contiguous (a slice of a wider matrix is kept as is)."""
    if x.ndim == 2 and (x.shape[1] <= 1 or x.strides[1] == x.itemsize) and x.strides[0] > 0:
        return x
    return np.ascontiguousarray(x)


def _contiguous(x: np.ndarray) -> np.ndarray:
    return x if x.flags.c_contiguous else np.ascontiguousarray(x)


def _same_dtype(fn: str, names, *arrays):
    dt = arrays[0].dtype
    for n, a in zip(names[1:], arrays[1:]):
        if a is not None and a.dtype != dt:
            raise TypeError(f"{fn}: {n} must have the dtype of {names[0]} ({dt}); got {a.dtype}")


# --------------------------------------------------------------------------------------------
# runtime

def set_num_threads(n: int) -> None:
    """Sets the number of threads every kernel uses, process-wide.

    Small calls still run on the calling thread; results differ across thread counts by
    float rounding only.

    Args:
        n (int): the number of threads, >= 1.

    Raises:
        TypeError: n is not an int.
        ValueError: n < 1.

    Example:

    >>> old = nn.get_num_threads()
    >>> nn.set_num_threads(1)
    >>> nn.get_num_threads()
    1
    >>> nn.set_num_threads(old)
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"set_num_threads: n must be an int; got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"set_num_threads: n must be >= 1; got {n}")
    _core.set_num_threads(int(n))


def get_num_threads() -> int:
    """The number of threads the kernels use (see ``set_num_threads``).

    Example:

    >>> nn.get_num_threads() >= 1
    True
    """
    return _core.get_num_threads()


def set_thread_limit(n: int) -> int:
    """Caps the kernels called from this OS thread at n threads (0: no cap); returns the old
    cap. Other threads keep theirs. See the ``thread_limit`` context manager."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"set_thread_limit: n must be an int; got {type(n).__name__}")
    if n < 0:
        raise ValueError(f"set_thread_limit: n must be >= 0 (0 = no limit); got {n}")
    return _core.set_thread_limit(int(n))


def get_thread_limit() -> int:
    """This OS thread's cap on kernel threads (0: none)."""
    return _core.get_thread_limit()


class thread_limit:
    """``with ops.thread_limit(n):`` caps this thread's kernels at n threads; the old cap comes
    back on exit, also on an exception."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __enter__(self):
        self._old = set_thread_limit(self.n)
        return self

    def __exit__(self, *exc):
        _core.set_thread_limit(self._old)


class _PairWorker:
    """run_pair's helper thread, kept (its thread-local buffers are reused); remade after fork."""

    def __init__(self):
        import threading
        self.pid = os.getpid()
        self.busy = threading.Lock()  # held by the run_pair that uses the worker
        self.cv = threading.Condition()
        self.job = self.result = None
        threading.Thread(target=self._loop, name="nanonet-run-pair", daemon=True).start()

    def _loop(self):
        while True:
            with self.cv:
                while self.job is None:
                    self.cv.wait()
                fn, limit = self.job
            try:
                with thread_limit(limit):
                    result = (True, fn())
            except BaseException as e:  # re-raised by the caller
                result = (False, e)
            with self.cv:
                self.job, self.result = None, result
                self.cv.notify_all()

    def submit(self, fn, limit):
        with self.cv:
            self.job, self.result = (fn, limit), None
            self.cv.notify_all()

    def wait(self):
        with self.cv:
            while self.result is None:
                self.cv.wait()
            return self.result


_pair_worker = None


def run_pair(first, second):
    """(first(), second()) for two independent calls: with n >= 2 kernel threads, ``first`` on
    a helper thread and ``second`` on this one at once, each under a thread limit of n / 2
    (results bit-identical to each alone at that count); else, or when nested or busy, in
    order. An exception is raised once both have finished (``second``'s first)."""
    global _pair_worker
    n = _core.get_num_threads()
    w = _pair_worker
    if n > 1 and (w is None or w.pid != os.getpid()):
        w = _pair_worker = _PairWorker()
    if n < 2 or not w.busy.acquire(blocking=False):
        return first(), second()
    try:
        w.submit(first, n - n // 2)
        try:
            with thread_limit(n // 2):
                b = second()
        finally:
            try:
                ok, a = w.wait()
            except BaseException:  # interrupted while first() runs: drop that worker
                _pair_worker = None
                raise
    finally:
        w.busy.release()
    if not ok:
        raise a
    return a, b


def active_isa() -> str:
    """SIMD path in use: 'avx512', 'avx2' or 'ref'."""
    return _core.active_isa()


def detect_isa() -> str:
    return _core.detect_isa()


def set_isa(isa: str) -> None:
    """Choose the SIMD path ('ref', 'avx2', 'avx512'); ValueError if the CPU lacks it."""
    _core.set_isa(isa)


# Kernel families with ISA-specific code (cpp/nanonet/runtime.hpp): the GEMM micro-kernels, the
# vector math of every span/tile loop, the LSTM's fused recurrent products.
FAMILIES = ("gemm", "vecmath", "lstm")
_LOWER = {"avx512": "avx2", "avx2": "ref"}
_SELF_CHECK: dict = {}


def family_isa(family: str) -> str:
    """SIMD path a kernel family ('gemm', 'vecmath', 'lstm') uses now: the lower of
    active_isa() and the family's cap."""
    return _core.family_isa(family)


def set_family_cap(family: str, isa: str) -> None:
    """Cap a kernel family's SIMD path (the self-check lowers it; set it back to detect_isa()
    to undo). ValueError for an unknown family or an ISA this CPU lacks."""
    _core.set_family_cap(family, isa)


def build_info() -> dict:
    """How the extension was built: compiler, C++ standard, OpenMP, asserts, sanitizers."""
    return dict(_core.build_info())


def _relative_error(fast, ref) -> float:
    fast, ref = np.asarray(fast, np.float64), np.asarray(ref, np.float64)
    if not np.all(np.isfinite(fast)):
        return math.inf
    return float(np.max(np.abs(fast - ref)) / max(1.0, float(np.max(np.abs(ref)))))


def _values(shape, salt, dtype, scale=1.0):
    """Fixed pseudo-random values in [-scale, scale] (no numpy.random: it costs ~25 ms of import
    time, and the self-check runs at import)."""
    n = int(np.prod(shape))
    return (np.sin(np.arange(n) * 12.9898 + salt) * scale).astype(dtype).reshape(shape)


def _check_gemm():
    err = 0.0
    for dt, (m, k, n) in ((np.float32, (37, 53, 41)), (np.float64, (13, 29, 19))):
        a, b = _values((m, k), 1.0, dt), _values((k, n), 2.0, dt)
        for ta, tb in ((False, False), (True, True)):
            x, y = (a.T.copy() if ta else a), (b.T.copy() if tb else b)
            err = max(err, _relative_error(_core.matmul(x, y, ta, tb), _core.matmul_ref(x, y, ta, tb)))
    return err


_CHECK_ACTIVATIONS = ("sigmoid", "tanh", "relu", "gelu", "silu", "elu", "softplus", "softmax",
                      "log_softmax")


def _check_vecmath():
    err = 0.0
    for dt in (np.float32, np.float64):
        x = _values((3, 67), 3.0, dt, scale=8.0)
        dy = _values((3, 67), 4.0, dt)
        for act in _CHECK_ACTIVATIONS:
            y, y_ref = _core.activation_forward(x, act), _core.activation_forward_ref(x, act)
            err = max(err, _relative_error(y, y_ref))
            keep = x if act in ("gelu", "silu") else None
            err = max(err, _relative_error(_core.activation_backward(dy, y_ref, act, keep),
                                           _core.activation_backward_ref(dy, y_ref, act, keep)))
    return err


def _check_lstm():
    B, T, I, H = 5, 3, 7, 19  # B above the row-product range: the fused recurrent path
    err = 0.0
    for dt in (np.float32, np.float64):
        x = _values((B, T, I), 5.0, dt)
        k = _values((I, 4 * H), 6.0, dt, scale=0.5)
        rk = _values((H, 4 * H), 7.0, dt, scale=0.5)
        args = (x, k, rk, None, None, None, None, None, None, False, "tanh", "sigmoid", True,
                False)
        fast, ref = _core.lstm_forward(*args), _core.lstm_forward(*args, use_ref=True)
        err = max(err, _relative_error(fast[0], ref[0]))
    return err


_CHECKS = {"gemm": _check_gemm, "vecmath": _check_vecmath, "lstm": _check_lstm}
# float32 results differ from the portable path by rounding (FMA contraction, vector exp/tanh
# within a few ulp); a wrong kernel is off by O(1).
_SELF_CHECK_TOL = 1e-4


def self_check(families=FAMILIES, *, _fault=()) -> dict:
    """Check each kernel family's SIMD path against the portable path on a small problem (about
    a millisecond in all); a family that disagrees falls back to the next ISA (avx512 -> avx2 ->
    ref) with one RuntimeWarning naming it. Runs once at import (set NANONET_SELF_CHECK=0 to
    skip); returns {family: {"isa", "checked", "max_error", "ok"}}. ``_fault`` (tests only)
    names families whose fast result is treated as wrong, to exercise the fallback."""
    report = {}
    # One thread: the problems are tiny, and a thread pool started here would spin on a core
    # after each region (OpenMP's wait policy), tens of ms of CPU at every import.
    threads = _core.get_num_threads()
    _core.set_num_threads(1)
    try:
        for family in families:
            report[family] = _self_check_family(family, _fault)
    finally:
        _core.set_num_threads(threads)
    _SELF_CHECK.update(report)
    return report


def _self_check_family(family, _fault):
    """One family's check and fallback (see self_check)."""
    if family not in _CHECKS:
        raise ValueError(f"self_check: family must be one of {FAMILIES}; got {family!r}")
    checked, errors = [], []
    while True:
        isa = _core.family_isa(family)
        if isa == "ref":
            break
        err = _CHECKS[family]()
        if family in _fault:
            err = math.inf
        checked.append(isa)
        errors.append(err)
        if err <= _SELF_CHECK_TOL:
            break
        lower = _LOWER[isa]
        _core.set_family_cap(family, lower)
        warnings.warn(
            f"nanonet: the {isa} {family} kernels disagree with the portable path in the "
            f"import self-check (max relative error {err:.3g}); {family} now uses {lower}",
            RuntimeWarning, stacklevel=3)
    return {"isa": _core.family_isa(family), "checked": checked, "max_error": errors,
            "ok": not errors or errors[-1] <= _SELF_CHECK_TOL}


def self_check_report() -> dict:
    """What the import-time self_check found (empty when NANONET_SELF_CHECK=0)."""
    return dict(_SELF_CHECK)


# --------------------------------------------------------------------------------------------
# gemm

def matmul(a, b, transpose_a: bool = False, transpose_b: bool = False) -> np.ndarray:
    """op(a) @ op(b) for 2-D float32/float64 arrays; op transposes when asked."""
    a = _rows_contiguous(_float_array(a, "a", "matmul"))
    b = _rows_contiguous(_float_array(b, "b", "matmul"))
    return _core.matmul(a, b, bool(transpose_a), bool(transpose_b))


def gemm(a, b, c, alpha: float = 1.0, beta: float = 0.0, transpose_a: bool = False,
         transpose_b: bool = False) -> np.ndarray:
    """In place: c = alpha * op(a) @ op(b) + beta * c. Returns c."""
    a = _rows_contiguous(_float_array(a, "a", "gemm"))
    b = _rows_contiguous(_float_array(b, "b", "gemm"))
    if not isinstance(c, np.ndarray):
        raise TypeError(f"gemm: c must be a numpy.ndarray updated in place; got {type(c).__name__}")
    _core.gemm(a, b, c, float(alpha), float(beta), bool(transpose_a), bool(transpose_b))
    return c


def gemm_kernel_name(dtype=np.float32) -> str:
    """Name of the GEMM micro-kernel in use for dtype."""
    return _core.gemm_kernel_name(np.dtype(dtype))


# --------------------------------------------------------------------------------------------
# ---- optimizers
# In-place updates: param and every slot must be C-contiguous, writeable ndarrays with grad's
# dtype and shape (never converted, so a wrong one raises instead of a copy being updated);
# grad may be read-only or strided (it is copied then). Each update applies
# g' = clip(grad * grad_scale, -clipvalue, clipvalue) (clipvalue 0 = off) in the same pass.

def _inplace(x, name: str, fn: str):
    if x is not None and not isinstance(x, np.ndarray):
        raise TypeError(f"{fn}: {name} must be a numpy.ndarray updated in place; "
                        f"got {type(x).__name__}")
    return x


def _update_grad(grad, param, fn: str) -> np.ndarray:
    if _inplace(param, "param", fn).dtype not in _FLOATS:
        raise TypeError(f"{fn}: param must be float32 or float64; got {param.dtype}")
    if not isinstance(grad, np.ndarray):
        grad = np.asarray(grad, dtype=param.dtype)  # a list or scalar takes param's dtype
    grad = _float_array(grad, "grad", fn)
    _same_dtype(fn, ("param", "grad"), param, grad)
    return _contiguous(grad)


def _step(step, fn: str) -> int:
    try:
        return operator.index(step)
    except TypeError:
        raise TypeError(f"{fn}: step must be an int; got {type(step).__name__}") from None


def sgd_update(param, grad, velocity, lr, momentum=0.0, nesterov=False, grad_scale=1.0,
               clipvalue=0.0) -> None:
    """In place, Keras SGD. momentum == 0: param -= lr * g' (velocity may be None).
    Otherwise velocity = momentum * velocity - lr * g'; param += velocity, or with nesterov
    param += momentum * velocity - lr * g'."""
    fn = "sgd_update"
    grad = _update_grad(grad, param, fn)
    _core.sgd_update(param, grad, _inplace(velocity, "velocity", fn), float(lr), float(momentum),
                     bool(nesterov), float(grad_scale), float(clipvalue))


def adam_update(param, grad, m, v, lr, step, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                weight_decay=0.0, grad_scale=1.0, clipvalue=0.0) -> None:
    """In place, Keras Adam (AdamW with weight_decay > 0); step is the 1-based update count.
    param -= param * weight_decay * lr; alpha = lr * sqrt(1 - beta_2**step) / (1 - beta_1**step);
    m += (g' - m)(1 - beta_1); v += (g'^2 - v)(1 - beta_2); param -= alpha m / (sqrt(v) + eps)."""
    fn = "adam_update"
    grad = _update_grad(grad, param, fn)
    _core.adam_update(param, grad, _inplace(m, "m", fn), _inplace(v, "v", fn), float(lr),
                      _step(step, fn), float(beta_1), float(beta_2), float(epsilon),
                      float(weight_decay), float(grad_scale), float(clipvalue))


def rmsprop_update(param, grad, velocity, lr, rho=0.9, momentum=0.0, epsilon=1e-7,
                   centered=False, momentum_buf=None, average_grad=None, grad_scale=1.0,
                   clipvalue=0.0) -> None:
    """In place, Keras 3 RMSprop. momentum_buf is needed when momentum > 0, average_grad when
    centered; see nanonet.reference.rmsprop_update for the equations."""
    fn = "rmsprop_update"
    grad = _update_grad(grad, param, fn)
    _core.rmsprop_update(param, grad, _inplace(velocity, "velocity", fn), float(lr), float(rho),
                         float(momentum), float(epsilon), bool(centered),
                         _inplace(momentum_buf, "momentum_buf", fn),
                         _inplace(average_grad, "average_grad", fn), float(grad_scale),
                         float(clipvalue))


def adagrad_update(param, grad, accumulator, lr, epsilon=1e-7, grad_scale=1.0,
                   clipvalue=0.0) -> None:
    """In place, Keras Adagrad: accumulator += g'^2; param -= lr * g' / sqrt(accumulator +
    epsilon)."""
    fn = "adagrad_update"
    grad = _update_grad(grad, param, fn)
    _core.adagrad_update(param, grad, _inplace(accumulator, "accumulator", fn), float(lr),
                         float(epsilon), float(grad_scale), float(clipvalue))


def adamax_update(param, grad, m, u, lr, step, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                  grad_scale=1.0, clipvalue=0.0) -> None:
    """In place, Keras Adamax; step is the 1-based update count. m += (g' - m)(1 - beta_1);
    u = max(beta_2 u, |g'|); param -= lr m / ((1 - beta_1**step)(u + epsilon))."""
    fn = "adamax_update"
    grad = _update_grad(grad, param, fn)
    _core.adamax_update(param, grad, _inplace(m, "m", fn), _inplace(u, "u", fn), float(lr),
                        _step(step, fn), float(beta_1), float(beta_2), float(epsilon),
                        float(grad_scale), float(clipvalue))


def nadam_update(param, grad, m, v, lr, step, u_product, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-7, grad_scale=1.0, clipvalue=0.0) -> None:
    """In place, Keras Nadam; step is the 1-based update count and u_product the product of
    beta_1 (1 - 0.5 * 0.96**i) over i = 1..step (the optimizer keeps it). Equations in
    cpp/nanonet/optimizers.hpp and nanonet.reference.nadam_update."""
    fn = "nadam_update"
    grad = _update_grad(grad, param, fn)
    _core.nadam_update(param, grad, _inplace(m, "m", fn), _inplace(v, "v", fn), float(lr),
                       _step(step, fn), float(u_product), float(beta_1), float(beta_2),
                       float(epsilon), float(grad_scale), float(clipvalue))


def lion_update(param, grad, m, lr, beta_1=0.9, beta_2=0.99, grad_scale=1.0,
                clipvalue=0.0) -> None:
    """In place, Keras Lion: param -= lr * sign(beta_1 m + (1 - beta_1) g');
    m = beta_2 m + (1 - beta_2) g'."""
    fn = "lion_update"
    grad = _update_grad(grad, param, fn)
    _core.lion_update(param, grad, _inplace(m, "m", fn), float(lr), float(beta_1),
                      float(beta_2), float(grad_scale), float(clipvalue))


def sum_squares(x) -> float:
    """sum(x**2) accumulated in float64; the same value for every thread count."""
    return _core.sum_squares(_contiguous(_float_array(x, "x", "sum_squares")))


def l1_l2_value(param, l1=0.0, l2=0.0) -> float:
    """Keras L1L2 regulariser value: l1 * sum|param| + l2 * sum param**2 (float64 sums)."""
    param = _contiguous(_float_array(param, "param", "l1_l2_value"))
    return _core.l1_l2_value(param, float(l1), float(l2))


def l1_l2_grad_acc(grad, param, l1=0.0, l2=0.0) -> None:
    """In place: grad += l1 * sign(param) + 2 * l2 * param (grad: contiguous, writeable)."""
    fn = "l1_l2_grad_acc"
    param = _float_array(param, "param", fn)
    _same_dtype(fn, ("param", "grad"), param, _inplace(grad, "grad", fn))
    _core.l1_l2_grad_acc(grad, _contiguous(param), float(l1), float(l2))


# --------------------------------------------------------------------------------------------
# ---- embedding

_ID_TYPES = (np.dtype(np.int32), np.dtype(np.int64))


def _ids_array(ids, fn: str) -> np.ndarray:
    """ids as a C-contiguous int32/int64 array. Other integer types and integral floats are
    converted to int64; anything else raises (TypeError for a non-numeric dtype, ValueError for a
    non-integral or non-finite float)."""
    ids = np.asarray(ids)
    if ids.dtype in _ID_TYPES:
        return _contiguous(ids)
    if ids.dtype.kind in "iu":
        if ids.dtype.kind == "u" and ids.size and ids.max() > np.iinfo(np.int64).max:
            raise ValueError(f"{fn}: ids must be in [0, V); got {ids.max()}")
        return np.ascontiguousarray(ids, dtype=np.int64)
    if ids.dtype.kind == "f":
        bad = ~np.isfinite(ids) | (ids != np.floor(ids)) | (np.abs(ids) > 2.0 ** 62)
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"{fn}: ids must be integers; got {ids[bad].flat[0].item()!r} "
                             f"at position {where}")
        return np.ascontiguousarray(ids, dtype=np.int64)
    raise TypeError(f"{fn}: ids must be an integer array (int32 or int64); got {ids.dtype}")


def embedding_forward(ids, embeddings, *, _ref: bool = False) -> np.ndarray:
    """Gather: y[..., :] = embeddings[ids[...], :]; ids of any shape, embeddings (V, E).
    Returns ids.shape + (E,) in the embeddings' dtype. ValueError names an id outside [0, V).
    (_ref: run the scalar C++ specification; a testing hook.)"""
    fn = "embedding_forward"
    ids = _ids_array(ids, fn)
    embeddings = _contiguous(_float_array(embeddings, "embeddings", fn))
    return _core.embedding_forward(ids, embeddings, bool(_ref))


def embedding_backward(dy, ids, input_dim: int, *, _ref: bool = False) -> np.ndarray:
    """Scatter-add: dembeddings (input_dim, E), row v = sum of the dy rows whose id is v (0 where
    no id); dy is ids.shape + (E,). Overwrites nothing of the caller's; deterministic for any
    thread count (counting sort, rows split between threads, no atomics)."""
    fn = "embedding_backward"
    ids = _ids_array(ids, fn)
    dy = _contiguous(_float_array(dy, "dy", fn))
    if isinstance(input_dim, bool) or not isinstance(input_dim, (int, np.integer)):
        raise TypeError(f"{fn}: input_dim must be an int; got {type(input_dim).__name__}")
    return _core.embedding_backward(dy, ids, int(input_dim), bool(_ref))


# --------------------------------------------------------------------------------------------
# ---- normalization
# x (..., F) is seen as N rows of F features (the leading axes flattened, no copy when x is
# C-contiguous). gamma/beta may be None (scale=False / center=False). Batch normalization's
# statistics are per feature (F,); layer normalization's are per row, shaped x.shape[:-1].
# The moving statistics are updated in place when training=True, so they must then be
# C-contiguous, writeable ndarrays of x's dtype (never converted).

def _norm_inplace(v, name: str, fn: str):
    if v is not None and not isinstance(v, np.ndarray):
        raise TypeError(f"{fn}: {name} must be a numpy.ndarray updated in place; "
                        f"got {type(v).__name__}")
    return v


def _norm_vec(v, name: str, fn: str):
    return None if v is None else _contiguous(_float_array(v, name, fn))


def _norm_mask(mask, shape, fn: str):
    """mask as a C-contiguous bool array of `shape` (nonzero integers count as True)."""
    if mask is None:
        return None
    m = np.asarray(mask)
    if m.dtype != np.bool_:
        if m.dtype.kind not in "iu":
            raise TypeError(f"{fn}: mask must be bool; got {m.dtype}")
        m = m != 0
    if m.shape != tuple(shape):
        raise ValueError(f"{fn}: mask must have shape {tuple(shape)}; got {m.shape}")
    return _contiguous(m)


def _norm_rows(x, name: str, fn: str, min_ndim: int) -> np.ndarray:
    x = _contiguous(_float_array(x, name, fn))
    if x.ndim < min_ndim:
        what = "(N, F) or (B, T, F)" if min_ndim == 2 else "(..., F)"
        raise ValueError(f"{fn}: {name} must be {what}, at least {min_ndim}-D; got shape "
                         f"{x.shape}")
    return x


def _norm_like(dy, x, fn: str) -> np.ndarray:
    dy = _contiguous(_float_array(dy, "dy", fn))
    if dy.shape != x.shape:
        raise ValueError(f"{fn}: dy must have the shape of x {x.shape}; got {dy.shape}")
    return dy


def batch_norm_forward(x, gamma, beta, moving_mean, moving_var, training=False, momentum=0.99,
                       epsilon=1e-3, mask=None, *, _ref: bool = False):
    """Batch normalization over the rows of x (N, F) or (B, T, F) -> (y, mean, inv_std).

    training=True: batch statistics over the rows (biased variance; only rows where mask, of
    shape x.shape[:-1], is True count), and moving = moving * momentum + batch * (1 - momentum)
    in place (moving_mean/moving_var may be None: no update). A batch with no unmasked row gives
    mean 0, var 0 and leaves the moving statistics alone. training=False: the moving statistics.
    y = (x - mean) * inv_std * gamma + beta with inv_std = 1 / sqrt(var + epsilon); mean and
    inv_std (F,) are what batch_norm_backward needs. (_ref: the serial C++ specification.)"""
    fn = "batch_norm_forward"
    x = _norm_rows(x, "x", fn, 2)
    F = x.shape[-1]
    gamma = _norm_vec(gamma, "gamma", fn)
    beta = _norm_vec(beta, "beta", fn)
    _same_dtype(fn, ("x", "gamma", "beta"), x, gamma, beta)
    if training:
        _norm_inplace(moving_mean, "moving_mean", fn)
        _norm_inplace(moving_var, "moving_var", fn)
    else:
        if moving_mean is None or moving_var is None:
            raise ValueError(f"{fn}: moving_mean and moving_var are required when "
                             "training=False")
        moving_mean = _norm_vec(moving_mean, "moving_mean", fn)
        moving_var = _norm_vec(moving_var, "moving_var", fn)
    m = _norm_mask(mask, x.shape[:-1], fn)
    core = _core.batch_norm_forward_ref if _ref else _core.batch_norm_forward
    y, mean, inv_std = core(x.reshape(-1, F), gamma, beta, moving_mean, moving_var,
                            bool(training), float(momentum), float(epsilon),
                            None if m is None else m.reshape(-1))
    return y.reshape(x.shape), mean, inv_std


def batch_norm_backward(dy, x, mean, inv_std, gamma, training=True, mask=None, *,
                        _ref: bool = False):
    """Gradients of batch_norm_forward -> (dx, dgamma, dbeta), given its mean and inv_std.

    training=True differentiates through the batch statistics (the same mask as forward);
    training=False treats them as constants (dx = dy * gamma * inv_std)."""
    fn = "batch_norm_backward"
    x = _norm_rows(x, "x", fn, 2)
    dy = _norm_like(dy, x, fn)
    F = x.shape[-1]
    mean = _norm_vec(mean, "mean", fn)
    inv_std = _norm_vec(inv_std, "inv_std", fn)
    gamma = _norm_vec(gamma, "gamma", fn)
    _same_dtype(fn, ("x", "dy", "mean", "inv_std", "gamma"), x, dy, mean, inv_std, gamma)
    m = _norm_mask(mask, x.shape[:-1], fn)
    core = _core.batch_norm_backward_ref if _ref else _core.batch_norm_backward
    dx, dgamma, dbeta = core(dy.reshape(-1, F), x.reshape(-1, F), mean, inv_std, gamma,
                             bool(training), None if m is None else m.reshape(-1))
    return dx.reshape(x.shape), dgamma, dbeta


def layer_norm_forward(x, gamma, beta, epsilon=1e-3, *, _ref: bool = False):
    """Layer normalization over the last axis of x (..., F) -> (y, mean, inv_std), the statistics
    shaped x.shape[:-1]: y = (x - mean) * inv_std * gamma + beta, inv_std = 1/sqrt(var + eps)."""
    fn = "layer_norm_forward"
    x = _norm_rows(x, "x", fn, 1)
    F = x.shape[-1]
    gamma = _norm_vec(gamma, "gamma", fn)
    beta = _norm_vec(beta, "beta", fn)
    _same_dtype(fn, ("x", "gamma", "beta"), x, gamma, beta)
    core = _core.layer_norm_forward_ref if _ref else _core.layer_norm_forward
    y, mean, inv_std = core(x.reshape(-1, F), gamma, beta, float(epsilon))
    return y.reshape(x.shape), mean.reshape(x.shape[:-1]), inv_std.reshape(x.shape[:-1])


def layer_norm_backward(dy, x, mean, inv_std, gamma, *, _ref: bool = False):
    """Gradients of layer_norm_forward -> (dx, dgamma, dbeta), given its mean and inv_std."""
    fn = "layer_norm_backward"
    x = _norm_rows(x, "x", fn, 1)
    dy = _norm_like(dy, x, fn)
    F = x.shape[-1]
    mean = _norm_vec(mean, "mean", fn)
    inv_std = _norm_vec(inv_std, "inv_std", fn)
    for name, s in (("mean", mean), ("inv_std", inv_std)):
        if s.shape != x.shape[:-1]:
            raise ValueError(f"{fn}: {name} must have shape x.shape[:-1] = {x.shape[:-1]}; "
                             f"got {s.shape}")
    gamma = _norm_vec(gamma, "gamma", fn)
    _same_dtype(fn, ("x", "dy", "mean", "inv_std", "gamma"), x, dy, mean, inv_std, gamma)
    core = _core.layer_norm_backward_ref if _ref else _core.layer_norm_backward
    dx, dgamma, dbeta = core(dy.reshape(-1, F), x.reshape(-1, F), mean.reshape(-1),
                             inv_std.reshape(-1), gamma)
    return dx.reshape(x.shape), dgamma, dbeta


# --------------------------------------------------------------------------------------------
# ---- pooling
# Global pooling over the time axis of x (B, T, F), with an optional (B, T) mask (True = the
# step counts). A row with no unmasked step pools to 0 (and gets no gradient); Keras would give
# NaN (average) or ignore the mask (max).

def _pool_steps(steps, fn: str) -> int:
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)):
        raise TypeError(f"{fn}: steps must be an int; got {type(steps).__name__}")
    return int(steps)


def global_avg_pool1d_forward(x, mask=None, *, _ref: bool = False) -> np.ndarray:
    """Mean over the unmasked steps: (B, T, F) -> (B, F)."""
    fn = "global_avg_pool1d_forward"
    x = _contiguous(_float_array(x, "x", fn))
    m = _norm_mask(mask, x.shape[:2], fn) if x.ndim == 3 else mask
    core = _core.global_avg_pool1d_forward_ref if _ref else _core.global_avg_pool1d_forward
    return core(x, m)


def global_avg_pool1d_backward(dy, steps, mask=None, *, _ref: bool = False) -> np.ndarray:
    """Gradient of global_avg_pool1d_forward: dy (B, F) -> dx (B, steps, F), dy / count at the
    unmasked steps, 0 elsewhere."""
    fn = "global_avg_pool1d_backward"
    dy = _contiguous(_float_array(dy, "dy", fn))
    steps = _pool_steps(steps, fn)
    m = _norm_mask(mask, (dy.shape[0], steps), fn) if dy.ndim == 2 else mask
    core = _core.global_avg_pool1d_backward_ref if _ref else _core.global_avg_pool1d_backward
    return core(dy, steps, m)


def global_max_pool1d_forward(x, mask=None, *, _ref: bool = False):
    """Max over the unmasked steps: (B, T, F) -> (y (B, F), argmax (B, F) int64), argmax the
    first step holding the max (a NaN counts as the max), -1 for a row with no unmasked step."""
    fn = "global_max_pool1d_forward"
    x = _contiguous(_float_array(x, "x", fn))
    m = _norm_mask(mask, x.shape[:2], fn) if x.ndim == 3 else mask
    core = _core.global_max_pool1d_forward_ref if _ref else _core.global_max_pool1d_forward
    return core(x, m)


def global_max_pool1d_backward(dy, argmax, steps, *, _ref: bool = False) -> np.ndarray:
    """Gradient of global_max_pool1d_forward: dy (B, F) routed to step argmax -> dx (B, steps,
    F)."""
    fn = "global_max_pool1d_backward"
    dy = _contiguous(_float_array(dy, "dy", fn))
    argmax = np.asarray(argmax)
    if argmax.dtype.kind not in "iu":
        raise TypeError(f"{fn}: argmax must be an integer array; got {argmax.dtype}")
    argmax = np.ascontiguousarray(argmax, dtype=np.int64)
    core = _core.global_max_pool1d_backward_ref if _ref else _core.global_max_pool1d_backward
    return core(dy, argmax, _pool_steps(steps, fn))


# --------------------------------------------------------------------------------------------
# ---- activations

ACTIVATIONS = ("linear", "sigmoid", "tanh", "relu", "softmax", "log_softmax", "gelu",
               "gelu_approximate", "silu", "swish", "elu", "selu", "leaky_relu", "softplus",
               "softsign", "hard_sigmoid", "exponential")
# Keras 3 names with their default arguments: gelu is exact (Keras gelu(approximate=False)),
# gelu_approximate the tanh form (approximate=True); swish = silu; elu alpha=1; leaky_relu
# negative_slope=0.2; hard_sigmoid = relu6(x + 3) / 6. Equations: cpp/nanonet/activations.hpp.

# Activations whose backward needs the forward input (they are not monotonic, so y does not
# determine x): their backward takes x (activation_backward) or z (dense_backward).
INPUT_ACTIVATIONS = ("gelu", "gelu_approximate", "silu", "swish")


def _activation_name(activation, fn: str) -> str:
    """None means linear (Keras's Dense(activation=None)); the name itself is checked in C++."""
    if activation is None:
        return "linear"
    if not isinstance(activation, str):
        raise TypeError(f"{fn}: activation must be a str or None; got {type(activation).__name__}")
    return activation


def _input_for(fn: str, name: str, x, arg: str, what: str):
    if x is not None:
        return _contiguous(_float_array(x, arg, fn))
    if name in INPUT_ACTIVATIONS:
        raise ValueError(f"{fn}: activation {name!r} needs the forward {what} {arg}; pass "
                         f"{arg}=")
    return None


def activation_forward(x, activation, *, _ref: bool = False) -> np.ndarray:
    """y = f(x) for any shape; activation in ACTIVATIONS (None = linear); softmax and log_softmax
    normalise the last axis and are stable for any finite x. Returns a new array.
    (_ref: the scalar C++ specification; a testing hook.)"""
    fn = "activation_forward"
    x = _contiguous(_float_array(x, "x", fn))
    name = _activation_name(activation, fn)
    f = _core.activation_forward_ref if _ref else _core.activation_forward
    return f(x, name)


def activation_backward(dy, y, activation, x=None, *, _ref: bool = False) -> np.ndarray:
    """dx from the upstream gradient dy and the forward OUTPUT y (same shape and dtype):
    relu dy*(y>0), sigmoid dy*y*(1-y), tanh dy*(1-y^2), softmax y*(dy - sum(dy*y)),
    log_softmax dy - exp(y)*sum(dy) (sums over the last axis), the others as in
    cpp/nanonet/activations.hpp. x, the forward INPUT, is needed for INPUT_ACTIVATIONS (gelu,
    gelu_approximate, silu / swish), which the caller keeps (Activation keeps it in its ctx).
    Returns a new array."""
    fn = "activation_backward"
    dy = _contiguous(_float_array(dy, "dy", fn))
    y = _contiguous(_float_array(y, "y", fn))
    _same_dtype(fn, ("dy", "y"), dy, y)
    name = _activation_name(activation, fn)
    x = _input_for(fn, name, x, "x", "input")
    f = _core.activation_backward_ref if _ref else _core.activation_backward
    return f(dy, y, name, x)


# --------------------------------------------------------------------------------------------
# ---- dense

def dense_forward(x, kernel, bias=None, activation="linear", *, return_z: bool = False,
                  _ref: bool = False):
    """y = f(x @ kernel + bias): x (B, I), kernel (I, units), bias (units,) or None. The bias and
    elementwise activations run in the GEMM epilogue; softmax / log_softmax per row after it.
    Returns a new (B, units) array; with return_z=True the pair (y, z), z = x @ kernel + bias
    written by the same epilogue (what dense_backward needs for INPUT_ACTIVATIONS; None for the
    others)."""
    if not _ref and not return_z and type(x) is np.ndarray and type(kernel) is np.ndarray and \
            type(activation) is str:
        # The common case of a model's forward: arrays already as the kernel takes them, which
        # the binding checks itself. Anything it refuses goes the converting way below (which
        # raises the same errors for what cannot be converted).
        try:
            return _core.dense_forward(x, kernel, bias, activation)
        except (TypeError, ValueError):
            pass
    fn = "dense_forward"
    x = _contiguous(_float_array(x, "x", fn))
    kernel = _contiguous(_float_array(kernel, "kernel", fn))
    if bias is not None:
        bias = _contiguous(_float_array(bias, "bias", fn))
    _same_dtype(fn, ("x", "kernel", "bias"), x, kernel, bias)
    name = _activation_name(activation, fn)
    f = _core.dense_forward_ref if _ref else _core.dense_forward
    if not return_z:
        return f(x, kernel, bias, name)
    if name in INPUT_ACTIVATIONS:
        yz = f(x, kernel, bias, name, True)  # one (2, B, units) array: [y, z]
        return yz[0], yz[1]
    return f(x, kernel, bias, name), None


def dense_backward(dy, x, kernel, y, activation="linear", need_dx: bool = True, z=None, *,
                   _ref: bool = False):
    """(dx or None, dkernel, dbias) for y = f(x @ kernel + bias), from dy (B, units) and the
    forward output y (None allowed for linear): dz = f'(y) dy, dkernel = x^T dz, dbias = sum_B dz
    (returned even for a layer without bias), dx = dz kernel^T when need_dx. z, the
    pre-activation (B, units), is needed for INPUT_ACTIVATIONS (dense_forward(..., return_z=True)
    gives it). New arrays."""
    fn = "dense_backward"
    dy = _contiguous(_float_array(dy, "dy", fn))
    x = _contiguous(_float_array(x, "x", fn))
    kernel = _contiguous(_float_array(kernel, "kernel", fn))
    if y is not None:
        y = _contiguous(_float_array(y, "y", fn))
    _same_dtype(fn, ("x", "kernel", "dy", "y"), x, kernel, dy, y)
    name = _activation_name(activation, fn)
    z = _input_for(fn, name, z, "z", "pre-activation")
    f = _core.dense_backward_ref if _ref else _core.dense_backward
    return f(dy, x, kernel, y, name, bool(need_dx), z)


def dense_chain_train_step(x, y_true, kernels, biases, activations, loss, fused_softmax,
                           from_logits, optimizer, lr, hyper, clipvalue, slots):
    """One training step of a chain of Dense layers in one call (cpp/nanonet/train_step.hpp):
    forward, loss, backward, and the update of every kernel and bias in place, the same kernels
    in the same order as a model's step from Python (bit-identical results). kernels (I_l,
    O_l) and biases (O_l,) or None per layer; activations per layer (the last 'linear' when
    fused_softmax: the softmax output trains on its logits); loss a LOSSES name;
    optimizer 'sgd' with hyper (momentum, nesterov) or 'adam' with hyper (step, beta_1,
    beta_2, epsilon, weight_decay); slots: per parameter (kernel, then bias, layer by layer)
    the list of its optimizer slot arrays (SGD: [velocity] when momentum > 0, else []; Adam:
    [m, v]). y_true (B, C) of x's dtype, or (B,) int64 ids for the sparse loss (fused only).
    Returns (loss value, y_pred (B, C): the last output, probabilities when fused_softmax).
    Models/training.py calls it for the models it covers; arrays are checked by the binding."""
    return _core.dense_chain_train_step(x, y_true, kernels, biases, activations, loss,
                                        bool(fused_softmax), bool(from_logits), optimizer,
                                        float(lr), tuple(hyper), float(clipvalue), slots)


# --------------------------------------------------------------------------------------------
# ---- lstm
# Whole sequences in one call each way; equations, layouts and threading in cpp/nanonet/lstm.hpp.
# Keras layout and gate order: kernel (I, 4H), recurrent_kernel (H, 4H), bias (4H,), i, f, c, o.

class LSTMCache:
    """What lstm_backward needs from a training lstm_forward: the kernel's caches (time-major,
    processing order) and the forward's arguments. Opaque; the weights are held by reference, so
    update them only after backward."""

    __slots__ = ("arrays", "kernel", "recurrent_kernel", "has_bias", "mask", "input_dropout_mask",
                 "recurrent_dropout_mask", "go_backwards", "activation", "recurrent_activation",
                 "return_sequences", "batch", "units")

    def __init__(self, **kw):
        for k, v in kw.items():
            setattr(self, k, v)

    def __repr__(self):
        return (f"LSTMCache(B={self.batch}, T={self.arrays[0].shape[0]}, H={self.units}, "
                f"dtype={self.arrays[0].dtype})")


def _arr(a, name: str, fn: str) -> np.ndarray:
    """a as a C-contiguous float32/float64 ndarray; returned as is when it already is one (the
    binding checks dtypes against x and shapes, with messages naming the argument)."""
    if type(a) is np.ndarray and a.dtype in _FLOATS and a.flags.c_contiguous:
        return a
    return _contiguous(_float_array(a, name, fn))


def _opt_float(a, name: str, fn: str):
    return None if a is None else _arr(a, name, fn)


def _act_name(a, name: str, fn: str) -> str:
    if a is None:
        return "linear"
    if not isinstance(a, str):
        raise TypeError(f"{fn}: {name} must be a string (tanh, sigmoid, relu, linear) or None; "
                        f"got {type(a).__name__}")
    return a


def _step_mask(mask, fn: str):
    """(B, T) mask as a C-contiguous uint8 view (nonzero = valid step)."""
    if mask is None:
        return None
    mask = np.asarray(mask)
    if mask.dtype != np.bool_:
        if not (np.issubdtype(mask.dtype, np.number)):
            raise TypeError(f"{fn}: mask must be a boolean array; got {mask.dtype}")
        mask = mask != 0
    return np.ascontiguousarray(mask).view(np.uint8)


def lstm_forward(x, kernel, recurrent_kernel, bias=None, h0=None, c0=None, mask=None,
                 go_backwards=False, activation="tanh", recurrent_activation="sigmoid",
                 input_dropout_mask=None, recurrent_dropout_mask=None, return_sequences=True,
                 training=True, *, _ref: bool = False):
    """LSTM over whole sequences: x (B, T, I) -> (y, h_n, c_n, cache).

    y is (B, T, H) in processing order when return_sequences (reversed when go_backwards, as
    Keras returns it), else (B, H) (a copy of h_n). h_n, c_n (B, H) are the final states. mask
    (B, T) bool: a False step carries the state (and outputs it). input_dropout_mask (B, I) and
    recurrent_dropout_mask (B, H) hold 0 or 1/(1-rate), applied at every step (variational).
    cache is an LSTMCache for lstm_backward when training, else None (nothing kept).
    (_ref: run the scalar C++ specification; a testing hook.)"""
    fn = "lstm_forward"
    x = _arr(x, "x", fn)
    kernel = _arr(kernel, "kernel", fn)
    recurrent_kernel = _arr(recurrent_kernel, "recurrent_kernel", fn)
    bias = None if bias is None else _arr(bias, "bias", fn)
    h0 = None if h0 is None else _arr(h0, "h0", fn)
    c0 = None if c0 is None else _arr(c0, "c0", fn)
    idm = _opt_float(input_dropout_mask, "input_dropout_mask", fn)
    rdm = _opt_float(recurrent_dropout_mask, "recurrent_dropout_mask", fn)
    m = None if mask is None else _step_mask(mask, fn)
    act = activation if type(activation) is str else _act_name(activation, "activation", fn)
    ract = (recurrent_activation if type(recurrent_activation) is str
            else _act_name(recurrent_activation, "recurrent_activation", fn))
    y, h_n, c_n, arrays = _core.lstm_forward(
        x, kernel, recurrent_kernel, bias, h0, c0, m, idm, rdm, bool(go_backwards), act, ract,
        bool(return_sequences), bool(training), bool(_ref))
    if not return_sequences:
        y = h_n.copy()
    cache = None
    if training:
        cache = LSTMCache(arrays=arrays, kernel=kernel, recurrent_kernel=recurrent_kernel,
                          has_bias=bias is not None, mask=m, input_dropout_mask=idm,
                          recurrent_dropout_mask=rdm, go_backwards=bool(go_backwards),
                          activation=act, recurrent_activation=ract,
                          return_sequences=bool(return_sequences), batch=x.shape[0],
                          units=recurrent_kernel.shape[0])
    return y, h_n, c_n, cache


def lstm_backward(dy, cache, dh_n=None, dc_n=None, need_dx=True, *, _ref: bool = False):
    """Backward through time for the loss sum(y * dy) + sum(h_n * dh_n) + sum(c_n * dc_n).

    dy: (B, T, H) when the forward returned sequences, else (B, H); any of dy, dh_n, dc_n may be
    None (zero). Returns (dx (B, T, I) or None when not need_dx, dkernel, drecurrent_kernel, dbias
    or None when the forward had no bias, dh0, dc0), all new arrays."""
    fn = "lstm_backward"
    dy, dh_n, dc_n = _lstm_backward_grads(dy, cache, dh_n, dc_n, fn)
    return _core.lstm_backward(dy, dh_n, dc_n, cache.arrays, cache.kernel, cache.recurrent_kernel,
                               cache.has_bias, cache.mask, cache.input_dropout_mask,
                               cache.recurrent_dropout_mask, cache.go_backwards, cache.activation,
                               cache.recurrent_activation, bool(need_dx), bool(_ref))


def _lstm_backward_grads(dy, cache, dh_n, dc_n, fn):
    """lstm_backward's checks: (dy (B, T, H) or None, dh_n, dc_n) for the kernel."""
    if not isinstance(cache, LSTMCache):
        raise TypeError(f"{fn}: cache must be the LSTMCache of a training lstm_forward; "
                        f"got {type(cache).__name__}")
    dt = cache.arrays[0].dtype
    dy = _opt_float(dy, "dy", fn)
    dh_n = _opt_float(dh_n, "dh_n", fn)
    dc_n = _opt_float(dc_n, "dc_n", fn)
    for name, a in (("dy", dy), ("dh_n", dh_n), ("dc_n", dc_n)):
        if a is not None and a.dtype != dt:
            raise TypeError(f"{fn}: {name} must have the forward's dtype ({dt}); got {a.dtype}")
    if dy is not None and not cache.return_sequences:
        want = (cache.batch, cache.units)
        if dy.shape != want:
            raise ValueError(f"{fn}: dy must be (B, H) = {want} (the forward returned the last "
                             f"output only); got {dy.shape}")
        dh_n = dy if dh_n is None else dy + dh_n
        dy = None
    return dy, dh_n, dc_n


# --------------------------------------------------------------------------------------------
# ---- gru, simple_rnn
# Whole sequences in one call each way; equations, layouts and threading in cpp/nanonet/gru.hpp.
# Keras layouts: GRU kernel (I, 3H), recurrent_kernel (H, 3H), gate order z, r, h, bias (2, 3H)
# with reset_after (input and recurrent biases) else (3H,); SimpleRNN kernel (I, H),
# recurrent_kernel (H, H), bias (H,).

class RNNCache:
    """What gru_backward / simple_rnn_backward need from a training forward: the kernel's caches
    and the forward's arguments. Opaque; the weights are held by reference, so update them only
    after backward."""

    __slots__ = ("cell", "arrays", "kernel", "recurrent_kernel", "has_bias", "mask",
                 "input_dropout_mask", "recurrent_dropout_mask", "go_backwards", "reset_after",
                 "activation", "recurrent_activation", "return_sequences", "batch", "units")

    def __init__(self, **kw):
        for k, v in kw.items():
            setattr(self, k, v)

    def __repr__(self):
        return (f"RNNCache({self.cell}, B={self.batch}, T={self.arrays[0].shape[0]}, "
                f"H={self.units}, dtype={self.arrays[0].dtype})")


def _rnn_forward(cell, x, kernel, recurrent_kernel, bias, h0, mask, go_backwards, reset_after,
                 activation, recurrent_activation, input_dropout_mask, recurrent_dropout_mask,
                 return_sequences, training):
    fn = f"{cell}_forward"
    x = _arr(x, "x", fn)
    kernel = _arr(kernel, "kernel", fn)
    recurrent_kernel = _arr(recurrent_kernel, "recurrent_kernel", fn)
    bias = _opt_float(bias, "bias", fn)
    h0 = _opt_float(h0, "h0", fn)
    idm = _opt_float(input_dropout_mask, "input_dropout_mask", fn)
    rdm = _opt_float(recurrent_dropout_mask, "recurrent_dropout_mask", fn)
    m = None if mask is None else _step_mask(mask, fn)
    act = _act_name(activation, "activation", fn)
    args = (x, kernel, recurrent_kernel, bias, h0, m, idm, rdm, bool(go_backwards))
    if cell == "gru":
        ract = _act_name(recurrent_activation, "recurrent_activation", fn)
        y, h_n, arrays = _core.gru_forward(*args, bool(reset_after), act, ract,
                                           bool(return_sequences), bool(training))
    else:
        ract = "linear"
        y, h_n, arrays = _core.simple_rnn_forward(*args, act, bool(return_sequences),
                                                  bool(training))
    if not return_sequences:
        y = h_n.copy()
    cache = None
    if training:
        cache = RNNCache(cell=cell, arrays=arrays, kernel=kernel,
                         recurrent_kernel=recurrent_kernel, has_bias=bias is not None, mask=m,
                         input_dropout_mask=idm, recurrent_dropout_mask=rdm,
                         go_backwards=bool(go_backwards), reset_after=bool(reset_after),
                         activation=act, recurrent_activation=ract,
                         return_sequences=bool(return_sequences), batch=x.shape[0],
                         units=recurrent_kernel.shape[0])
    return y, h_n, cache


def _rnn_backward(cell, dy, cache, dh_n, need_dx, keep_dz=False):
    fn = f"{cell}_backward_dz" if keep_dz else f"{cell}_backward"
    if not isinstance(cache, RNNCache) or cache.cell != cell:
        raise TypeError(f"{fn}: cache must be the RNNCache of a training {cell}_forward; got "
                        f"{cache!r}")
    dt = cache.arrays[0].dtype
    dy = _opt_float(dy, "dy", fn)
    dh_n = _opt_float(dh_n, "dh_n", fn)
    for name, a in (("dy", dy), ("dh_n", dh_n)):
        if a is not None and a.dtype != dt:
            raise TypeError(f"{fn}: {name} must have the forward's dtype ({dt}); got {a.dtype}")
    if dy is not None and not cache.return_sequences:
        want = (cache.batch, cache.units)
        if dy.shape != want:
            raise ValueError(f"{fn}: dy must be (B, H) = {want} (the forward returned the last "
                             f"output only); got {dy.shape}")
        dh_n = dy if dh_n is None else dy + dh_n
        dy = None
    if keep_dz:
        common = (dy, dh_n, cache.arrays, cache.kernel, cache.recurrent_kernel, cache.mask,
                  cache.input_dropout_mask, cache.recurrent_dropout_mask, cache.go_backwards)
        if cell == "gru":
            return _core.gru_backward_dz(*common, cache.reset_after, cache.activation,
                                         cache.recurrent_activation, bool(need_dx))
        return _core.simple_rnn_backward_dz(*common, cache.activation, bool(need_dx))
    common = (dy, dh_n, cache.arrays, cache.kernel, cache.recurrent_kernel, cache.has_bias,
              cache.mask, cache.input_dropout_mask, cache.recurrent_dropout_mask,
              cache.go_backwards)
    if cell == "gru":
        return _core.gru_backward(*common, cache.reset_after, cache.activation,
                                  cache.recurrent_activation, bool(need_dx))
    return _core.simple_rnn_backward(*common, cache.activation, bool(need_dx))


def gru_forward(x, kernel, recurrent_kernel, bias=None, h0=None, mask=None, go_backwards=False,
                reset_after=True, activation="tanh", recurrent_activation="sigmoid",
                input_dropout_mask=None, recurrent_dropout_mask=None, return_sequences=True,
                training=True):
    """GRU over whole sequences: x (B, T, I) -> (y, h_n, cache).

    bias: (2, 3H) = [input bias; recurrent bias] when reset_after (Keras's default), else (3H,).
    y is (B, T, H) in processing order when return_sequences (reversed when go_backwards, as
    Keras returns it), else (B, H) (a copy of h_n). mask (B, T) bool: a False step carries the
    state (and outputs it). Dropout masks (B, I) / (B, H) hold 0 or 1/(1-rate). cache is an
    RNNCache for gru_backward when training, else None."""
    return _rnn_forward("gru", x, kernel, recurrent_kernel, bias, h0, mask, go_backwards,
                        reset_after, activation, recurrent_activation, input_dropout_mask,
                        recurrent_dropout_mask, return_sequences, training)


def gru_backward(dy, cache, dh_n=None, need_dx=True):
    """Backward through time for sum(y * dy) + sum(h_n * dh_n); dy (B, T, H) or, when the forward
    returned the last output only, (B, H); dy, dh_n may be None. Returns (dx or None, dkernel,
    drecurrent_kernel, dbias or None (the bias's shape), dh0), all new arrays."""
    return _rnn_backward("gru", dy, cache, dh_n, need_dx)


def simple_rnn_forward(x, kernel, recurrent_kernel, bias=None, h0=None, mask=None,
                       go_backwards=False, activation="tanh", input_dropout_mask=None,
                       recurrent_dropout_mask=None, return_sequences=True, training=True):
    """SimpleRNN over whole sequences, h' = activation(x W + b + h U): -> (y, h_n, cache); the
    rest as gru_forward."""
    return _rnn_forward("simple_rnn", x, kernel, recurrent_kernel, bias, h0, mask, go_backwards,
                        False, activation, None, input_dropout_mask, recurrent_dropout_mask,
                        return_sequences, training)


def simple_rnn_backward(dy, cache, dh_n=None, need_dx=True):
    """As gru_backward, for simple_rnn_forward's cache."""
    return _rnn_backward("simple_rnn", dy, cache, dh_n, need_dx)


# --------------------------------------------------------------------------------------------
# ---- losses

LOSSES = ("mse", "mae", "binary_crossentropy", "categorical_crossentropy",
          "sparse_categorical_crossentropy")


def _loss_y_pred(y_pred, fn: str) -> np.ndarray:
    y_pred = _contiguous(_float_array(y_pred, "y_pred", fn))
    if y_pred.ndim == 0:
        raise ValueError(f"{fn}: y_pred must be at least 1-D (..., C); got a 0-d array")
    return y_pred


def _loss_rows(a: np.ndarray) -> np.ndarray:
    """(..., C) -> (P, C), P the product of the leading dims (a view; works when C == 0)."""
    return a.reshape(math.prod(a.shape[:-1]), a.shape[-1])


def _loss_y_true(y_true, y_pred: np.ndarray, fn: str) -> np.ndarray:
    """Dense labels as y_pred's dtype and shape; (...) is accepted for y_pred (..., 1)."""
    y_true = np.asarray(y_true)
    if y_true.dtype.kind not in "biuf":
        raise TypeError(f"{fn}: y_true must be numeric; got {y_true.dtype}")
    if y_true.shape != y_pred.shape:
        if y_pred.shape[-1] == 1 and y_true.shape == y_pred.shape[:-1]:
            y_true = y_true.reshape(y_pred.shape)
        else:
            raise ValueError(f"{fn}: y_true must have the shape of y_pred {y_pred.shape}; "
                             f"got {y_true.shape}")
    return np.ascontiguousarray(y_true, dtype=y_pred.dtype)


def _loss_ids(y_true, y_pred: np.ndarray, fn: str) -> np.ndarray:
    """Sparse labels: integer class ids shaped like y_pred's leading dims (or with a trailing 1);
    integral floats are accepted. Returns a flat C-contiguous int64 array. The range [0, C) is
    checked in C++."""
    lead = y_pred.shape[:-1]
    ids = np.asarray(y_true)
    if ids.shape == lead + (1,):
        ids = ids.reshape(lead)
    elif ids.shape != lead:
        raise ValueError(f"{fn}: sparse y_true must hold one class id per row of y_pred "
                         f"{y_pred.shape}: shape {lead} or {lead + (1,)}; got {ids.shape}")
    C = y_pred.shape[-1]
    if ids.dtype.kind in "fu":
        if ids.dtype.kind == "f":
            bad = ~np.isfinite(ids) | (ids != np.floor(ids)) | (np.abs(ids) > 2.0 ** 62)
        else:
            bad = ids >= C  # may not fit int64; any of them is out of range anyway
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"{fn}: sparse y_true must hold integer class ids in [0, C) = "
                             f"[0, {C}); got {ids[bad].flat[0].item()!r} at position {where}")
    elif ids.dtype.kind not in "ib":
        raise TypeError(f"{fn}: sparse y_true must be integer class ids; got {ids.dtype}")
    return np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)


def _loss_weight(sample_weight, y_pred: np.ndarray, fn: str):
    """None, or a flat (P,) array of y_pred's dtype: sample_weight of the leading shape of y_pred,
    that shape plus a trailing 1, a leading part of it (e.g. (N,) for (N, T, C), broadcast over
    T) or a scalar."""
    if sample_weight is None:
        return None
    lead = y_pred.shape[:-1]
    w = np.asarray(sample_weight)
    if w.dtype.kind not in "biuf":
        raise TypeError(f"{fn}: sample_weight must be numeric; got {w.dtype}")
    if w.shape == lead + (1,):
        w = w.reshape(lead)
    if w.shape != lead:
        if w.ndim <= len(lead) and w.shape == lead[:w.ndim]:
            w = np.broadcast_to(w.reshape(w.shape + (1,) * (len(lead) - w.ndim)), lead)
        else:
            raise ValueError(f"{fn}: sample_weight must have the leading shape {lead} of y_pred "
                             f"{y_pred.shape} (or a leading part of it); got {w.shape}")
    return np.ascontiguousarray(w, dtype=y_pred.dtype).reshape(-1)


def loss(name, y_true, y_pred, from_logits: bool = False, sample_weight=None,
         compute_grad: bool = True):
    """(value, grad) of a Keras loss, name in LOSSES. y_pred (..., C); per-position loss = mean
    over the last axis (mse, mae, bce) or sum (cce); value = sum(w * l) / count over the leading
    positions (Keras's sum_over_batch_size); grad = d value / d y_pred shaped like y_pred, or None
    when compute_grad is False. Probabilities are clipped to [1e-7, 1 - 1e-7] like Keras
    (categorical ones normalised by their row sum first); from_logits uses the stable fused
    log-sigmoid / log-softmax forms. Sparse y_true holds integer ids (ValueError outside [0, C))."""
    fn = "loss"
    if not isinstance(name, str):
        raise TypeError(f"{fn}: name must be a str; got {type(name).__name__}")
    if name not in LOSSES:
        raise ValueError(f"{fn}: loss must be one of {', '.join(LOSSES)}; got {name!r}")
    y_pred = _loss_y_pred(y_pred, fn)
    if name == "sparse_categorical_crossentropy":
        y_true = _loss_ids(y_true, y_pred, fn)
    else:
        y_true = _loss_rows(_loss_y_true(y_true, y_pred, fn))
    w = _loss_weight(sample_weight, y_pred, fn)
    value, grad = _core.loss(name, y_true, _loss_rows(y_pred), bool(from_logits), w,
                             bool(compute_grad))
    return value, (None if grad is None else grad.reshape(y_pred.shape))


def softmax_cross_entropy(y_true, logits, sparse: bool = False, sample_weight=None):
    """(value, dlogits): the fused, stable softmax + categorical cross-entropy (sparse: y_true
    holds class ids). Equals loss("(sparse_)categorical_crossentropy", y_true, logits,
    from_logits=True, sample_weight); dlogits = (softmax(logits) - onehot) * w / count."""
    fn = "softmax_cross_entropy"
    logits = _loss_y_pred(logits, fn)
    if sparse:
        y_true = _loss_ids(y_true, logits, fn)
    else:
        y_true = _loss_rows(_loss_y_true(y_true, logits, fn))
    w = _loss_weight(sample_weight, logits, fn)
    value, grad = _core.softmax_cross_entropy(y_true, _loss_rows(logits), bool(sparse), w)
    return value, grad.reshape(logits.shape)


# --------------------------------------------------------------------------------------------
# ---- attention
# Scaled dot-product attention over (batch, heads), flash-style (tiles + online softmax, the
# Tq x Tk scores never stored); equations, layouts and threading in cpp/nanonet/attention.hpp.
# q (B, H, Tq, D), k (B, H, Tk, D), v (B, H, Tk, Dv); mask: None, bool (B, Tk) key padding or
# (B, Tq, Tk), True = may attend; causal: key j visible to query i only when j <= i.
# scale defaults to 1 / sqrt(D). A fully masked row gives out 0, lse -inf and no gradient.

def _attn_scale(scale, D: int, fn: str) -> float:
    if scale is None:
        return 1.0 / math.sqrt(D) if D > 0 else 1.0
    if isinstance(scale, bool) or not isinstance(scale, (int, float, np.integer, np.floating)):
        raise TypeError(f"{fn}: scale must be a float or None; got {type(scale).__name__}")
    scale = float(scale)
    if not math.isfinite(scale):
        raise ValueError(f"{fn}: scale must be finite; got {scale}")
    return scale


def _attn_rows(a):
    """q, k, v or dout as the fast kernels take them: any (B, H, T, D) view whose last axis is
    contiguous and whose strides are non-negative passes as it is (the heads of a projection,
    y.reshape(B, T, H, D).transpose(0, 2, 1, 3), need no copy); anything else is copied."""
    st = a.strides
    if a.ndim == 4 and (a.shape[3] <= 1 or st[3] == a.itemsize) and \
            all(s >= 0 and s % a.itemsize == 0 for s in st[:3]):
        return a
    return np.ascontiguousarray(a)


def _attn_mask(mask):
    if mask is None:
        return None
    return np.ascontiguousarray(mask, dtype=bool)


def attention_forward(q, k, v, mask=None, causal=False, scale=None, *, _ref: bool = False):
    """softmax(q k^T * scale + mask) v -> (out (B, H, Tq, Dv), lse (B, H, Tq)); lse is the
    per-row log-sum-exp of the scaled scores, what attention_backward needs."""
    fn = "attention_forward"
    rows = _contiguous if _ref else _attn_rows
    q, k, v = (rows(_float_array(a, n, fn)) for a, n in ((q, "q"), (k, "k"), (v, "v")))
    _same_dtype(fn, ("q", "k", "v"), q, k, v)
    s = _attn_scale(scale, q.shape[-1] if q.ndim == 4 else 0, fn)
    core = _core.attention_forward_ref if _ref else _core.attention_forward
    return core(q, k, v, _attn_mask(mask), bool(causal), s)


def attention_backward(dout, q, k, v, out, lse, mask=None, causal=False, scale=None, *,
                       _ref: bool = False):
    """Gradient of attention_forward: dout (B, H, Tq, Dv) and the forward's out and lse ->
    (dq, dk, dv), shaped like q, k, v."""
    fn = "attention_backward"
    rows = _contiguous if _ref else _attn_rows
    arrays = [(rows if n in ("dout", "q", "k", "v") else _contiguous)(_float_array(a, n, fn))
              for a, n in ((dout, "dout"), (q, "q"), (k, "k"), (v, "v"), (out, "out"),
                           (lse, "lse"))]
    _same_dtype(fn, ("q", "dout", "k", "v", "out", "lse"), arrays[1], arrays[0], *arrays[2:])
    dout, q, k, v, out, lse = arrays
    s = _attn_scale(scale, q.shape[-1] if q.ndim == 4 else 0, fn)
    core = _core.attention_backward_ref if _ref else _core.attention_backward
    return core(dout, q, k, v, out, lse, _attn_mask(mask), bool(causal), s)


# --------------------------------------------------------------------------------------------
# ---- per-example gradient norms (DP-SGD; see cpp/nanonet/per_example.hpp, nanonet.privacy)

def per_example_matmul_sq_norms(a, d, time_major: bool = False, bias: bool = False, *,
                                _ref: bool = False):
    """out[b] = ||A_b^T D_b||_F^2: the squared norm of example b's gradient of a weight used on
    the T rows of each example (a Dense kernel on (B, T, I) inputs, the LSTM's stacked kernels).
    a (B, T, K), d (B, T, N), same float dtype; time_major: (T, B, K) and (T, B, N). Computed by
    the T x T Gram trick or the K x N product, whichever is cheaper. bias: plus
    ||sum_t D_b[t]||^2, the squared norm of the gradient of a bias added on every row (the
    layer's kernel and bias in one call). Returns (B,)."""
    fn = "per_example_matmul_sq_norms"
    a = _contiguous(_float_array(a, "a", fn))
    d = _contiguous(_float_array(d, "d", fn))
    return _core.per_example_matmul_sq_norms(a, d, bool(time_major), bool(bias), bool(_ref))


def embedding_per_example_sq_norms(ids, dy, *, _ref: bool = False):
    """out[b] = sum_v ||sum_{t: ids[b, t] = v} dy[b, t]||^2: the squared norm of example b's
    gradient of an embedding table. ids (B, T) integers, dy (B, T, E). Returns (B,)."""
    fn = "embedding_per_example_sq_norms"
    ids = _ids_array(ids, fn)
    dy = _contiguous(_float_array(dy, "dy", fn))
    return _core.embedding_per_example_sq_norms(ids, dy, bool(_ref))


def lstm_backward_dz(dy, cache, dh_n=None, dc_n=None, need_dx=True):
    """``lstm_backward`` that keeps the gate gradients and forms no weight gradients (DP-SGD
    forms them with per-example row scales). Returns (dx or None, dz (T, B, 4H) time-major in
    processing order, dh0, dc0). The weight gradients are ``cache.arrays[0]`` (xh, (T, B, I + H))
    transposed times dz (kernel rows first, then recurrent_kernel) and dz summed over rows."""
    fn = "lstm_backward_dz"
    dy, dh_n, dc_n = _lstm_backward_grads(dy, cache, dh_n, dc_n, fn)
    return _core.lstm_backward_dz(dy, dh_n, dc_n, cache.arrays, cache.kernel,
                                  cache.recurrent_kernel, cache.mask, cache.input_dropout_mask,
                                  cache.recurrent_dropout_mask, cache.go_backwards,
                                  cache.activation, cache.recurrent_activation, bool(need_dx))


# ---- random: DP-SGD's Gaussian noise (Philox4x32-10 + Box-Muller; cpp/nanonet/random.hpp)
# Counter-based: element i of a noise array is a function of (key, counter, i) only, so the
# values do not depend on the thread count. key: an int in [0, 2**64); counter: an int in
# [0, 2**128); an array of n elements uses noise_counters(n) consecutive counters.

def _uint(v, bits: int, name: str, fn: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{fn}: {name} must be an int; got {type(v).__name__}")
    v = int(v)
    if not 0 <= v < 1 << bits:
        raise ValueError(f"{fn}: {name} must be in [0, 2**{bits}); got {v}")
    return v


def _finite(v, name: str, fn: str, lo=None) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise TypeError(f"{fn}: {name} must be a number; got {type(v).__name__}")
    v = float(v)
    if not math.isfinite(v) or (lo is not None and v < lo):
        raise ValueError(f"{fn}: {name} must be a finite number" +
                         ("" if lo is None else f" >= {lo}") + f"; got {v!r}")
    return v


def noise_counters(n: int) -> int:
    """How many Philox counters a noise array of n elements uses: 16 * ceil(n / 64)."""
    return 16 * ((int(n) + 63) // 64)


def philox4x32(counters, key: int) -> np.ndarray:
    """Philox4x32-10 (Salmon et al. 2011) of each row of counters ((n, 4) uint32 words, c0
    first) under the 64-bit key (k0 = its low word). Returns (n, 4) uint32."""
    fn = "philox4x32"
    key = _uint(key, 64, "key", fn)
    c = np.asarray(counters)
    if c.dtype != np.uint32:
        raise TypeError(f"{fn}: counters must be uint32; got {c.dtype}")
    return _core.philox4x32(_contiguous(c), key & 0xFFFFFFFF, key >> 32)


def gaussian_noise_acc(out, key: int, counter: int, std: float, scale: float = 1.0, *,
                       _ref: bool = False) -> np.ndarray:
    """In place: out = scale * (out + std * z), z standard normal (see the section comment);
    out a C-contiguous, writeable float32/float64 ndarray. DP-SGD's privatisation in one pass
    (std = sigma * clip, scale = 1 / batch). Returns out."""
    fn = "gaussian_noise_acc"
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{fn}: out must be a numpy.ndarray updated in place; got "
                        f"{type(out).__name__}")
    key = _uint(key, 64, "key", fn)
    counter = _uint(counter, 128, "counter", fn)
    std = _finite(std, "std", fn, lo=0.0)
    scale = _finite(scale, "scale", fn)
    _core.gaussian_noise(out, key, counter & 0xFFFFFFFFFFFFFFFF, counter >> 64, scale * std,
                         scale, True, bool(_ref))
    return out


def gaussian_noise(shape, key: int, counter: int = 0, std: float = 1.0, dtype=np.float32, *,
                   _ref: bool = False) -> np.ndarray:
    """A new array of the given shape and dtype (float32/float64) of std * z, z standard normal
    from (key, counter) (see the section comment)."""
    fn = "gaussian_noise"
    key = _uint(key, 64, "key", fn)
    counter = _uint(counter, 128, "counter", fn)
    std = _finite(std, "std", fn, lo=0.0)
    dt = np.dtype(dtype)
    if dt not in _FLOATS:
        raise TypeError(f"{fn}: dtype must be float32 or float64; got {dt}")
    try:
        out = np.empty(shape, dtype=dt)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{fn}: shape must be a tuple of non-negative ints; got {shape!r}") \
            from e
    _core.gaussian_noise(out, key, counter & 0xFFFFFFFFFFFFFFFF, counter >> 64, std, 0.0, False,
                         bool(_ref))
    return out


# ---- conv
# 2-D convolution over NHWC images (Conv1D passes H = 1); equations, layouts and threading in
# cpp/nanonet/conv.hpp. Keras layout: kernel (KH, KW, C / groups, F).
# padding: "valid", "same" (Keras: out = ceil(in / stride), the extra zero on the bottom /
# right) or "causal" (only on the width axis: dilation * (KW - 1) zeros on the left).

CONV_PADDINGS = ("valid", "same", "causal")


def conv_geometry(size, window, stride, dilation, padding, fn="conv"):
    """(out, pad_before) along one axis for a window of ``window`` taps ``dilation`` apart.
    ValueError when a 'valid' window is larger than the input."""
    span = dilation * (window - 1) + 1
    if padding == "valid":
        if size < span:
            raise ValueError(f"{fn}: the window ({span} with dilation) is larger than the "
                             f"input ({size}) with padding='valid'")
        return (size - span) // stride + 1, 0
    if padding == "same":
        out = -(-size // stride)
        return out, max((out - 1) * stride + span - size, 0) // 2
    if padding == "causal":
        pad = span - 1
        return (size + pad - span) // stride + 1, pad
    raise ValueError(f"{fn}: padding must be one of {CONV_PADDINGS}; got {padding!r}")


def _pair(v, name, fn):
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        v = (v, v)
    v = tuple(v)
    if len(v) != 2 or any(isinstance(a, bool) or not isinstance(a, (int, np.integer)) or a < 1
                          for a in v):
        raise ValueError(f"{fn}: {name} must be a positive int or a pair of them; got {v!r}")
    return int(v[0]), int(v[1])


def _conv_setup(x, kernel, strides, padding, dilation_rate, fn):
    x = _contiguous(_float_array(x, "x", fn))
    kernel = _contiguous(_float_array(kernel, "kernel", fn))
    _same_dtype(fn, ("x", "kernel"), x, kernel)
    if x.ndim != 4 or kernel.ndim != 4:
        raise ValueError(f"{fn}: x must be (B, H, W, C) and kernel (KH, KW, C / groups, F); got "
                         f"shapes {x.shape} and {kernel.shape}")
    s = _pair(strides, "strides", fn)
    d = _pair(dilation_rate, "dilation_rate", fn)
    if padding == "causal":
        oh, pt = conv_geometry(x.shape[1], kernel.shape[0], s[0], d[0], "valid", fn)
    else:
        oh, pt = conv_geometry(x.shape[1], kernel.shape[0], s[0], d[0], padding, fn)
    ow, pl = conv_geometry(x.shape[2], kernel.shape[1], s[1], d[1], padding, fn)
    return x, kernel, s, d, (pt, pl), (oh, ow)


def conv2d_forward(x, kernel, bias=None, strides=1, padding="valid", dilation_rate=1, groups=1,
                   activation="linear", *, return_z: bool = False, _ref: bool = False):
    """y = f(conv(x, kernel) + bias): x (B, H, W, C), kernel (KH, KW, C / groups, F), bias (F,)
    or None -> y (B, OH, OW, F). With return_z=True the pair (y, z), z the pre-activation
    (needed by conv2d_backward for INPUT_ACTIVATIONS; None for the others). New arrays."""
    fn = "conv2d_forward"
    x, kernel, s, d, pads, out = _conv_setup(x, kernel, strides, padding, dilation_rate, fn)
    if bias is not None:
        bias = _contiguous(_float_array(bias, "bias", fn))
        _same_dtype(fn, ("x", "bias"), x, bias)
    name = _activation_name(activation, fn)
    f = _core.conv2d_forward_ref if _ref else _core.conv2d_forward
    keep_z = bool(return_z) and name in INPUT_ACTIVATIONS
    r = f(x, kernel, bias, s, pads, d, int(groups), out, name, keep_z)
    if return_z:
        return r if keep_z else (r, None)
    return r


def conv2d_backward(dy, x, kernel, y, strides=1, padding="valid", dilation_rate=1, groups=1,
                    activation="linear", need_dx: bool = True, z=None, *, _ref: bool = False):
    """(dx or None, dkernel, dbias) for y = conv2d_forward(x, kernel, bias, ...), from dy
    (B, OH, OW, F) and the forward output y (None allowed for linear); z is the pre-activation
    for INPUT_ACTIVATIONS. dbias is returned even for a conv without bias. New arrays."""
    fn = "conv2d_backward"
    x, kernel, s, d, pads, out = _conv_setup(x, kernel, strides, padding, dilation_rate, fn)
    dy = _contiguous(_float_array(dy, "dy", fn))
    if y is not None:
        y = _contiguous(_float_array(y, "y", fn))
    _same_dtype(fn, ("x", "dy", "y"), x, dy, y)
    name = _activation_name(activation, fn)
    z = _input_for(fn, name, z, "z", "pre-activation")
    if dy.ndim != 4 or dy.shape[1:3] != out:
        raise ValueError(f"{fn}: dy must be (B, OH, OW, F) with (OH, OW) = {out}; got shape "
                         f"{dy.shape}")
    f = _core.conv2d_backward_ref if _ref else _core.conv2d_backward
    return f(dy, x, kernel, y, z, s, pads, d, int(groups), name, bool(need_dx))


# --------------------------------------------------------------------------------------------
# ---- windowed pooling (MaxPooling2D / AveragePooling2D; the 1-D layers pass H = 1)
# padding "valid" or "same" as in conv_geometry; the padding is never read (max ignores it,
# average divides by the number of in-image positions, as Keras).

def _pool_setup(shape_hw, pool_size, strides, padding, fn):
    p = _pair(pool_size, "pool_size", fn)
    s = p if strides is None else _pair(strides, "strides", fn)
    if padding not in ("valid", "same"):
        raise ValueError(f"{fn}: padding must be 'valid' or 'same'; got {padding!r}")
    oh, pt = conv_geometry(shape_hw[0], p[0], s[0], 1, padding, fn)
    ow, pl = conv_geometry(shape_hw[1], p[1], s[1], 1, padding, fn)
    return p, s, (pt, pl), (oh, ow)


def _x4(x, name, fn):
    x = _contiguous(_float_array(x, name, fn))
    if x.ndim != 4:
        raise ValueError(f"{fn}: {name} must be (B, H, W, C); got shape {x.shape}")
    return x


def max_pool2d_forward(x, pool_size, strides=None, padding="valid", return_argmax=False):
    """Max over pool_size windows of x (B, H, W, C) (strides default to pool_size) -> y, or
    (y, argmax) with argmax (B, OH, OW, C) int64 = ih * W + iw of the first max (keep it only
    for training: max_pool2d_backward needs it)."""
    fn = "max_pool2d_forward"
    x = _x4(x, "x", fn)
    p, s, pads, out = _pool_setup(x.shape[1:3], pool_size, strides, padding, fn)
    return _core.max_pool2d_forward(x, p, s, pads, out, bool(return_argmax))


def max_pool2d_backward(dy, argmax, input_hw, pool_size, strides=None, padding="valid"):
    """Gradient of max_pool2d_forward: dy (B, OH, OW, C) routed to argmax -> dx (B, H, W, C)."""
    fn = "max_pool2d_backward"
    dy = _x4(dy, "dy", fn)
    argmax = np.asarray(argmax)
    if argmax.dtype.kind not in "iu":
        raise TypeError(f"{fn}: argmax must be an integer array; got {argmax.dtype}")
    argmax = np.ascontiguousarray(argmax, dtype=np.int64)
    p, s, pads, out = _pool_setup(tuple(input_hw), pool_size, strides, padding, fn)
    if dy.shape[1:3] != out:
        raise ValueError(f"{fn}: dy must be (B, OH, OW, C) with (OH, OW) = {out}; got {dy.shape}")
    return _core.max_pool2d_backward(dy, argmax, tuple(input_hw), p, s, pads)


def avg_pool2d_forward(x, pool_size, strides=None, padding="valid"):
    """Mean over the in-image part of each pool_size window of x (B, H, W, C) -> y."""
    fn = "avg_pool2d_forward"
    x = _x4(x, "x", fn)
    p, s, pads, out = _pool_setup(x.shape[1:3], pool_size, strides, padding, fn)
    return _core.avg_pool2d_forward(x, p, s, pads, out)


def avg_pool2d_backward(dy, input_hw, pool_size, strides=None, padding="valid"):
    """Gradient of avg_pool2d_forward -> dx (B, H, W, C)."""
    fn = "avg_pool2d_backward"
    dy = _x4(dy, "dy", fn)
    p, s, pads, out = _pool_setup(tuple(input_hw), pool_size, strides, padding, fn)
    if dy.shape[1:3] != out:
        raise ValueError(f"{fn}: dy must be (B, OH, OW, C) with (OH, OW) = {out}; got {dy.shape}")
    return _core.avg_pool2d_backward(dy, tuple(input_hw), p, s, pads)


# Once per process: a SIMD path that disagrees with the portable one never computes anything.
if os.environ.get("NANONET_SELF_CHECK", "1") != "0":
    self_check()


# ---- per-example gradients of GRU / SimpleRNN (DP-SGD; see cpp/nanonet/gru.hpp)

def gru_backward_dz(dy, cache, dh_n=None, need_dx=True):
    """``gru_backward`` that keeps the gate gradients and forms no weight gradients (DP-SGD forms
    them with per-example row scales). Returns (dx or None, dgx (T, B, 3H) = [dz, dr, dhh], dgr
    (T, B, 3H) = [dz, dr, dhh r] with reset_after else None, dh0), time-major in processing
    order, zero on masked rows. With xh = ``cache.arrays[0]`` (T, B, I + H) = [xd | hd]:
    dkernel = xd^T dgx, dinput_bias = sum dgx; reset_after: drecurrent_kernel = hd^T dgr,
    drecurrent_bias = sum dgr; else drecurrent_kernel[:, :2H] = hd^T dgx[..., :2H] and
    [:, 2H:] = aux^T dgx[..., 2H:] (aux = ``cache.arrays[3]`` = r * hd)."""
    return _rnn_backward("gru", dy, cache, dh_n, need_dx, keep_dz=True)


def simple_rnn_backward_dz(dy, cache, dh_n=None, need_dx=True):
    """``simple_rnn_backward`` that keeps dpre (T, B, H) and forms no weight gradients: returns
    (dx or None, dpre, None, dh0); [kernel; recurrent_kernel]'s gradient is xh^T dpre."""
    return _rnn_backward("simple_rnn", dy, cache, dh_n, need_dx, keep_dz=True)
