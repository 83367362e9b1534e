"""serve a saved model: JSON predict requests over HTTP on localhost, batched

``python -m nanonet serve model.nnet --port 8000`` loads the model with ``nanonet.load_model``
and answers, with the standard library's ``http.server.ThreadingHTTPServer`` (HTTP/1.1,
keep-alive):

    POST /predict   body {"inputs": x}: x is one sample (nested lists shaped like the model's
                    input without the batch axis) or a batch of samples (with it); the answer is
                    {"outputs": y}, one sample's output or a list of them, matching the request.
    GET  /health    {"status": "ok", "model": ..., "input_shape": ..., "input_dtype": ...,
                    "output_shape": ..., "params": ..., "layers": [...], ...}

Errors are answered with a JSON body {"error": message} and the server keeps running: 400 for
malformed JSON and for inputs of the wrong type, rank, shape or values (the message says what
was expected and what came), 404 for an unknown path, 405 for a wrong method, 411 without a
Content-Length, 413 for a body over --max-body-bytes, 503 when the queue is full, when
--max-connections are open or when the server is shutting down, 500 for anything unexpected.

Batching: each connection's handler thread parses and validates its request, then queues the
samples for one batcher thread. The batcher takes the first waiting request and gathers the ones
that arrive within --batch-timeout-ms of it (never more than --max-batch samples together,
requests of one shape per model call), but stops waiting as soon as no other request is being
received, so a lone request is not delayed; then it runs one ``predict_on_batch`` and hands
each request its rows. Only the batcher thread calls the model, so requests never race on its
state; if a model call fails (e.g. a token id out of range), the requests of that batch are
retried one by one so that only the bad one gets the error.

Shutdown (SIGINT / SIGTERM, or ``ModelServer.shutdown()``): stop accepting connections, answer
the requests already received, stop the batcher, close the socket.
"""
from __future__ import annotations

import argparse
import collections
import json
import math
import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import numpy as np

__all__ = ["ModelServer", "Batcher", "RequestError", "parse_inputs", "add_arguments", "run"]

DEFAULT_MAX_BATCH = 32
DEFAULT_BATCH_TIMEOUT_MS = 2.0
DEFAULT_MAX_BODY_BYTES = 8 << 20
DEFAULT_MAX_QUEUE = 1024
DEFAULT_MAX_CONNECTIONS = 256


class RequestError(Exception):
    """A request the server refuses: HTTP status and message for the JSON error body."""

    def __init__(self, status, message, close=False):
        super().__init__(message)
        self.status = int(status)
        self.message = message
        self.close = bool(close)


# -- validation ---------------------------------------------------------------------------------
def _fmt(shape):
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + \
        ("," if len(shape) == 1 else "") + ")"


def input_spec(model):
    """(sample shape without the batch axis (None where any size goes), input dtype) of a
    built model."""
    shape = model.input_shape
    if shape is None or not model.built:
        raise ValueError(f"model {model.name!r} is not built, so its input shape is unknown; "
                         "build it (or start it with Input(shape)) before serving it")
    layer = getattr(model, "_input_layer", None)
    if layer is not None:
        dtype = np.dtype(layer.dtype)
    else:
        dtype = np.dtype(model.layers[0].dtype)
    if dtype.kind == "f" and type(model.layers[0]).__name__ == "Embedding":
        dtype = np.dtype("int32")  # token ids, whatever float dtype the input was recorded with
    return tuple(shape[1:]), dtype


def parse_inputs(payload, sample_shape, dtype):
    """The ``inputs`` of a decoded request body as an array of dtype with a batch axis, and
    whether it was a single sample. Raises RequestError(400) naming what is wrong."""
    if not isinstance(payload, dict) or "inputs" not in payload:
        got = type(payload).__name__ if not isinstance(payload, dict) else \
            f"keys {sorted(payload)}"
        raise RequestError(400, 'the body must be a JSON object {"inputs": [...]}; got ' + got)
    data = payload["inputs"]
    if not isinstance(data, list):
        raise RequestError(400, f"inputs must be a (nested) list of numbers; got "
                                f"{type(data).__name__}")
    try:
        arr = np.array(data)
    except (ValueError, TypeError, OverflowError):
        raise RequestError(400, "inputs must be a rectangular nested list of numbers (all rows "
                                "of one length)") from None
    if arr.dtype.kind not in "iuf":
        what = {"b": "booleans", "U": "strings", "O": "mixed, null or out-of-range values or "
                "ragged rows"}.get(arr.dtype.kind, f"dtype {arr.dtype}")
        raise RequestError(400, f"inputs must hold numbers; got {what}")
    rank = len(sample_shape)
    if arr.ndim == rank:
        single = True
        arr = arr.reshape((1,) + arr.shape)
    elif arr.ndim == rank + 1:
        single = False
    else:
        raise RequestError(400, f"inputs must have shape {_fmt(sample_shape)} for one sample or "
                                f"{_fmt(('n',) + sample_shape)} for a batch; got shape "
                                f"{_fmt(arr.shape)}")
    if arr.size == 0:
        raise RequestError(400, f"inputs is empty (shape {_fmt(arr.shape)})")
    if any(w is not None and w != d for w, d in zip(sample_shape, arr.shape[1:])):
        raise RequestError(400, f"each sample must have shape {_fmt(sample_shape)}; got "
                                f"{_fmt(arr.shape[1:])}")
    if dtype.kind in "iu":
        if arr.dtype.kind == "f":
            if not np.isfinite(arr).all() or not np.array_equal(arr, np.round(arr)):
                raise RequestError(400, f"inputs must be integers (the model takes {dtype.name} "
                                        "ids); got non-integer numbers")
        info = np.iinfo(dtype)
        if arr.size and (arr.min() < info.min or arr.max() > info.max):
            raise RequestError(400, f"inputs must fit in {dtype.name}; got values in "
                                    f"[{arr.min()}, {arr.max()}]")
        return arr.astype(dtype, copy=False), single
    out = arr.astype(dtype, copy=False)
    if not np.isfinite(out).all():
        raise RequestError(400, f"inputs must be finite numbers representable in {dtype.name}")
    return out, single


# -- batching -----------------------------------------------------------------------------------
class _Pending:
    __slots__ = ("x", "n", "event", "result", "error")

    def __init__(self, x):
        self.x = x
        self.n = x.shape[0]
        self.event = threading.Event()
        self.result = None
        self.error = None


class Batcher:
    """One thread that runs ``predict(x)`` on batches gathered from concurrent ``submit`` calls.

    predict: callable taking a batch array, returning an array with the same first axis.
    max_batch: most samples per call (a larger single request runs alone).
    timeout_ms: how long to wait after the first queued request for others to join it; the wait
        ends early when no request is announced (``announce``: a request is being received and
        will be submitted or withdrawn).
    max_queue: most waiting requests; ``submit`` raises RequestError(503) beyond it.
    thread_init: called once on the batcher thread before the first batch (ModelServer uses it
        to give that thread the kernels' thread count: OpenMP's count is per calling thread).
    """

    def __init__(self, predict, max_batch=DEFAULT_MAX_BATCH, timeout_ms=DEFAULT_BATCH_TIMEOUT_MS,
                 max_queue=DEFAULT_MAX_QUEUE, thread_init=None):
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError(f"Batcher: max_batch must be a positive int; got {max_batch!r}")
        if not isinstance(timeout_ms, (int, float)) or isinstance(timeout_ms, bool) or \
                not math.isfinite(timeout_ms) or timeout_ms < 0:
            raise ValueError(f"Batcher: timeout_ms must be a number >= 0; got {timeout_ms!r}")
        if isinstance(max_queue, bool) or not isinstance(max_queue, int) or max_queue < 1:
            raise ValueError(f"Batcher: max_queue must be a positive int; got {max_queue!r}")
        self.predict = predict
        self.max_batch = max_batch
        self.timeout = timeout_ms / 1000.0
        self.max_queue = max_queue
        self.thread_init = thread_init
        self.batches = 0
        self.samples = 0
        self._queue = collections.deque()
        self._arriving = 0
        self._cond = threading.Condition()
        self._closing = False
        self._thread = None

    def start(self):
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="nanonet-batcher",
                                                daemon=True)
                self._thread.start()
        return self

    def announce(self):
        """A request is on its way: batches wait for it (up to the timeout) until it is
        submitted with ``submit(x, announced=True)`` or ``withdraw``-n."""
        with self._cond:
            self._arriving += 1

    def withdraw(self):
        """An announced request will not be submitted after all."""
        with self._cond:
            self._arriving -= 1
            self._cond.notify_all()

    def submit(self, x, announced=False):
        """Queue a batch array; returns a handle for ``wait``."""
        p = _Pending(x)
        with self._cond:
            if announced:
                self._arriving -= 1
                self._cond.notify_all()
            if self._closing:
                raise RequestError(503, "the server is shutting down")
            if len(self._queue) >= self.max_queue:
                raise RequestError(503, f"the server is busy ({len(self._queue)} requests "
                                        "queued); retry later")
            self._queue.append(p)
            self._cond.notify()
        return p

    @staticmethod
    def wait(pending, timeout=None):
        """The predictions for a submitted array (raises what the model call raised)."""
        if not pending.event.wait(timeout):
            raise RequestError(503, f"no answer from the model within {timeout} s")
        if pending.error is not None:
            raise pending.error
        return pending.result

    def close(self, timeout=None):
        """Answer everything queued, then stop the thread."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def _take(self):
        with self._cond:
            while not self._queue:
                if self._closing:
                    return None
                self._cond.wait()
            batch = [self._queue.popleft()]
            n = batch[0].n
            deadline = time.monotonic() + self.timeout
            while n < self.max_batch:
                if self._queue:
                    if n + self._queue[0].n > self.max_batch:
                        break
                    p = self._queue.popleft()
                    batch.append(p)
                    n += p.n
                    continue
                left = deadline - time.monotonic()
                if left <= 0 or self._closing or self._arriving <= 0:
                    break
                self._cond.wait(left)
            return batch

    def _loop(self):
        if self.thread_init is not None:
            self.thread_init()
        while True:
            batch = self._take()
            if batch is None:
                return
            groups = {}
            for p in batch:
                groups.setdefault((p.x.shape[1:], p.x.dtype.str), []).append(p)
            for group in groups.values():
                self._run(group)

    def _run(self, group):
        try:
            x = group[0].x if len(group) == 1 else np.concatenate([p.x for p in group])
            y = self.predict(x)
            if not isinstance(y, np.ndarray) or y.ndim < 1 or y.shape[0] != x.shape[0]:
                raise RuntimeError(f"the model returned {type(y).__name__} of shape "
                                   f"{getattr(y, 'shape', None)} for a batch of {x.shape[0]}")
        except Exception as e:  # noqa: BLE001 - handed to the waiting request
            if len(group) > 1:  # find the culprit: retry one by one
                for p in group:
                    self._run([p])
                return
            group[0].error = e
            group[0].event.set()
            return
        self.batches += 1
        self.samples += x.shape[0]
        lo = 0
        for p in group:
            p.result = y[lo:lo + p.n]
            lo += p.n
            p.event.set()


# -- HTTP ---------------------------------------------------------------------------------------
class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    app = None
    connections = 0

    def process_request(self, request, client_address):
        """Start a handler thread, unless --max-connections are open: then answer 503 and
        close."""
        with self.app._lock:
            full = self.connections >= self.app.max_connections
            if not full:
                self.connections += 1
        if full:
            body = b'{"error":"too many open connections; retry later"}'
            try:
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: "
                                b"application/json\r\nConnection: close\r\nContent-Length: " +
                                str(len(body)).encode() + b"\r\n\r\n" + body)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._closed_one()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._closed_one()

    def _closed_one(self):
        with self.app._lock:
            self.connections -= 1

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, socket.timeout, TimeoutError)):
            return  # a client went away; nothing to report
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def setup(self):
        self.timeout = self.server.app.idle_timeout
        super().setup()

    @property
    def app(self):
        return self.server.app

    def log_message(self, format, *args):  # noqa: A002 - BaseHTTPRequestHandler's signature
        if self.app.log_requests:
            super().log_message(format, *args)

    def version_string(self):
        return self.app.server_version

    def _send_json(self, status, obj, close=False, headers=()):
        body = json.dumps(obj, separators=(",", ":")).encode("utf-8")
        if self.app.draining:
            close = True
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status, message, close=False, headers=()):
        self._send_json(status, {"error": message}, close=close, headers=headers)

    def _path(self):
        return urlsplit(self.path).path

    def do_GET(self):  # noqa: N802 - http.server's naming
        with self.app.in_flight():
            path = self._path()
            if path in ("/health", "/"):
                self._send_json(200, self.app.health())
            elif path == "/predict":
                self._error(405, "use POST for /predict", headers=(("Allow", "POST"),))
            else:
                self._error(404, f"unknown path {path!r}; use POST /predict or GET /health")

    def do_POST(self):  # noqa: N802
        with self.app.in_flight():
            try:
                self._post()
            except RequestError as e:
                self._error(e.status, e.message, close=e.close)
            except (ConnectionError, socket.timeout):
                self.close_connection = True
            except Exception as e:  # noqa: BLE001 - the server must keep running
                self._error(500, f"internal error: {type(e).__name__}: {e}")

    def _not_allowed(self):
        with self.app.in_flight():
            try:
                self._read_body(required=False)  # keep the connection in step
                close = False
            except (RequestError, ConnectionError, socket.timeout):
                close = True
            self._error(405, f"method {self.command} is not allowed; use POST /predict or GET "
                             "/health", close=close, headers=(("Allow", "GET, POST"),))

    def send_error(self, code, message=None, explain=None):
        """http.server's own errors (malformed request line, headers, ...) as JSON too."""
        try:
            short = self.responses[code][0]
        except KeyError:
            short = "error"
        self.close_connection = True
        self.send_response(code, message)
        self.send_header("Connection", "close")
        body = b""
        if code >= 200 and code not in (204, 205, 304):
            body = json.dumps({"error": message or short}).encode("utf-8")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    do_PUT = do_DELETE = do_PATCH = _not_allowed

    def _read_body(self, required=True):
        if self.headers.get("Transfer-Encoding"):
            raise RequestError(411, "chunked bodies are not supported; send a Content-Length",
                               close=True)
        length = self.headers.get("Content-Length")
        if length is None:
            if not required:
                return b""
            raise RequestError(411, "a Content-Length header is required", close=True)
        try:
            n = int(length)
        except ValueError:
            n = -1
        if n < 0:
            raise RequestError(400, f"invalid Content-Length {length!r}", close=True)
        if n > self.app.max_body_bytes:
            raise RequestError(413, f"the body is {n} bytes; the limit is "
                                    f"{self.app.max_body_bytes}", close=True)
        body = self.rfile.read(n)
        if len(body) != n:
            raise ConnectionError("the client sent a short body")
        return body

    def _post(self):
        if self._path() != "/predict":
            body = self._read_body()  # keep the connection usable
            del body
            if self._path() in ("/health", "/"):
                raise RequestError(405, "use GET for /health")
            raise RequestError(404, f"unknown path {self._path()!r}; use POST /predict")
        if self.app.draining:
            raise RequestError(503, "the server is shutting down")
        batcher = self.app.batcher
        batcher.announce()
        try:
            body = self._read_body()
            try:
                payload = json.loads(body, parse_constant=_reject_constant)
            except (ValueError, RecursionError) as e:
                raise RequestError(400, f"the body is not valid JSON: {e}") from None
            x, single = parse_inputs(payload, self.app.sample_shape, self.app.input_dtype)
        except BaseException:
            batcher.withdraw()
            raise
        pending = batcher.submit(x, announced=True)
        try:
            y = self.app.batcher.wait(pending, self.app.request_timeout)
        except ValueError as e:  # the model refused the values (e.g. a token id out of range)
            raise RequestError(400, str(e)) from None
        self.app.requests += 1
        self._send_json(200, {"outputs": (y[0] if single else y).tolist()})


def _reject_constant(name):
    raise ValueError(f"{name} is not allowed (JSON has no NaN or Infinity)")


class ModelServer:
    """An HTTP server answering predict requests for model (see the module docstring).

    ``ModelServer(model, port=0)`` binds an ephemeral port (``server.port``); ``start()`` serves
    from a background thread, ``serve_forever()`` from the calling one; ``shutdown()`` stops
    gracefully. Usable as a context manager (start on enter, shutdown on exit).
    """

    def __init__(self, model, host="127.0.0.1", port=8000, max_batch=DEFAULT_MAX_BATCH,
                 batch_timeout_ms=DEFAULT_BATCH_TIMEOUT_MS, max_body_bytes=DEFAULT_MAX_BODY_BYTES,
                 max_queue=DEFAULT_MAX_QUEUE, max_connections=DEFAULT_MAX_CONNECTIONS,
                 request_timeout=60.0, idle_timeout=60.0, log_requests=False):
        from . import __version__, ops
        self.model = model
        self.sample_shape, self.input_dtype = input_spec(model)
        if isinstance(max_body_bytes, bool) or not isinstance(max_body_bytes, int) or \
                max_body_bytes < 1:
            raise ValueError(f"ModelServer: max_body_bytes must be a positive int; got "
                             f"{max_body_bytes!r}")
        if isinstance(max_connections, bool) or not isinstance(max_connections, int) or \
                max_connections < 1:
            raise ValueError(f"ModelServer: max_connections must be a positive int; got "
                             f"{max_connections!r}")
        self.max_body_bytes = max_body_bytes
        self.max_connections = max_connections
        self.request_timeout = request_timeout
        self.idle_timeout = idle_timeout
        self.log_requests = bool(log_requests)
        self.server_version = f"nanonet/{__version__}"
        threads = ops.get_num_threads()  # the kernels' thread count on the batcher thread too
        self.batcher = Batcher(model.predict_on_batch, max_batch=max_batch,
                               timeout_ms=batch_timeout_ms, max_queue=max_queue,
                               thread_init=lambda: ops.set_num_threads(threads))
        self.requests = 0
        self.draining = False
        self._active = 0
        self._active_cond = threading.Condition()
        self._lock = threading.Lock()
        self._closed = False
        self._done = threading.Event()
        self._thread = None
        self._serving = False
        self.httpd = _HTTPServer((host, port), _Handler)
        self.httpd.app = self

    @property
    def host(self):
        return self.httpd.server_address[0]

    @property
    def port(self):
        return self.httpd.server_address[1]

    @property
    def url(self):
        host = self.host
        return f"http://{'[' + host + ']' if ':' in host else host}:{self.port}"

    def health(self):
        model = self.model
        return {"status": "shutting_down" if self.draining else "ok", "model": model.name,
                "nanonet_version": self.server_version.split("/", 1)[1],
                "input_shape": list(model.input_shape), "input_dtype": self.input_dtype.name,
                "output_shape": list(model.output_shape), "params": model.count_params(),
                "layers": [type(layer).__name__ for layer in model.layers],
                "max_batch": self.batcher.max_batch,
                "batch_timeout_ms": self.batcher.timeout * 1000.0,
                "requests": self.requests, "batches": self.batcher.batches}

    def in_flight(self):
        """Context manager counting a request as in flight (shutdown waits for them)."""
        return _InFlight(self)

    def serve_forever(self):
        """Serve until ``shutdown()`` (from another thread or a signal handler's thread)."""
        with self._lock:
            if self._closed:
                return
            self._serving = True
        self.batcher.start()
        self.httpd.serve_forever(poll_interval=0.1)

    def start(self):
        """Serve from a background thread; returns self."""
        self._thread = threading.Thread(target=self.serve_forever, name="nanonet-http",
                                        daemon=True)
        self._thread.start()
        return self

    def shutdown(self, timeout=10.0):
        """Stop accepting connections, finish the requests in flight (up to timeout seconds),
        stop the batcher and close the socket. Idempotent; call it from any thread except the
        one running ``serve_forever``."""
        with self._lock:
            first = not self._closed
            self._closed = True
            serving = self._serving
        if not first:
            self._done.wait(timeout)
            return
        try:
            self.draining = True
            if serving:
                self.httpd.shutdown()
            deadline = time.monotonic() + timeout
            with self._active_cond:
                while self._active > 0:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._active_cond.wait(left)
            self.batcher.close(timeout=max(0.0, deadline - time.monotonic()))
            self.httpd.server_close()
            if self._thread is not None:
                self._thread.join(max(0.0, deadline - time.monotonic()))
        finally:
            self._done.set()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.shutdown()


class _InFlight:
    __slots__ = ("server",)

    def __init__(self, server):
        self.server = server

    def __enter__(self):
        with self.server._active_cond:
            self.server._active += 1

    def __exit__(self, *exc):
        with self.server._active_cond:
            self.server._active -= 1
            self.server._active_cond.notify_all()


# -- command line -------------------------------------------------------------------------------
def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive int; got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive int; got {text!r}")
    return value


def _nonnegative_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0; got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0; got {text!r}")
    return value


def _port(text):
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port in [0, 65535]; got {text!r}")
    return value


def default_threads():
    """The serve command's kernel thread count when --threads is not given: nanonet's default,
    but at most one fewer than the CPUs this process may use (at least 1)."""
    from . import ops
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(ops.get_num_threads(), cpus - 1))


def add_arguments(parser):
    """Add the ``serve`` command's arguments to an argparse parser (sets func=run)."""
    parser.add_argument("model", help="model file written by model.save (e.g. model.nnet)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1, this machine only)")
    parser.add_argument("--port", type=_port, default=8000,
                        help="TCP port (default 8000; 0 picks a free one)")
    parser.add_argument("--max-batch", type=_positive_int, default=DEFAULT_MAX_BATCH,
                        help=f"most samples per model call (default {DEFAULT_MAX_BATCH})")
    parser.add_argument("--batch-timeout-ms", type=_nonnegative_float,
                        default=DEFAULT_BATCH_TIMEOUT_MS,
                        help="how long the first queued request waits for others to join its "
                             f"batch (default {DEFAULT_BATCH_TIMEOUT_MS} ms)")
    parser.add_argument("--max-body-bytes", type=_positive_int, default=DEFAULT_MAX_BODY_BYTES,
                        help=f"largest request body accepted (default {DEFAULT_MAX_BODY_BYTES})")
    parser.add_argument("--max-queue", type=_positive_int, default=DEFAULT_MAX_QUEUE,
                        help=f"most requests waiting for the model before answering 503 "
                             f"(default {DEFAULT_MAX_QUEUE})")
    parser.add_argument("--max-connections", type=_positive_int, default=DEFAULT_MAX_CONNECTIONS,
                        help="most open client connections; more are answered 503 (default "
                             f"{DEFAULT_MAX_CONNECTIONS})")
    parser.add_argument("--threads", type=_positive_int, default=None,
                        help="threads for the kernels (default: one core fewer than the "
                             "machine has, at least 1: the HTTP threads need a core, and an "
                             "oversubscribed OpenMP team is slow)")
    parser.add_argument("--allow-nan", action="store_true",
                        help="load a model whose weights contain NaN or inf")
    parser.add_argument("--log-requests", action="store_true",
                        help="log every request to stderr")
    parser.set_defaults(func=run)
    return parser


def run(args):
    """Load args.model and serve it until SIGINT or SIGTERM; returns the exit status."""
    from . import ops
    from .saving import load_model
    threads = args.threads if args.threads is not None else default_threads()
    ops.set_num_threads(threads)
    try:
        model = load_model(args.model, compile=False, allow_nan=args.allow_nan)
        server = ModelServer(model, host=args.host, port=args.port, max_batch=args.max_batch,
                             batch_timeout_ms=args.batch_timeout_ms,
                             max_body_bytes=args.max_body_bytes, max_queue=args.max_queue,
                             max_connections=args.max_connections,
                             log_requests=args.log_requests)
    except (OSError, ValueError) as e:
        print(f"nanonet serve: {e}", file=sys.stderr)
        return 2
    stopper = []

    def _stop(signum, frame):
        if not stopper:  # shutdown() blocks until serve_forever returns: not on this thread
            t = threading.Thread(target=server.shutdown, name="nanonet-shutdown", daemon=True)
            stopper.append(t)
            t.start()

    previous = {s: signal.signal(s, _stop) for s in (signal.SIGINT, signal.SIGTERM)}
    print(f"nanonet serve: {model.name} from {args.model} on {server.url} (POST /predict, "
          f"GET /health; max batch {server.batcher.max_batch}, window "
          f"{args.batch_timeout_ms:g} ms, {threads} kernel threads); Ctrl-C stops", flush=True)
    try:
        server.serve_forever()
    finally:
        server.shutdown()
        for s, h in previous.items():
            signal.signal(s, h)
    print(f"nanonet serve: stopped after {server.requests} requests", flush=True)
    return 0
