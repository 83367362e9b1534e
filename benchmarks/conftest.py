"""Shared benchmark fixtures: pinned thread counts on every side.

`threads` sets nanonet's OpenMP threads, NumPy's BLAS threads (threadpoolctl) and, when torch is
installed, torch's intra-op threads to the same count for the duration of one benchmark.
Run: python -m pytest benchmarks --benchmark-only --benchmark-json=bench.json
then python benchmarks/report.py bench.json for the ratio table.
"""
import contextlib

import pytest

import nanonet as nn

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover - benchmarks need it to pin NumPy's BLAS
    threadpool_limits = None

try:
    import torch
except ImportError:
    torch = None

THREADS = [1, 2]


@contextlib.contextmanager
def pinned_threads(n):
    if threadpool_limits is None:
        pytest.skip("threadpoolctl is needed to pin NumPy's BLAS threads: pip install threadpoolctl")
    before = nn.get_num_threads()
    torch_before = torch.get_num_threads() if torch is not None else None
    nn.set_num_threads(n)
    if torch is not None:
        torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield n
    finally:
        nn.set_num_threads(before)
        if torch is not None:
            torch.set_num_threads(torch_before)


@pytest.fixture(params=THREADS, ids=lambda n: f"t{n}")
def threads(request):
    with pinned_threads(request.param) as n:
        yield n


def record(benchmark, side, threads, flops=None, **info):
    """Store side (numpy/nanonet/torch), threads, and GFLOP/s (after the run) in extra_info."""
    benchmark.extra_info.update(side=side, threads=threads, **info)
    if flops is not None:
        benchmark.extra_info["flops"] = flops
