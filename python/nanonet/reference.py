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
