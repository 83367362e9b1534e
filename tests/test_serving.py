"""The HTTP server: real requests on 127.0.0.1 (ephemeral ports), good and bad ones, many
concurrent ones, batching, graceful shutdown, and the ``serve`` command line."""
import argparse
import re
import concurrent.futures
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import nanonet as nn
from nanonet import layers as L
from nanonet import serving
from nanonet.serving import Batcher, ModelServer, RequestError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 20


def _mlp(seed=0):
    nn.set_seed(seed)
    return nn.Sequential([L.Input((8,)), L.Dense(16, activation="relu"),
                          L.Dense(3, activation="softmax")])


def _text_model(seed=0):
    nn.set_seed(seed)
    return nn.Sequential([L.Input((6,), dtype="int32"), L.Embedding(50, 8, mask_zero=True),
                          L.LSTM(8), L.Dense(4, activation="softmax")])


@pytest.fixture
def mlp_server():
    model = _mlp()
    server = ModelServer(model, port=0, max_body_bytes=20_000).start()
    yield model, server
    server.shutdown(timeout=TIMEOUT)


class Client:
    """A keep-alive HTTP/1.1 client with a timeout."""

    def __init__(self, server):
        self.conn = http.client.HTTPConnection(server.host, server.port, timeout=TIMEOUT)

    def request(self, method, path, body=None, headers=None):
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        self.conn.request(method, path, body=body, headers=headers or {})
        resp = self.conn.getresponse()
        data = resp.read()
        return resp.status, json.loads(data) if data else None, resp

    def predict(self, inputs):
        return self.request("POST", "/predict", {"inputs": inputs})

    def close(self):
        self.conn.close()


def test_health(mlp_server):
    model, server = mlp_server
    c = Client(server)
    status, body, resp = c.request("GET", "/health")
    assert status == 200 and resp.getheader("Content-Type") == "application/json"
    assert body["status"] == "ok" and body["model"] == model.name
    assert body["input_shape"] == [None, 8] and body["input_dtype"] == "float32"
    assert body["output_shape"] == [None, 3] and body["params"] == model.count_params()
    assert body["layers"] == ["Dense", "Dense"] and body["max_batch"] == 32
    c.close()


def test_single_sample_and_batch(mlp_server):
    model, server = mlp_server
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 8)).astype(np.float32)
    want = model.predict(x, verbose=0)
    c = Client(server)
    status, body, _ = c.predict(x[0].tolist())
    assert status == 200
    np.testing.assert_allclose(body["outputs"], want[0], rtol=1e-6, atol=1e-7)
    status, body, _ = c.predict(x.tolist())
    assert status == 200 and np.shape(body["outputs"]) == (5, 3)
    np.testing.assert_allclose(body["outputs"], want, rtol=1e-6, atol=1e-7)
    status, body, _ = c.predict([[1, 2, 3, 4, 5, 6, 7, 8]])  # ints for a float model
    assert status == 200 and np.shape(body["outputs"]) == (1, 3)
    c.close()


BAD = [
    (b"{not json", "not valid JSON"),
    (b'{"inputs": [NaN, 1, 1, 1, 1, 1, 1, 1]}', "NaN is not allowed"),
    (b'{"inputs": [1e999, 1, 1, 1, 1, 1, 1, 1]}', "finite numbers"),
    (b"[1, 2, 3]", "JSON object"),
    (b'{"x": [1]}', "JSON object"),
    (b'{"inputs": 3}', "list of numbers"),
    (b'{"inputs": "abc"}', "list of numbers"),
    (b'{"inputs": [1, 2, 3]}', r"each sample must have shape \(8,\); got \(3,\)"),
    (b'{"inputs": [[[1, 2, 3, 4, 5, 6, 7, 8]]]}', r"shape \(8,\) for one sample or \(n, 8\)"),
    (b'{"inputs": []}', "inputs is empty"),
    (b'{"inputs": [[]]}', "inputs is empty"),
    (b'{"inputs": [[1, 2, 3, 4, 5, 6, 7, 8], [1, 2]]}', "rectangular"),
    (b'{"inputs": ["a", "b", "c", "d", "e", "f", "g", "h"]}', "strings"),
    (b'{"inputs": [null, 1, 1, 1, 1, 1, 1, 1]}', "numbers"),
    (b'{"inputs": [true, false, true, true, true, true, true, true]}', "booleans"),
    (b'{"inputs": [100000000000000000000000000, 1, 1, 1, 1, 1, 1, 1]}', "numbers"),
    (b'{"inputs": [{"a": 1}, 1, 1, 1, 1, 1, 1, 1]}', "numbers"),
    (b'\xff\xfe', "not valid JSON"),
]


@pytest.mark.parametrize("body,match", BAD, ids=[m for _, m in BAD])
def test_bad_requests_get_400_and_the_server_keeps_running(mlp_server, body, match):
    import re
    _, server = mlp_server
    c = Client(server)
    status, reply, resp = c.request("POST", "/predict", body)
    assert status == 400 and resp.getheader("Content-Type") == "application/json"
    assert re.search(match, reply["error"]), reply
    # same connection still usable
    status, _, _ = c.predict([0.0] * 8)
    assert status == 200
    c.close()


def test_wrong_paths_and_methods(mlp_server):
    _, server = mlp_server
    c = Client(server)
    assert c.request("GET", "/nope")[0] == 404
    assert c.request("POST", "/nope", b"{}")[0] == 404
    status, body, resp = c.request("GET", "/predict")
    assert status == 405 and resp.getheader("Allow") == "POST"
    assert c.request("POST", "/health", b"{}")[0] == 405
    status, body, _ = c.request("PUT", "/predict", b"{}")
    assert status == 405 and "not allowed" in body["error"]
    assert c.request("GET", "/health?verbose=1")[0] == 200
    c.close()


def test_oversized_body_gets_413_without_being_read(mlp_server):
    _, server = mlp_server
    c = Client(server)
    big = json.dumps({"inputs": [[0.5] * 8] * 2000})
    assert len(big) > 20_000
    status, body, resp = c.request("POST", "/predict", big)
    assert status == 413 and "limit is 20000" in body["error"]
    assert resp.getheader("Connection") == "close"
    c.close()
    # A huge declared length is refused before any byte of the body arrives.
    with socket.create_connection((server.host, server.port), timeout=TIMEOUT) as s:
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000000\r\n\r\n")
        reply = s.recv(65536).decode()
    assert reply.startswith("HTTP/1.1 413")


def _raw(server, data):
    with socket.create_connection((server.host, server.port), timeout=TIMEOUT) as s:
        s.sendall(data)
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks).decode("latin-1")


def _read_all(sock):
    chunks = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _wait_for(condition, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def test_missing_or_bad_content_length(mlp_server):
    _, server = mlp_server
    reply = _raw(server, b"POST /predict HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert reply.startswith("HTTP/1.1 411") and "Content-Length" in reply
    reply = _raw(server, b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n")
    assert reply.startswith("HTTP/1.1 400") and "invalid Content-Length" in reply
    reply = _raw(server, b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                         b"\r\n5\r\nhello\r\n0\r\n\r\n")
    assert reply.startswith("HTTP/1.1 411") and "chunked" in reply
    reply = _raw(server, b"GET / x HTTP/1.1\r\n\r\n")  # a malformed request line, as JSON
    assert reply.startswith("HTTP/1.1 400") and '{"error":"Bad request syntax' in reply
    reply = _raw(server, b"GET / HTTP/x.y\r\n\r\n")
    assert reply.startswith("HTTP/1.1 400") and '{"error":"Bad request version' in reply
    # a client that promises a body and disappears does not hurt the server
    with socket.create_connection((server.host, server.port), timeout=TIMEOUT) as s:
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"in")
    c = Client(server)
    assert c.request("GET", "/health")[0] == 200
    c.close()


def test_many_concurrent_requests(mlp_server):
    model, server = mlp_server
    rng = np.random.default_rng(1)
    x = rng.standard_normal((16, 8)).astype(np.float32)
    want = model.predict(x, verbose=0)
    errors = []

    def client(i):
        c = Client(server)
        try:
            for k in range(8):
                j = (i + k) % 16
                status, body, _ = c.predict(x[j].tolist())
                if status != 200:
                    errors.append((status, body))
                    continue
                np.testing.assert_allclose(body["outputs"], want[j], rtol=1e-5, atol=1e-6)
        finally:
            c.close()

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        for f in [pool.submit(client, i) for i in range(16)]:
            f.result(timeout=120)
    assert not errors
    health = Client(server).request("GET", "/health")[1]
    assert health["requests"] == 128 and 1 <= health["batches"] <= 128


def test_concurrent_requests_are_batched():
    model = _mlp()
    calls = []
    real = model.predict_on_batch

    def spy(x):
        calls.append(x.shape[0])
        time.sleep(0.1)  # a slow model: requests arriving meanwhile queue up for one batch
        return real(x)

    server = ModelServer(model, port=0, max_batch=8, batch_timeout_ms=50)
    server.batcher.predict = spy
    server.start()
    try:
        barrier = threading.Barrier(8)

        def one(i):
            c = Client(server)
            barrier.wait(timeout=TIMEOUT)
            status, _, _ = c.predict([float(i)] * 8)
            c.close()
            return status

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(one, range(8), timeout=120))
        assert statuses == [200] * 8
        assert sum(calls) == 8 and max(calls) > 1 and len(calls) < 8
    finally:
        server.shutdown(timeout=TIMEOUT)


def test_integer_inputs_for_a_text_model():
    model = _text_model()
    server = ModelServer(model, port=0).start()
    try:
        c = Client(server)
        ids = [[3, 7, 1, 0, 0, 0], [5, 5, 5, 5, 2, 1]]
        status, body, _ = c.predict(ids)
        assert status == 200
        np.testing.assert_allclose(body["outputs"], model.predict(np.array(ids, np.int32),
                                                                  verbose=0), rtol=1e-5,
                                   atol=1e-6)
        assert c.predict([3.0, 7.0, 1.0, 0.0, 0.0, 0.0])[0] == 200  # whole-number floats
        status, body, _ = c.predict([3.5, 7, 1, 0, 0, 0])
        assert status == 400 and "integers" in body["error"]
        status, body, _ = c.predict([3, 7, 1, 0, 0, 2**40])
        assert status == 400 and "int32" in body["error"]
        status, body, _ = c.predict([3, 7, 99, 0, 0, 0])  # id >= vocabulary: the model refuses
        assert status == 400 and "99" in body["error"]
        status, body, _ = c.predict([3, 7, 1, 0])
        assert status == 400 and r"(6,)" in body["error"]
        c.close()
    finally:
        server.shutdown(timeout=TIMEOUT)


def test_shutdown_finishes_requests_in_flight():
    model = _mlp()
    started = threading.Event()
    real = model.predict_on_batch

    def slow(x):
        started.set()
        time.sleep(0.3)
        return real(x)

    server = ModelServer(model, port=0)
    server.batcher.predict = slow
    server.start()
    result = {}

    def request():
        c = Client(server)
        result["status"] = c.predict([0.0] * 8)[0]
        c.close()

    t = threading.Thread(target=request)
    t.start()
    assert started.wait(TIMEOUT)
    server.shutdown(timeout=TIMEOUT)
    t.join(TIMEOUT)
    assert result["status"] == 200
    with pytest.raises(OSError):
        socket.create_connection((server.host, server.port), timeout=2).close()
    server.shutdown()  # idempotent


def test_connection_limit_closes_the_longest_idle_connection_to_make_room():
    server = ModelServer(_mlp(), port=0, max_connections=2).start()
    try:
        a = socket.create_connection((server.host, server.port), timeout=TIMEOUT)
        time.sleep(0.05)
        b = socket.create_connection((server.host, server.port), timeout=TIMEOUT)
        time.sleep(0.05)
        # a third client is answered: the connection idle the longest (a) gives up its slot
        reply = _raw(server, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert reply.startswith("HTTP/1.1 200")
        assert a.recv(100) == b""  # closed by the server
        b.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert _read_all(b).startswith(b"HTTP/1.1 200")
        a.close()
        b.close()
    finally:
        server.shutdown(timeout=TIMEOUT)


def test_connection_limit_answers_503_when_every_slot_waits_for_the_model():
    model = _mlp()
    real = model.predict_on_batch
    release = threading.Event()

    def slow(x):
        release.wait(TIMEOUT)
        return real(x)

    server = ModelServer(model, port=0, max_connections=2)
    server.batcher.predict = slow
    server.start()
    busy = []
    try:
        body = json.dumps({"inputs": [0.0] * 8}).encode()
        for _ in range(2):
            s = socket.create_connection((server.host, server.port), timeout=TIMEOUT)
            s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: " +
                      str(len(body)).encode() + b"\r\n\r\n" + body)
            busy.append(s)
        _wait_for(lambda: len([c for c in list(server._conns.values()) if c.pending]) == 2)
        reply = _raw(server, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert reply.startswith("HTTP/1.1 503") and "too many open connections" in reply
        release.set()
        for s in busy:
            assert s.recv(65536).startswith(b"HTTP/1.1 200")
    finally:
        release.set()
        for s in busy:
            s.close()
        server.shutdown(timeout=TIMEOUT)


def test_embedding_model_without_input_layer_takes_integer_ids(tmp_path):
    nn.set_seed(3)
    model = nn.Sequential([L.Embedding(30, 4), L.LSTM(3), L.Dense(2, activation="softmax")])
    ids = np.array([[1, 2, 3, 4, 0], [5, 6, 7, 0, 0]])
    model.predict(ids, verbose=0)  # built from integer data
    model.save(tmp_path / "m.nnet")
    loaded = nn.load_model(tmp_path / "m.nnet")
    assert serving.input_spec(loaded) == ((5,), np.dtype("int32"))
    server = ModelServer(loaded, port=0).start()
    try:
        c = Client(server)
        status, body, _ = c.predict(ids.tolist())
        assert status == 200
        np.testing.assert_allclose(body["outputs"], model.predict(ids, verbose=0), rtol=1e-5,
                                   atol=1e-6)
        assert c.predict([1.5, 2, 3, 4, 0])[0] == 400
        c.close()
    finally:
        server.shutdown(timeout=TIMEOUT)


def test_lone_request_is_not_held_for_the_batch_window():
    model = _mlp()
    server = ModelServer(model, port=0, batch_timeout_ms=5000).start()
    try:
        c = Client(server)
        t0 = time.perf_counter()
        for _ in range(3):
            assert c.predict([0.5] * 8)[0] == 200
        assert time.perf_counter() - t0 < 4.0  # far below one 5 s window
        c.close()
    finally:
        server.shutdown(timeout=TIMEOUT)


def test_model_runs_with_the_callers_thread_count():
    # OpenMP's thread count is per calling thread: the batcher thread must get the count that
    # was set where the server was made, not OpenMP's default.
    before = nn.get_num_threads()
    seen = []
    try:
        nn.set_num_threads(1 if before != 1 else 2)
        want = nn.get_num_threads()
        model = _mlp()
        real = model.predict_on_batch

        def spy(x):
            seen.append(nn.get_num_threads())
            return real(x)

        server = ModelServer(model, port=0)
        server.batcher.predict = spy
        server.start()
        try:
            assert Client(server).predict([0.0] * 8)[0] == 200
        finally:
            server.shutdown(timeout=TIMEOUT)
    finally:
        nn.set_num_threads(before)
    assert seen == [want]


# -- the batcher on its own ---------------------------------------------------------------------
def test_batcher_gathers_up_to_max_batch():
    sizes = []
    b = Batcher(lambda x: (sizes.append(x.shape[0]), x * 2)[1], max_batch=4, timeout_ms=0)
    pending = [b.submit(np.full((1, 3), i, np.float32)) for i in range(10)]
    b.start()
    for i, p in enumerate(pending):
        np.testing.assert_array_equal(Batcher.wait(p, TIMEOUT), np.full((1, 3), 2 * i))
    b.close(TIMEOUT)
    assert sizes == [4, 4, 2]


def test_batcher_groups_shapes_and_isolates_failures():
    calls = []

    def predict(x):
        calls.append(x.shape)
        if (x < 0).any():
            raise ValueError("negative input")
        return x.sum(axis=1)

    b = Batcher(predict, max_batch=16, timeout_ms=0)
    good = b.submit(np.ones((2, 3), np.float32))
    bad = b.submit(-np.ones((1, 3), np.float32))
    other = b.submit(np.ones((1, 5), np.float32))
    good2 = b.submit(np.ones((1, 3), np.float32))
    b.start()
    np.testing.assert_array_equal(Batcher.wait(good, TIMEOUT), [3, 3])
    np.testing.assert_array_equal(Batcher.wait(good2, TIMEOUT), [3])
    np.testing.assert_array_equal(Batcher.wait(other, TIMEOUT), [5])
    with pytest.raises(ValueError, match="negative input"):
        Batcher.wait(bad, TIMEOUT)
    b.close(TIMEOUT)
    # one call for the (n, 3) group (fails), retries one by one, one call for the (n, 5) group
    assert calls[0] == (4, 3) and (1, 5) in calls and len(calls) == 5


def test_batcher_waits_for_announced_requests_only():
    sizes = []
    b = Batcher(lambda x: (sizes.append(x.shape[0]), x)[1], max_batch=8, timeout_ms=10_000)
    b.announce()  # a request is being received
    first = b.submit(np.ones((1, 2)))
    b.start()
    time.sleep(0.2)
    assert not first.event.is_set()  # held for the announced one
    second = b.submit(np.ones((1, 2)), announced=True)
    Batcher.wait(first, TIMEOUT)
    Batcher.wait(second, TIMEOUT)
    assert sizes == [2]
    b.announce()
    third = b.submit(np.ones((1, 2)))
    time.sleep(0.1)
    b.withdraw()  # the announced request failed validation: stop waiting for it
    Batcher.wait(third, TIMEOUT)
    assert sizes == [2, 1]
    b.close(TIMEOUT)


def test_batcher_waits_only_for_the_pass_that_queued_its_first_request():
    # The event loop announces every pass; a batch waits for the pass that read its first
    # request, not for the passes after it (a busy loop would hold it for the whole window).
    sizes = []
    b = Batcher(lambda x: (sizes.append(x.shape[0]), x)[1], max_batch=8,
                timeout_ms=10_000).start()
    b.announce()  # pass 1 reads a request
    first = b.submit(np.ones((1, 2)))
    b.withdraw()  # pass 1 ends
    b.announce()  # pass 2 begins and stays open
    t0 = time.perf_counter()
    Batcher.wait(first, TIMEOUT)
    assert time.perf_counter() - t0 < 5.0 and sizes == [1]
    b.withdraw()
    b.close(TIMEOUT)


def test_batcher_calls_batch_done_after_each_model_calls_callbacks():
    events = []
    b = Batcher(lambda x: x, max_batch=4, timeout_ms=0,
                batch_done=lambda: events.append("done"))
    pending = [b.submit(np.full((1, 2), i), callback=lambda p, i=i: events.append(i))
               for i in range(6)]
    pending.append(b.submit(np.ones((1, 3)), callback=lambda p: events.append("other")))
    b.start()
    for p in pending:
        Batcher.wait(p, TIMEOUT)
    b.close(TIMEOUT)
    # 4 of shape (1, 2); then 2 more and the (1, 3) one, one call per shape
    assert events == [0, 1, 2, 3, "done", 4, 5, "done", "other", "done"]


def test_batcher_queue_limit_and_closing():
    b = Batcher(lambda x: x, max_queue=2)
    b.submit(np.ones((1, 1)))
    b.submit(np.ones((1, 1)))
    with pytest.raises(RequestError) as e:
        b.submit(np.ones((1, 1)))
    assert e.value.status == 503
    b.start()
    b.close(TIMEOUT)  # answers what was queued, then stops
    with pytest.raises(RequestError) as e:
        b.submit(np.ones((1, 1)))
    assert e.value.status == 503
    for bad in (dict(max_batch=0), dict(timeout_ms=-1), dict(max_queue=0)):
        with pytest.raises(ValueError):
            Batcher(lambda x: x, **bad)


def test_parse_inputs_shapes_with_unknown_dims():
    x, single = serving.parse_inputs({"inputs": [[1, 2], [3, 4], [5, 6]]}, (None, 2),
                                     np.dtype("float32"))
    assert single and x.shape == (1, 3, 2) and x.dtype == np.float32
    x, single = serving.parse_inputs({"inputs": [[[1, 2]], [[3, 4]]]}, (None, 2),
                                     np.dtype("float32"))
    assert not single and x.shape == (2, 1, 2)


def test_unbuilt_model_cannot_be_served():
    with pytest.raises(ValueError, match="not built"):
        ModelServer(nn.Sequential([L.Dense(2)]), port=0)


# -- command line -------------------------------------------------------------------------------
def _serve_command(model_path, *extra):
    args = [sys.executable, "-m", "nanonet", "serve", str(model_path), "--port", "0", *extra]
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(nn.__file__))) + os.pathsep +
               os.environ.get("PYTHONPATH", ""), PYTHONUNBUFFERED="1")
    return args, env


def test_add_arguments_defaults():
    parser = argparse.ArgumentParser()
    serving.add_arguments(parser)
    args = parser.parse_args(["m.nnet"])
    assert (args.model, args.host, args.port, args.max_batch, args.batch_timeout_ms) == \
        ("m.nnet", "127.0.0.1", 8000, 32, 2.0)
    assert args.func is serving.run and args.threads is None
    assert (args.max_samples_per_request, args.request_deadline, args.idle_timeout,
            args.max_connections, args.model_name) == (32768, 15.0, 60.0, 1024, None)
    assert 1 <= serving.default_threads() <= max(1, nn.get_num_threads())
    assert serving.__doc__.splitlines()[0]
    for bad in (["m", "--port", "70000"], ["m", "--max-batch", "0"],
                ["m", "--batch-timeout-ms", "-1"], ["m", "--request-deadline", "0"],
                ["m", "--idle-timeout", "inf"], ["m", "--max-samples-per-request", "0"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)


def test_serve_command_answers_and_stops_on_sigterm(tmp_path):
    model = _mlp()
    model.save(tmp_path / "m.nnet")
    args, env = _serve_command(tmp_path / "m.nnet", "--max-batch", "4",
                               "--max-samples-per-request", "3", "--model-name", "mlp")
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    try:
        line = proc.stdout.readline()
        assert "http://127.0.0.1:" in line, (line, proc.stderr.read() if proc.poll() else "")
        port = int(line.split("http://127.0.0.1:")[1].split()[0])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
        conn.request("POST", "/predict", json.dumps({"inputs": [0.25] * 8}))
        resp = conn.getresponse()
        body = json.loads(resp.read())
        assert resp.status == 200
        np.testing.assert_allclose(body["outputs"],
                                   model.predict(np.full((1, 8), 0.25, np.float32),
                                                 verbose=0)[0], rtol=1e-6, atol=1e-7)
        conn.request("GET", "/health")
        health = json.loads(conn.getresponse().read())
        assert health["max_batch"] == 4 and health["max_samples_per_request"] == 3
        conn.request("POST", "/v1/models/mlp:predict", json.dumps({"instances": [[0.25] * 8] * 4}))
        resp = conn.getresponse()
        assert resp.status == 413 and "limit is 3" in json.loads(resp.read())["error"]
        assert f"{serving.default_threads()} kernel threads" in line
        conn.close()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=TIMEOUT)
        assert proc.returncode == 0, err
        assert "stopped after 1 requests" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_serve_command_bad_model_file(tmp_path):
    (tmp_path / "bad.nnet").write_bytes(b"nonsense")
    args, env = _serve_command(tmp_path / "bad.nnet")
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2 and "not a zip archive" in proc.stderr
    args, env = _serve_command(tmp_path / "absent.nnet")
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2 and "no such file" in proc.stderr


# -- one request must not exhaust the server (issue 8, item 2) ----------------------------------
def test_big_request_is_cut_into_max_batch_chunks_and_others_run_between_them():
    model = _mlp()
    real = model.predict_on_batch
    calls = []
    first_chunk = threading.Event()

    def spy(x):
        calls.append(x.shape[0])
        first_chunk.set()
        time.sleep(0.01)  # 25 chunks: the big request takes >= 0.25 s
        return real(x)

    server = ModelServer(model, port=0, max_batch=8, batch_timeout_ms=0)
    server.batcher.predict = spy
    server.start()
    try:
        rng = np.random.default_rng(2)
        big = rng.standard_normal((200, 8)).astype(np.float32)
        result = {}

        def send_big():
            c = Client(server)
            result["big"] = c.predict(big.tolist())
            result["big_done"] = time.monotonic()
            c.close()

        t = threading.Thread(target=send_big)
        t.start()
        assert first_chunk.wait(TIMEOUT)
        c = Client(server)
        status, body, _ = c.predict(big[3].tolist())
        small_done = time.monotonic()
        c.close()
        t.join(TIMEOUT)
        assert status == 200
        np.testing.assert_allclose(body["outputs"], real(big[3:4])[0], rtol=1e-6, atol=1e-7)
        status, body, _ = result["big"]
        assert status == 200 and np.shape(body["outputs"]) == (200, 3)
        np.testing.assert_allclose(body["outputs"], real(big), rtol=1e-6, atol=1e-7)
        assert max(calls) <= 8 and sum(calls) == 201
        assert small_done < result["big_done"]  # answered between the big request's chunks
    finally:
        server.shutdown(timeout=TIMEOUT)


def test_batcher_interleaves_chunks_of_a_big_request_with_small_ones():
    sizes = []
    b = Batcher(lambda x: (sizes.append(x.shape[0]), x * 2)[1], max_batch=4, timeout_ms=0)
    big = b.submit(np.arange(10, dtype=np.float32).reshape(10, 1))
    small = b.submit(np.full((1, 1), 100, np.float32))
    b.start()
    np.testing.assert_array_equal(Batcher.wait(big, TIMEOUT), 2 * np.arange(10).reshape(10, 1))
    np.testing.assert_array_equal(Batcher.wait(small, TIMEOUT), [[200]])
    b.close(TIMEOUT)
    # chunk 1 of the big one (4), then the small one joins the big one's next chunk (1 + 3),
    # then the rest (3)
    assert sizes == [4, 4, 3]


def test_batcher_several_inputs_and_outputs_in_chunks():
    def predict(x):
        a, c = x
        return [a + c, a.sum(axis=1)]

    b = Batcher(predict, max_batch=3, timeout_ms=0).start()
    a = np.arange(14, dtype=np.float32).reshape(7, 2)
    c = np.ones((7, 2), np.float32)
    y = Batcher.wait(b.submit([a, c]), TIMEOUT)
    b.close(TIMEOUT)
    np.testing.assert_array_equal(y[0], a + c)
    np.testing.assert_array_equal(y[1], a.sum(axis=1))


def test_failed_chunk_fails_the_request_and_drops_its_other_chunks():
    calls = []

    def predict(x):
        calls.append(x.shape[0])
        if (x < 0).any():
            raise ValueError("negative input")
        return x

    b = Batcher(predict, max_batch=2, timeout_ms=0)
    x = np.ones((8, 1))
    x[1] = -1
    bad = b.submit(x)
    b.start()
    with pytest.raises(ValueError, match="negative"):
        Batcher.wait(bad, TIMEOUT)
    b.close(TIMEOUT)
    assert calls == [2]


def test_max_samples_per_request_gets_413():
    server = ModelServer(_mlp(), port=0, max_samples=10).start()
    try:
        c = Client(server)
        status, body, _ = c.predict([[0.5] * 8] * 11)
        assert status == 413 and "11 samples" in body["error"] and "limit is 10" in body["error"]
        assert c.predict([[0.5] * 8] * 10)[0] == 200  # the same connection goes on
        name = server.model_name
        status, body, _ = c.request("POST", f"/v1/models/{name}:predict",
                                    {"instances": [[0.5] * 8] * 11})
        assert status == 413 and "limit is 10" in body["error"]
        status, body, _ = c.request("POST", f"/v2/models/{name}/infer", {"inputs": [
            {"name": "x", "shape": [11, 8], "datatype": "FP32", "data": [0.5] * 88}]})
        assert status == 413 and "limit is 10" in body["error"]
        assert server.batcher.samples == 10  # nothing of the refused ones reached the model
        c.close()
    finally:
        server.shutdown(timeout=TIMEOUT)


def test_big_body_is_parsed_off_the_event_loop():
    model = _mlp()
    server = ModelServer(model, port=0, max_batch=16).start()
    try:
        x = np.random.default_rng(4).standard_normal((3000, 8)).astype(np.float32)
        body = json.dumps({"inputs": x.tolist()})
        assert len(body) > serving._INLINE_BODY_BYTES  # the parse-thread path
        c = Client(server)
        status, reply, _ = c.request("POST", "/predict", body)
        assert status == 200
        np.testing.assert_allclose(reply["outputs"], model.predict_on_batch(x), rtol=1e-5,
                                   atol=1e-6)
        assert c.predict(x[0].tolist())[0] == 200
        c.close()
    finally:
        server.shutdown(timeout=TIMEOUT)


def test_at_most_four_large_requests_at_once():
    model = _mlp()
    real = model.predict_on_batch
    release = threading.Event()

    def slow(x):
        release.wait(TIMEOUT)
        return real(x)

    server = ModelServer(model, port=0)
    server.batcher.predict = slow
    server.start()
    x = np.random.default_rng(8).standard_normal((1500, 8)).astype(np.float32)
    body = json.dumps({"inputs": x.tolist()}).encode()
    assert len(body) > serving._INLINE_BODY_BYTES
    request = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: " + \
        str(len(body)).encode() + b"\r\n\r\n"
    held = []
    try:
        for _ in range(4):
            s = socket.create_connection((server.host, server.port), timeout=TIMEOUT)
            s.sendall(request + body)
            held.append(s)
        _wait_for(lambda: server._large == 4)
        reply = _raw(server, request)  # a fifth is refused before its body is sent
        assert reply.startswith("HTTP/1.1 503") and "4 large requests" in reply
        c = Client(server)
        assert c.request("GET", "/health")[0] == 200  # small requests are not limited
        release.set()
        for s in held:
            s.settimeout(TIMEOUT)
            assert _read_all_response(s).startswith(b"HTTP/1.1 200")
        _wait_for(lambda: server._large == 0)
        assert c.request("POST", "/predict", body)[0] == 200  # slots are given back
        c.close()
    finally:
        release.set()
        for s in held:
            s.close()
        server.shutdown(timeout=TIMEOUT)


def _read_all_response(sock):
    """One HTTP answer with a Content-Length, read from a keep-alive socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk
        rest += chunk
    return head + b"\r\n\r\n" + rest


# -- slow clients must not deny service (issue 8, item 3) ---------------------------------------
@pytest.mark.parametrize("where", ["headers", "body"])
def test_trickling_client_is_cut_off_at_the_request_deadline(where):
    server = ModelServer(_mlp(), port=0, request_deadline=2.0).start()
    try:
        body = json.dumps({"inputs": [0.5] * 8}).encode()
        head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: " + \
            str(len(body)).encode() + b"\r\n\r\n"
        data = head + body
        with socket.create_connection((server.host, server.port), timeout=TIMEOUT) as s:
            s.settimeout(0.3)
            t0 = time.monotonic()
            sent = 0
            if where == "body":
                s.sendall(head)
                sent = len(head)
            reply = b""
            while time.monotonic() - t0 < 15 and sent < len(data):
                try:
                    s.send(data[sent:sent + 1])  # a byte every 0.3 s: each read is "active"
                except OSError:
                    break
                sent += 1
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    continue
                except OSError:
                    break
                reply += chunk
                if not chunk:
                    break
            elapsed = time.monotonic() - t0
        assert sent < len(data), "the whole request got through the trickle"
        assert 1.5 < elapsed < 12.0
        assert reply.startswith(b"HTTP/1.1 408") and b"within 2 s" in reply
        # the server is fine for everyone else
        c = Client(server)
        assert c.predict([0.5] * 8)[0] == 200
        c.close()
    finally:
        server.shutdown(timeout=TIMEOUT)


def test_hundreds_of_idle_connections_do_not_lock_out_a_normal_request():
    server = ModelServer(_mlp(), port=0).start()  # the default connection limit
    idle = []
    try:
        for _ in range(300):
            idle.append(socket.create_connection((server.host, server.port), timeout=TIMEOUT))
        for s in idle[:50]:  # some of them have started a request and stalled
            s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n")
        c = Client(server)
        t0 = time.monotonic()
        status, _, _ = c.predict([0.5] * 8)
        assert status == 200 and time.monotonic() - t0 < 10.0  # a liveness bound, not speed
        c.close()
    finally:
        for s in idle:
            s.close()
        server.shutdown(timeout=TIMEOUT)


def test_more_idle_and_stalled_connections_than_the_limit_do_not_lock_out_a_client():
    server = ModelServer(_mlp(), port=0, max_connections=16).start()
    held = []
    try:
        for i in range(40):
            s = socket.create_connection((server.host, server.port), timeout=TIMEOUT)
            if i % 2:
                s.sendall(b"GET /health HTTP/1.1\r\nHost")  # stalled in its headers
            held.append(s)
        time.sleep(0.2)
        c = Client(server)
        status, _, _ = c.predict([0.5] * 8)
        assert status == 200
        c.close()
        assert len(server._conns) <= 16 + 1
        metrics = _metrics(server)
        assert metrics['nanonet_connections_closed_total{reason="evicted"}'] >= 24
    finally:
        for s in held:
            s.close()
        server.shutdown(timeout=TIMEOUT)


def test_idle_keep_alive_connection_is_closed_after_the_idle_timeout():
    server = ModelServer(_mlp(), port=0, idle_timeout=0.5).start()
    try:
        with socket.create_connection((server.host, server.port), timeout=TIMEOUT) as s:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert s.recv(65536).startswith(b"HTTP/1.1 200")
            t0 = time.monotonic()
            assert _read_all(s) == b""  # closed without a word
            assert time.monotonic() - t0 < 10.0
    finally:
        server.shutdown(timeout=TIMEOUT)


# -- HTTP details -------------------------------------------------------------------------------
def test_expect_100_continue_pipelining_and_http_1_0(mlp_server):
    _, server = mlp_server
    body = json.dumps({"inputs": [0.5] * 8}).encode()
    head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: " + str(len(body)).encode()
    with socket.create_connection((server.host, server.port), timeout=TIMEOUT) as s:
        s.sendall(head + b"\r\nExpect: 100-continue\r\n\r\n")
        assert s.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(body)
        assert s.recv(65536).startswith(b"HTTP/1.1 200")
        # two pipelined requests in one packet: two answers, in order
        s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n" + head + b"\r\n"
                  b"Connection: close\r\n\r\n" + body)
        replies = _read_all(s)
    assert replies.startswith(b"HTTP/1.1 200") and replies.count(b"HTTP/1.1 200") == 2
    assert replies.index(b'{"live":true}') < replies.index(b'{"outputs"')
    reply = _raw(server, b"GET /health HTTP/1.0\r\n\r\n")  # HTTP/1.0: closed after the answer
    assert reply.startswith("HTTP/1.1 200") and "Connection: close" in reply
    reply = _raw(server, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70000 +
                 b"\r\n\r\n")
    assert reply.startswith("HTTP/1.1 431")


def test_requests_pipelined_while_the_model_runs_and_a_half_closed_client(mlp_server):
    # a connection waiting for the model stays registered for reading: what it sends
    # meanwhile is kept for after the answer, and a half-close does not drop the answer
    model, server = mlp_server
    real = server.batcher.predict

    def slow(x):
        time.sleep(0.2)
        return real(x)

    server.batcher.predict = slow
    body = json.dumps({"inputs": [0.5] * 8}).encode()
    request = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: " + \
        str(len(body)).encode() + b"\r\n\r\n" + body
    with socket.create_connection((server.host, server.port), timeout=TIMEOUT) as s:
        s.sendall(request)
        time.sleep(0.05)  # the first request is with the model
        s.sendall(request)
        s.shutdown(socket.SHUT_WR)
        replies = _read_all(s)
    assert replies.count(b"HTTP/1.1 200") == 2
    want = model.predict(np.full((1, 8), 0.5, np.float32), verbose=0)[0]
    for part in replies.split(b"HTTP/1.1 200")[1:]:
        out = json.loads(part.split(b"\r\n\r\n", 1)[1])["outputs"]
        np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)


# -- Prometheus metrics -------------------------------------------------------------------------
def _metrics(server):
    c = Client(server)
    c.conn.request("GET", "/metrics")
    resp = c.conn.getresponse()
    text = resp.read().decode()
    c.close()
    assert resp.status == 200 and resp.getheader("Content-Type").startswith("text/plain")
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def test_metrics_count_requests_latency_batches_and_queue(mlp_server):
    _, server = mlp_server
    c = Client(server)
    for _ in range(3):
        assert c.predict([0.5] * 8)[0] == 200
    assert c.predict([[0.5] * 8] * 5)[0] == 200
    assert c.predict([1, 2])[0] == 400
    c.close()
    m = _metrics(server)
    assert m['nanonet_requests_total{endpoint="predict",code="200"}'] == 4
    assert m['nanonet_requests_total{endpoint="predict",code="400"}'] == 1
    buckets = [(k, v) for k, v in m.items()
               if k.startswith('nanonet_request_duration_seconds_bucket{endpoint="predict"')]
    counts = [v for _, v in buckets]
    assert counts == sorted(counts) and buckets[-1][0].endswith('le="+Inf"}') and counts[-1] == 5
    assert m['nanonet_request_duration_seconds_count{endpoint="predict"}'] == 5
    assert m['nanonet_batch_size_count'] == 4 and m['nanonet_batch_size_sum'] == 8
    assert m['nanonet_batch_size_bucket{le="1"}'] == 3
    assert m['nanonet_batch_size_bucket{le="8"}'] == 4
    assert m["nanonet_model_calls_total"] == 4 and m["nanonet_inference_samples_total"] == 8
    assert m["nanonet_queue_depth"] == 0 and m["nanonet_open_connections"] >= 1


# -- TensorFlow Serving REST --------------------------------------------------------------------
def test_tensorflow_serving_status_metadata_and_predict(mlp_server):
    model, server = mlp_server
    name = server.model_name
    x = np.random.default_rng(5).standard_normal((4, 8)).astype(np.float32)
    want = model.predict(x, verbose=0)
    c = Client(server)
    status, body, _ = c.request("GET", f"/v1/models/{name}")
    assert status == 200 and body["model_version_status"][0]["state"] == "AVAILABLE"
    assert c.request("GET", f"/v1/models/{name}/versions/1")[0] == 200
    status, body, _ = c.request("GET", f"/v1/models/{name}/metadata")
    sig = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
    (inp,) = sig["inputs"].values()
    assert status == 200 and inp["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in inp["tensor_shape"]["dim"]] == ["-1", "8"]
    assert [d["size"] for d in next(iter(sig["outputs"].values()))["tensor_shape"]["dim"]] == \
        ["-1", "3"]
    status, body, _ = c.request("POST", f"/v1/models/{name}:predict", {"instances": x.tolist()})
    assert status == 200
    np.testing.assert_allclose(body["predictions"], want, rtol=1e-6, atol=1e-7)
    status, body, _ = c.request("POST", f"/v1/models/{name}/versions/1:predict",
                                {"signature_name": "serving_default", "inputs": x.tolist()})
    assert status == 200
    np.testing.assert_allclose(body["outputs"], want, rtol=1e-6, atol=1e-7)
    status, body, _ = c.request("POST", f"/v1/models/{name}:predict",
                                {"instances": [{"x": row} for row in x[:2].tolist()]})
    assert status == 200
    np.testing.assert_allclose(body["predictions"], want[:2], rtol=1e-6, atol=1e-7)
    for path, payload, code, match in [
            (f"/v1/models/{name}:predict", {"instances": x.tolist(), "inputs": x.tolist()}, 400,
             "not both"),
            (f"/v1/models/{name}:predict", {"instances": []}, 400, "non-empty"),
            (f"/v1/models/{name}:predict", {"instances": [[1, 2]]}, 400, r"\(8,\)"),
            (f"/v1/models/{name}:predict", {"inputs": x[0].tolist()}, 400, "batch of shape"),
            (f"/v1/models/{name}:predict", {"instances": x.tolist(), "signature_name": "s"},
             400, "signature_name"),
            (f"/v1/models/{name}:classify", {"instances": x.tolist()}, 404, "use :predict"),
            ("/v1/models/nosuch:predict", {"instances": x.tolist()}, 404, "unknown model"),
            (f"/v1/models/{name}/versions/7:predict", {"instances": x.tolist()}, 404,
             "no version")]:
        status, body, _ = c.request("POST", path, payload)
        assert status == code and re.search(match, body["error"]), (path, body)
    assert c.request("GET", f"/v1/models/{name}:predict")[0] == 405
    c.close()


# -- KServe / Open Inference Protocol v2 --------------------------------------------------------
def test_kserve_v2_health_metadata_and_infer(mlp_server):
    model, server = mlp_server
    name = server.model_name
    x = np.random.default_rng(6).standard_normal((3, 8)).astype(np.float32)
    want = model.predict(x, verbose=0)
    c = Client(server)
    assert c.request("GET", "/v2/health/live")[1] == {"live": True}
    assert c.request("GET", "/v2/health/ready")[1] == {"ready": True}
    assert c.request("GET", "/v2")[1]["name"] == "nanonet"
    assert c.request("GET", f"/v2/models/{name}/ready")[1]["ready"] is True
    status, meta, _ = c.request("GET", f"/v2/models/{name}")
    assert status == 200 and meta["name"] == name and meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": server.inputs[0].name, "datatype": "FP32",
                               "shape": [-1, 8]}]
    assert meta["outputs"][0]["shape"] == [-1, 3] and meta["outputs"][0]["datatype"] == "FP32"
    request = {"id": "r1", "inputs": [{"name": meta["inputs"][0]["name"], "shape": [3, 8],
                                       "datatype": "FP32", "data": x.ravel().tolist()}]}
    status, body, _ = c.request("POST", f"/v2/models/{name}/infer", request)
    assert status == 200 and body["model_name"] == name and body["id"] == "r1"
    (out,) = body["outputs"]
    assert out["name"] == meta["outputs"][0]["name"] and out["datatype"] == "FP32"
    assert out["shape"] == [3, 3]
    np.testing.assert_allclose(np.reshape(out["data"], out["shape"]), want, rtol=1e-6,
                               atol=1e-7)
    nested = {"inputs": [{"name": "anything", "shape": [3, 8], "datatype": "FP64",
                          "data": x.astype(np.float64).tolist()}]}
    status, body, _ = c.request("POST", f"/v2/models/{name}/versions/1/infer", nested)
    assert status == 200 and "id" not in body
    np.testing.assert_allclose(np.reshape(body["outputs"][0]["data"], (3, 3)), want, rtol=1e-6,
                               atol=1e-7)
    tensor = {"name": "x", "shape": [3, 8], "datatype": "FP32", "data": x.ravel().tolist()}
    for payload, code, match in [
            ({"inputs": [dict(tensor, shape=[3, 7])]}, 400, "needs 21 values; data has 24"),
            ({"inputs": [dict(tensor, shape=[24])]}, 400, r"shape must be \[n, 8\]"),
            ({"inputs": [dict(tensor, shape=[4, 6])]}, 400, r"shape \(8,\); got \(6,\)"),
            ({"inputs": [dict(tensor, datatype="BYTES")]}, 400, "BYTES is not supported"),
            ({"inputs": [dict(tensor, data="abc")]}, 400, "data must be a list"),
            ({"inputs": []}, 400, "JSON object"),
            ({"inputs": [tensor], "outputs": [{"name": "nope"}]}, 400, "unknown outputs"),
            ({"inputs": [tensor, dict(tensor, name="y")]}, 400, "must name the model's inputs")]:
        status, body, _ = c.request("POST", f"/v2/models/{name}/infer", payload)
        assert status == code and re.search(match, body["error"]), (payload, body)
    status, body, _ = c.request("POST", f"/v2/models/{name}/infer", request,
                                {"Inference-Header-Content-Length": "10"})
    assert status == 400 and "binary" in body["error"]
    assert c.request("POST", "/v2/models/nosuch/infer", request)[0] == 404
    assert c.request("GET", f"/v2/models/{name}/infer")[0] == 405
    c.close()


def test_kserve_v2_integer_model_checks_datatypes():
    model = _text_model()
    server = ModelServer(model, port=0).start()
    try:
        ids = [[3, 7, 1, 0, 0, 0], [5, 5, 5, 5, 2, 1]]
        c = Client(server)
        name = server.model_name
        meta = c.request("GET", f"/v2/models/{name}")[1]
        assert meta["inputs"][0]["datatype"] == "INT32"
        tensor = {"name": "ids", "shape": [2, 6], "datatype": "INT64",
                  "data": sum(ids, [])}
        status, body, _ = c.request("POST", f"/v2/models/{name}/infer", {"inputs": [tensor]})
        assert status == 200
        np.testing.assert_allclose(np.reshape(body["outputs"][0]["data"], (2, 4)),
                                   model.predict(np.array(ids, np.int32), verbose=0), rtol=1e-5,
                                   atol=1e-6)
        status, body, _ = c.request("POST", f"/v2/models/{name}/infer",
                                    {"inputs": [dict(tensor, datatype="FP32")]})
        assert status == 400 and "takes INT32" in body["error"]
        status, body, _ = c.request("POST", f"/v2/models/{name}/infer",
                                    {"inputs": [dict(tensor, data=[2**40] + tensor["data"][1:])]})
        assert status == 400 and "int32" in body["error"]
        c.close()
    finally:
        server.shutdown(timeout=TIMEOUT)


# -- models with several inputs and outputs (the graph-model contract) --------------------------
class _Sym:
    """A symbolic tensor as the Functional API describes one: name, shape, dtype."""

    def __init__(self, name, shape, dtype):
        self.name, self.shape, self.dtype = name, shape, dtype


class TwoTower:
    """A fake two-input, two-output model following the graph-model contract."""

    name = "two_tower"

    def __init__(self, answer="dict"):
        self.inputs = [_Sym("tokens", (None, 4), "int32"), _Sym("extra", (None, 2), "float32")]
        self.outputs = [_Sym("label", (None, 3), "float32"), _Sym("score", (None,), "float32")]
        self.input_names = ["tokens", "extra"]
        self.output_names = ["label", "score"]
        self.answer = answer
        self.calls = []

    def reference(self, tokens, extra):
        tokens = np.asarray(tokens, np.float32)
        extra = np.asarray(extra, np.float32)
        label = np.stack([tokens.sum(1), extra.sum(1), tokens[:, 0] * extra[:, 1]], axis=1)
        score = tokens.max(1) - extra[:, 0]
        return label.astype(np.float32), score.astype(np.float32)

    def predict_on_batch(self, x):
        assert isinstance(x, dict) and sorted(x) == ["extra", "tokens"]
        assert x["tokens"].dtype == np.int32 and x["extra"].dtype == np.float32
        self.calls.append(x["tokens"].shape[0])
        label, score = self.reference(x["tokens"], x["extra"])
        return {"score": score, "label": label} if self.answer == "dict" else [label, score]


@pytest.mark.parametrize("answer", ["dict", "list"])
def test_multi_input_multi_output_model(answer):
    model = TwoTower(answer)
    assert [s.name for s in serving.describe_model(model)[0]] == ["tokens", "extra"]
    server = ModelServer(model, port=0, max_batch=4).start()
    try:
        rng = np.random.default_rng(7)
        tokens = rng.integers(0, 9, size=(10, 4)).tolist()
        extra = rng.standard_normal((10, 2)).astype(np.float32).tolist()
        label, score = model.reference(tokens, extra)
        c = Client(server)
        health = c.request("GET", "/health")[1]
        assert health["inputs"] == [{"name": "tokens", "shape": [None, 4], "dtype": "int32"},
                                    {"name": "extra", "shape": [None, 2], "dtype": "float32"}]
        assert health["outputs"] == [{"name": "label", "shape": [None, 3], "dtype": "float32"},
                                     {"name": "score", "shape": [None], "dtype": "float32"}]
        # /predict: a batch (cut into chunks of 4), then one sample
        status, body, _ = c.predict({"tokens": tokens, "extra": extra})
        assert status == 200 and sorted(body["outputs"]) == ["label", "score"]
        np.testing.assert_allclose(body["outputs"]["label"], label, rtol=1e-6)
        np.testing.assert_allclose(body["outputs"]["score"], score, rtol=1e-6)
        assert max(model.calls) <= 4
        status, body, _ = c.predict({"extra": extra[1], "tokens": tokens[1]})
        assert status == 200
        np.testing.assert_allclose(body["outputs"]["label"], label[1], rtol=1e-6)
        assert body["outputs"]["score"] == pytest.approx(float(score[1]), rel=1e-6)
        for payload, match in [
                ({"tokens": tokens}, r"missing \['extra'\]"),
                ({"tokens": tokens, "extra": extra, "more": [1]}, r"unknown \['more'\]"),
                ({"tokens": tokens[:3], "extra": extra[:2]}, "same number of samples"),
                ({"tokens": tokens[0], "extra": extra[:2]}, "a mix"),
                ({"tokens": [[0.5] * 4], "extra": extra[:1]}, r"inputs\['tokens'\] must be "
                                                               "integers")]:
            status, body, _ = c.predict(payload)
            assert status == 400 and re.search(match, body["error"]), (payload, body)
        status, body, _ = c.predict(tokens)
        assert status == 400 and "naming the model's inputs ['tokens', 'extra']" in body["error"]
        # TensorFlow Serving: rows as dicts, and columns
        path = "/v1/models/two_tower:predict"
        status, body, _ = c.request("POST", path, {"instances": [
            {"tokens": t, "extra": e} for t, e in zip(tokens[:3], extra[:3])]})
        assert status == 200 and len(body["predictions"]) == 3
        np.testing.assert_allclose([p["label"] for p in body["predictions"]], label[:3],
                                   rtol=1e-6)
        np.testing.assert_allclose([p["score"] for p in body["predictions"]], score[:3],
                                   rtol=1e-6)
        status, body, _ = c.request("POST", path, {"inputs": {"tokens": tokens,
                                                              "extra": extra}})
        assert status == 200
        np.testing.assert_allclose(body["outputs"]["score"], score, rtol=1e-6)
        status, body, _ = c.request("POST", path, {"instances": [tokens[0]]})
        assert status == 400 and "must be an object naming" in body["error"]
        # KServe v2: tensors by name, in any order; one output asked for
        status, body, _ = c.request("POST", "/v2/models/two_tower/infer", {
            "inputs": [{"name": "extra", "shape": [10, 2], "datatype": "FP32",
                        "data": np.ravel(extra).tolist()},
                       {"name": "tokens", "shape": [10, 4], "datatype": "INT32",
                        "data": np.ravel(tokens).tolist()}],
            "outputs": [{"name": "score"}]})
        assert status == 200 and [o["name"] for o in body["outputs"]] == ["score"]
        assert body["outputs"][0]["shape"] == [10]
        np.testing.assert_allclose(body["outputs"][0]["data"], score, rtol=1e-6)
        meta = c.request("GET", "/v2/models/two_tower")[1]
        assert [(i["name"], i["datatype"], i["shape"]) for i in meta["inputs"]] == \
            [("tokens", "INT32", [-1, 4]), ("extra", "FP32", [-1, 2])]
        c.close()
    finally:
        server.shutdown(timeout=TIMEOUT)


def test_describe_model_of_a_sequential():
    model = _mlp()
    ins, outs = serving.describe_model(model)
    assert len(ins) == 1 and ins[0].shape == (None, 8) and ins[0].dtype == np.float32
    assert ins[0].name == model._input_layer.name
    assert len(outs) == 1 and outs[0].shape == (None, 3) and outs[0].name == model.layers[-1].name


def test_a_real_two_input_two_output_graph_model(tmp_path):
    """A functional model saved and loaded is served: inputs by name, outputs by name."""
    nn.set_seed(3)
    tokens = nn.Input((5,), dtype="int32", name="tokens")
    extra = nn.Input((3,), name="extra")
    v = L.GlobalAveragePooling1D()(L.Embedding(20, 4, mask_zero=True)(tokens))
    h = L.Concatenate()([v, L.Dense(4, activation="relu")(extra)])
    model = nn.Model([tokens, extra], [L.Dense(3, activation="softmax", name="label")(h),
                                       L.Dense(1, name="score")(h)])
    model.save(tmp_path / "g.nnet")
    loaded = nn.load_model(tmp_path / "g.nnet")
    rng = np.random.default_rng(4)
    xt = rng.integers(0, 20, (6, 5))
    xe = rng.standard_normal((6, 3)).astype(np.float32)
    want = model.predict([xt, xe], verbose=0)
    server = ModelServer(loaded, port=0).start()
    try:
        c = Client(server)
        health = c.request("GET", "/health")[1]
        assert [i["name"] for i in health["inputs"]] == ["tokens", "extra"]
        assert health["inputs"][0]["dtype"] == "int32"
        assert [o["name"] for o in health["outputs"]] == ["label", "score"]
        status, body, _ = c.predict({"tokens": xt.tolist(), "extra": xe.tolist()})
        assert status == 200
        np.testing.assert_allclose(body["outputs"]["label"], want[0], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(np.reshape(body["outputs"]["score"], (6, 1)), want[1],
                                   rtol=1e-6, atol=1e-7)
        c.close()
    finally:
        server.shutdown(timeout=TIMEOUT)
