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

import numpy as np

from . import _core

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
    """Number of threads every kernel uses (n >= 1)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"set_num_threads: n must be an int; got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"set_num_threads: n must be >= 1; got {n}")
    _core.set_num_threads(int(n))


def get_num_threads() -> int:
    return _core.get_num_threads()


def active_isa() -> str:
    """SIMD path in use: 'avx512', 'avx2' or 'ref'."""
    return _core.active_isa()


def detect_isa() -> str:
    return _core.detect_isa()


def set_isa(isa: str) -> None:
    """Choose the SIMD path ('ref', 'avx2', 'avx512'); ValueError if the CPU lacks it."""
    _core.set_isa(isa)


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
