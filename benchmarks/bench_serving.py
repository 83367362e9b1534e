"""Serving: single-sample latency through ``model(x)``, ``predict``, ``predict_on_batch`` and the
HTTP server (``python -m nanonet serve``, one keep-alive connection), and the server's throughput
under concurrent load from a loopback load generator (client threads with keep-alive
``http.client`` connections, bounded by time and count), reporting requests/s and p50/p99
latency in ``extra_info``.

The model is the showcase text classifier, Embedding(20000, 128) -> LSTM(128,
return_sequences=True) -> LSTM(128) -> Dense(4, softmax) at T = 100 (an MLP when the sequence
layers are missing). The server runs in a child process with the same thread count as the
benchmark, on 127.0.0.1 only. Every answer is checked against ``model.predict``, so
``--benchmark-disable`` turns this file into a quick test (the load phase then lasts 0.5 s).

Targets (issue 4): model(x) at most a quarter of PyTorch's eager latency (bench_showcase.py);
predict within 1.5x of model(x); the server >= 500 single-sample requests/s with p99 < 20 ms on
2 cores.
"""
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import nanonet as nn

from conftest import record

V, E, H, C, T = 20000, 128, 128, 4, 100
HOST = "127.0.0.1"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOAD_SECONDS = float(os.environ.get("NANONET_BENCH_LOAD_SECONDS", "5"))
LOAD_CLIENTS = int(os.environ.get("NANONET_BENCH_LOAD_CLIENTS", "8"))
MAX_REQUESTS_PER_CLIENT = 50_000


def _showcase():
    nn.set_seed(0)
    layers = nn.layers
    if hasattr(layers, "LSTM") and hasattr(layers, "Embedding"):
        model = nn.Sequential([layers.Input((T,), dtype="int32"), layers.Embedding(V, E),
                               layers.LSTM(H, return_sequences=True), layers.LSTM(H),
                               layers.Dense(C, activation="softmax")])
        x = np.random.default_rng(0).integers(1, V, size=(1, T)).astype(np.int32)
        return "showcase", model, x
    model = nn.Sequential([layers.Input((256,)), layers.Dense(256, activation="relu"),
                           layers.Dense(256, activation="relu"),
                           layers.Dense(C, activation="softmax")])
    x = np.random.default_rng(0).standard_normal((1, 256)).astype(np.float32)
    return "mlp", model, x


@pytest.fixture(scope="module")
def showcase(tmp_path_factory):
    name, model, x = _showcase()
    path = tmp_path_factory.mktemp("serving") / "model.nnet"
    model.save(path)
    return name, model, x, path


class _Server:
    """``python -m nanonet serve`` in a child process on an ephemeral loopback port."""

    def __init__(self, path, threads, max_batch):
        env = dict(os.environ, PYTHONUNBUFFERED="1",
                   PYTHONPATH=os.path.join(ROOT, "python") + os.pathsep +
                   os.environ.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nanonet", "serve", str(path), "--host", HOST, "--port", "0",
             "--threads", str(threads), "--max-batch", str(max_batch)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        line = self.proc.stdout.readline()
        if f"http://{HOST}:" not in line:
            self.stop()
            raise RuntimeError(f"the server did not start: {line!r} {self.proc.stderr.read()}")
        self.port = int(line.split(f"http://{HOST}:")[1].split()[0])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.communicate()


@pytest.fixture(scope="module")
def servers(showcase):
    started = {}

    def get(threads, max_batch=32):
        key = (threads, max_batch)
        if key not in started:
            started[key] = _Server(showcase[3], threads, max_batch)
        return started[key]

    yield get
    for server in started.values():
        server.stop()


def _post(conn, body):
    conn.request("POST", "/predict", body, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {data[:200]!r}")
    return json.loads(data)["outputs"]


@pytest.mark.parametrize("side", ["model(x)", "predict", "predict_on_batch", "http"])
def test_single_sample_latency(benchmark, threads, servers, showcase, side):
    name, model, x, _ = showcase
    want = model.predict(x, verbose=0)
    benchmark.group = f"serving {name} b1 t{threads}"
    record(benchmark, "nanonet" if side == "model(x)" else f"nanonet {side}", threads,
           model=name, path=side)
    if side == "model(x)":
        out = benchmark(model, x)
    elif side == "predict":
        out = benchmark(model.predict, x, verbose=0)
    elif side == "predict_on_batch":
        out = benchmark(model.predict_on_batch, x)
    else:
        server = servers(threads)
        conn = http.client.HTTPConnection(HOST, server.port, timeout=30)
        body = json.dumps({"inputs": x[0].tolist()})
        try:
            out = np.asarray([benchmark(_post, conn, body)], np.float32)
        finally:
            conn.close()
    np.testing.assert_allclose(np.asarray(out), want, rtol=1e-5, atol=1e-6)


def _load(port, body, want, seconds, clients):
    """clients threads, each with one keep-alive connection, sending requests for `seconds`;
    returns (latencies in seconds, errors, wall time)."""
    latencies = [[] for _ in range(clients)]
    errors = []
    start = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def client(k):
        conn = http.client.HTTPConnection(HOST, port, timeout=30)
        mine = latencies[k]
        try:
            start.wait(timeout=60)
            while time.perf_counter() < stop_at[0] and len(mine) < MAX_REQUESTS_PER_CLIENT:
                t0 = time.perf_counter()
                out = _post(conn, body)
                mine.append(time.perf_counter() - t0)
                if len(mine) == 1:
                    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)
        except Exception as e:  # noqa: BLE001 - reported by the test
            errors.append(repr(e))
        finally:
            conn.close()

    workers = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(clients)]
    for w in workers:
        w.start()
    stop_at[0] = time.perf_counter() + seconds
    t0 = time.perf_counter()
    start.wait(timeout=60)
    for w in workers:
        w.join(seconds + 60)
    wall = time.perf_counter() - t0
    return np.array([t for lat in latencies for t in lat]), errors, wall


@pytest.mark.parametrize("max_batch", [1, 32], ids=["nobatch", "batch32"])
def test_server_throughput(benchmark, threads, servers, showcase, max_batch):
    name, model, x, _ = showcase
    server = servers(threads, max_batch)
    body = json.dumps({"inputs": x[0].tolist()})
    want = model.predict(x, verbose=0)[0]
    seconds = 0.5 if benchmark.disabled else LOAD_SECONDS
    benchmark.group = f"serving {name} load {LOAD_CLIENTS} clients t{threads}"
    record(benchmark, "nanonet" if max_batch > 1 else "nanonet max-batch 1", threads,
           model=name, clients=LOAD_CLIENTS, max_batch=max_batch, seconds=seconds)
    result = {}

    def run():
        result["lat"], result["errors"], result["wall"] = _load(server.port, body, want, seconds,
                                                                 LOAD_CLIENTS)

    benchmark.pedantic(run, rounds=1, iterations=1)
    lat, errors, wall = result["lat"], result["errors"], result["wall"]
    assert not errors, errors[:3]
    assert lat.size > 0
    ms = lat * 1e3
    benchmark.extra_info.update(
        requests=int(lat.size), requests_per_s=float(lat.size / wall),
        p50_ms=float(np.percentile(ms, 50)), p99_ms=float(np.percentile(ms, 99)),
        max_ms=float(ms.max()))
