"""NumPy twins of every op in :mod:`nanonet.ops`: same names, same arguments, written for clarity.

This module is the specification: tests compare the compiled kernels against it and benchmarks
time both. It computes in the dtype of its inputs.
"""
from __future__ import annotations

import numpy as np


# --------------------------------------------------------------------------------------------
# gemm

def matmul(a, b, transpose_a=False, transpose_b=False):
    a = np.asarray(a)
    b = np.asarray(b)
    return (a.T if transpose_a else a) @ (b.T if transpose_b else b)


def gemm(a, b, c, alpha=1.0, beta=0.0, transpose_a=False, transpose_b=False):
    prod = alpha * matmul(a, b, transpose_a, transpose_b)
    c[...] = prod if beta == 0 else prod + beta * c
    return c


# --------------------------------------------------------------------------------------------
# ---- embedding

def _ids(ids, input_dim, fn):
    ids = np.asarray(ids)
    if ids.dtype.kind == "f":
        if not np.all(np.isfinite(ids) & (ids == np.floor(ids))):
            raise ValueError(f"{fn}: ids must be integers")
    elif ids.dtype.kind not in "iu":
        raise TypeError(f"{fn}: ids must be an integer array; got {ids.dtype}")
    ids = ids.astype(np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= input_dim):
        bad = ids[(ids < 0) | (ids >= input_dim)].flat[0]
        raise ValueError(f"{fn}: ids must be in [0, V) = [0, {input_dim}); got {bad}")
    return ids


def embedding_forward(ids, embeddings):
    embeddings = np.asarray(embeddings)
    return embeddings[_ids(ids, embeddings.shape[0], "embedding_forward")]


def embedding_backward(dy, ids, input_dim):
    dy = np.asarray(dy)
    ids = _ids(ids, input_dim, "embedding_backward")
    dembeddings = np.zeros((input_dim, dy.shape[-1]), dy.dtype)
    np.add.at(dembeddings, ids.reshape(-1), dy.reshape(-1, dy.shape[-1]))
    return dembeddings
