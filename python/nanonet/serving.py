"""serve a saved model: JSON predict requests over HTTP on localhost, batched

``python -m nanonet serve model.nnet --port 8000`` loads the model with ``nanonet.load_model``
and answers HTTP/1.1 (keep-alive, pipelining) from one event-loop thread built on the standard
library's ``selectors``: no thread per connection, so idle or slow connections cost a socket and
a few hundred bytes each, not a thread.

Endpoints (``{name}`` is the model's name, or --model-name; its only version is 1):

    POST /predict   body {"inputs": x}: x is one sample (nested lists shaped like the model's
                    input without the batch axis) or a batch of samples (with it); the answer is
                    {"outputs": y}, one sample's output or a list of them, matching the request.
                    {"instances": [...]} is always a batch. A model with several inputs takes
                    {"inputs": {"tokens": ..., "extra": ...}}; one with several outputs answers
                    {"outputs": {"label": ..., "score": ...}}. A string input
                    (nanonet.Input(dtype="string"), e.g. before TextVectorization) takes text:
                    "a sentence" is one sample, ["one", "two"] a batch. A model with
                    ``class_names`` also answers "labels": the top class name of each sample
                    (TF Serving answers carry it too; v2 answers add a BYTES output "labels").
    GET  /health    {"status": "ok", "model": ..., "inputs": [{"name", "shape", "dtype"}, ...],
                    "class_names": [...] or null,
                    "outputs": [...], "input_shape": ..., "input_dtype": ..., "output_shape": ...,
                    "params": ..., "layers": [...], ...}
    GET  /metrics   Prometheus text format: requests by endpoint and status code, a latency
                    histogram (from a request's last byte received to its answer queued), model
                    calls and their batch sizes, queue depth, open connections, closed ones by
                    reason.
  TensorFlow Serving REST API:
    GET  /v1/models/{name}             version status
    GET  /v1/models/{name}/metadata    the serving_default signature
    POST /v1/models/{name}:predict     {"instances": [...]} (row format; a multi-input model's
                                       instances are dicts by input name) answered
                                       {"predictions": [...]}, or {"inputs": ...} (columnar, a
                                       dict by input name for several inputs) answered
                                       {"outputs": ...}
  KServe / Open Inference Protocol v2 (JSON; not the binary tensor extension):
    GET  /v2/health/live, /v2/health/ready, /v2, /v2/models/{name}, /v2/models/{name}/ready
    POST /v2/models/{name}/infer       {"inputs": [{"name", "shape", "datatype", "data"}]}:
                                       data row-major, flat or nested (BYTES: strings, for a
                                       string input); tensors are matched to the
                                       model's inputs by name (a single-input model takes its one
                                       tensor under any name); answered {"model_name", "outputs":
                                       [{"name", "shape", "datatype", "data"}], "id"?}
  (``/versions/1`` may follow the model name in both protocols.)

Errors are answered with a JSON body {"error": message} and the server keeps running: 400 for
malformed JSON and for inputs of the wrong type, rank, shape or values (the message says what
was expected and what came), 404 for an unknown path or model, 405 for a wrong method, 408 when
a request is not received within --request-deadline, 411 without a Content-Length, 413 for a
body over --max-body-bytes or more than --max-samples-per-request samples, 431 for headers over
64 KiB, 503 when the queue is full, when every connection slot is busy with a request, when 4
large requests are in progress, when the model does not answer within 60 s or when the server is
shutting down, 500 for anything unexpected.

Limits (constructor arguments; CLI flags in brackets):
  max_body_bytes [--max-body-bytes] (8 MiB), max_samples [--max-samples-per-request] (32768):
      a request above either gets a 413 and nothing of it reaches the model.
  At most 4 requests with bodies over 64 KiB are received, parsed or run at once (a 503 for a
      fifth, before its body is read), so concurrent big requests cannot add up either.
  request_deadline [--request-deadline] (15 s): the whole request, headers and body, from its
      first byte; a client still sending after it gets a 408 and is disconnected, however
      steadily it trickles bytes.
  idle_timeout [--idle-timeout] (60 s): a keep-alive connection with no request is closed.
  max_connections [--max-connections] (1024): at the limit a new connection takes the slot of
      the connection idle the longest (else of the one that has been receiving its request the
      longest), so idle and trickling clients cannot lock out well-behaved ones; only when every
      slot is waiting for the model does a new connection get a 503. The open-file limit is
      raised to fit where the system allows.

Batching: complete requests are parsed and validated on the event-loop thread (bodies over
64 KiB on a small pool of parse threads, so a big request does not stall the others), then
queued for one batcher thread. The batcher takes the first waiting request and gathers the ones
that arrive within --batch-timeout-ms of it (never more than --max-batch samples together,
requests of one shape per model call), but stops waiting as soon as the event loop has
finished the pass that was reading requests when it began to wait (not the passes after it),
so a lone request is not delayed and a busy loop does not hold a batch for the whole window:
requests that arrive while the model runs form the next batch. Then it runs one
``predict_on_batch`` and hands each request its rows. A request larger than --max-batch is cut into --max-batch chunks that go
back to the end of the queue one at a time, so other clients' requests run between them and the
model's working memory stays that of one batch. Only the batcher thread calls the model, so
requests never race on its state; if a model call fails (e.g. a token id out of range), the
requests of that batch are retried one by one so that only the bad one gets the error.

Models: ``describe_model(model)`` gives the input and output specs (name, shape with a None
batch axis, dtype) the server validates against: from ``model.inputs`` / ``model.outputs``
(with ``input_names`` / ``output_names``) where the model has them, else one input of
``model.input_shape`` and one output of ``model.output_shape``. ``predict_on_batch`` gets an
array for one input or a dict by input name for several, and may return an array, a list in
``output_names`` order or a dict by output name.

Shutdown (SIGINT / SIGTERM, or ``ModelServer.shutdown()``): stop accepting connections, close
the idle ones, answer the requests already received, stop the batcher, close the socket.
"""
from __future__ import annotations

import argparse
import bisect
import collections
import concurrent.futures
import email.utils
import errno
import json
import math
import os
import re
import selectors
import signal
import socket
import sys
import threading
import time
from http import HTTPStatus
from urllib.parse import unquote, urlsplit

import numpy as np

__all__ = ["ModelServer", "Batcher", "RequestError", "TensorSpec", "describe_model",
           "parse_inputs", "add_arguments", "run"]

DEFAULT_MAX_BATCH = 32
DEFAULT_BATCH_TIMEOUT_MS = 2.0
DEFAULT_MAX_BODY_BYTES = 8 << 20
DEFAULT_MAX_SAMPLES = 32768
DEFAULT_MAX_QUEUE = 1024
DEFAULT_MAX_CONNECTIONS = 1024
DEFAULT_REQUEST_DEADLINE = 15.0
DEFAULT_IDLE_TIMEOUT = 60.0
DEFAULT_REQUEST_TIMEOUT = 60.0
MAX_HEADER_BYTES = 64 << 10
MODEL_VERSION = "1"
_INLINE_BODY_BYTES = 64 << 10   # larger bodies are parsed on a parse thread
_INLINE_ROWS = 2048             # larger answers are encoded on a parse thread
_JSON_VALUES = 2048             # numbers per json.dumps / json.loads call on large bodies
_LINGER_S = 2.0                 # after an answer with Connection: close, drain for this long
_MAX_LARGE = 4                  # most requests with bodies over _INLINE_BODY_BYTES at once
_BUSY_READ_BYTES = 64 << 10     # pipelined bytes read while a connection waits for the model


class RequestError(Exception):
    """A request the server refuses: HTTP status and message for the JSON error body."""

    def __init__(self, status, message, close=False, headers=()):
        super().__init__(message)
        self.status = int(status)
        self.message = message
        self.close = bool(close)
        self.headers = tuple(headers)


# -- the model's inputs and outputs -------------------------------------------------------------
def _fmt(shape):
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + \
        ("," if len(shape) == 1 else "") + ")"


class TensorSpec:
    """One model input or output: name, shape (None batch axis first), NumPy dtype."""

    __slots__ = ("name", "shape", "dtype")

    def __init__(self, name, shape, dtype):
        self.name = str(name)
        self.shape = tuple(None if d is None else int(d) for d in shape)
        # a string input (nanonet.Input(dtype="string")) holds str objects
        self.dtype = np.dtype(object) if dtype in ("string", object) else np.dtype(dtype)

    @property
    def sample_shape(self):
        return self.shape[1:]

    @property
    def dtype_name(self):
        return "string" if self.dtype.kind == "O" else self.dtype.name

    def to_json(self):
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype_name}

    def __repr__(self):
        return f"TensorSpec({self.name!r}, {_fmt(self.shape)}, {self.dtype_name})"


def input_spec(model):
    """(sample shape without the batch axis (None where any size goes), input dtype) of a
    built single-input model (today's Sequential)."""
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


def describe_model(model):
    """(input specs, output specs) of a model, as lists of TensorSpec.

    A nanonet model (Sequential or graph) is described by its ``inputs`` / ``outputs`` (symbolic
    tensors with .shape and .dtype) under ``input_names`` / ``output_names``; an input that feeds
    Embedding layers takes token ids (int32) whatever float dtype it was recorded with. A
    duck-typed model without ``inputs`` has one input of ``model.input_shape`` (dtype as
    ``input_spec`` works it out) and one output named after its last layer."""
    inputs, outputs = getattr(model, "inputs", None), getattr(model, "outputs", None)
    if inputs and outputs:
        def specs(tensors, names, ids):
            names = list(names) if names is not None else [t.name for t in tensors]
            out = []
            for n, t in zip(names, tensors):
                dtype = getattr(t, "dtype", None) or "float32"
                if ids and dtype != "string" and np.dtype(dtype).kind == "f" and \
                        _feeds_embedding(model, t):
                    dtype = "int32"  # token ids
                out.append(TensorSpec(n, t.shape, dtype))
            return out
        ins = specs(inputs, getattr(model, "input_names", None), True)
        outs = specs(outputs, getattr(model, "output_names", None), False)
        for what, group in (("input", ins), ("output", outs)):
            names = [s.name for s in group]
            if len(set(names)) != len(names):
                raise ValueError(f"model {model.name!r}: {what} names must be unique to be "
                                 f"served; got {names}")
        return ins, outs
    sample_shape, dtype = input_spec(model)
    layer = getattr(model, "_input_layer", None)
    last = model.layers[-1]
    ins = [TensorSpec(layer.name if layer is not None else "input", (None,) + sample_shape,
                      dtype)]
    out_dtype = getattr(last, "dtype", None) or "float32"
    outs = [TensorSpec(last.name, model.output_shape, out_dtype)]
    return ins, outs


def _class_names(model, first_output):
    """The model's class_names, checked against the width of its first output (one per unit,
    or two for a single sigmoid unit); None when it has none."""
    names = getattr(model, "class_names", None)
    if names is None:
        return None
    width = first_output.shape[-1] if first_output.shape else None
    if width is not None and len(names) != width and not (width == 1 and len(names) == 2):
        raise ValueError(f"model {model.name!r} has {len(names)} class_names for an output "
                         f"{first_output.name!r} of width {width}; give one name per output "
                         "unit (two for one sigmoid unit)")
    return list(names)


def _feeds_embedding(model, tensor):
    """Whether an Embedding layer of the model consumes tensor directly."""
    for node in getattr(model, "_nodes", ()):
        if type(node.layer).__name__ == "Embedding" and any(t is tensor for t in node.inputs):
            return True
    return False


# -- validation ---------------------------------------------------------------------------------
def _as_numbers(data, what):
    """A (nested) JSON list as a numeric array; RequestError(400) naming what is wrong."""
    if not isinstance(data, list):
        raise RequestError(400, f"{what} must be a (nested) list of numbers; got "
                                f"{type(data).__name__}")
    # np.array of a big nested list holds the GIL throughout (about 0.2 us a number), so a
    # long list is converted in pieces of rows
    rows = len(data)
    if rows > 1:
        first = data[0]
        size = 1
        while isinstance(first, list) and first:
            size *= len(first)
            first = first[0]
        rows = max(1, _JSON_VALUES // max(1, size))
    try:
        if rows >= len(data):
            arr = _numbers(np.array(data), what)
        else:
            arr = np.concatenate([_numbers(np.array(data[i:i + rows]), what)
                                  for i in range(0, len(data), rows)])
    except (ValueError, TypeError, OverflowError):
        raise RequestError(400, f"{what} must be a rectangular nested list of numbers (all rows "
                                "of one length)") from None
    return arr


def _as_strings(data, spec, what):
    """Text for a string input: a str (one sample) or a (nested) list of str, as an object
    array; for an input of shape (None, 1) a flat list of texts is a batch. RequestError(400)
    naming what is wrong."""
    if isinstance(data, str):
        arr = np.empty((), dtype=object)
        arr[()] = data
    elif isinstance(data, list):
        try:
            arr = np.array(data, dtype=object)
        except ValueError:
            arr = None
        if arr is None or not all(isinstance(v, str) for v in arr.reshape(-1).tolist()):
            raise RequestError(400, f"{what} must be a string or a rectangular (nested) list of "
                                    "strings (the model takes text)")
    else:
        raise RequestError(400, f"{what} must be a string or a list of strings (the model "
                                f"takes text); got {type(data).__name__}")
    if spec.sample_shape == (1,) and arr.ndim <= 1:
        arr = arr.reshape(arr.shape + (1,))  # "text" -> one sample, ["a", "b"] -> a batch
    return arr


def _values(data, spec, what):
    """A request's (nested) JSON value as an array for spec: strings or numbers."""
    if spec.dtype.kind == "O":
        return _as_strings(data, spec, what)
    return _as_numbers(data, what)


def _numbers(arr, what):
    if arr.dtype.kind not in "iuf":
        kind = {"b": "booleans", "U": "strings", "O": "mixed, null or out-of-range values or "
                "ragged rows"}.get(arr.dtype.kind, f"dtype {arr.dtype}")
        raise RequestError(400, f"{what} must hold numbers; got {kind}")
    return arr


_INT_RANGES = {}


def _int_range(dtype):
    """(min, max) of an integer dtype (np.iinfo, made once per dtype)."""
    r = _INT_RANGES.get(dtype)
    if r is None:
        info = np.iinfo(dtype)
        r = _INT_RANGES[dtype] = (int(info.min), int(info.max))
    return r


def _conform(arr, spec, what, batch=None):
    """A numeric array as spec's dtype with a batch axis, and whether it was one sample.
    batch=None takes one sample or a batch, batch=True a batch only."""
    sample_shape = spec.sample_shape
    dtype = spec.dtype
    rank = len(sample_shape)
    if arr.ndim == rank and batch is None:
        single = True
        arr = arr.reshape((1,) + arr.shape)
    elif arr.ndim == rank + 1:
        single = False
    elif batch is None:
        raise RequestError(400, f"{what} must have shape {_fmt(sample_shape)} for one sample or "
                                f"{_fmt(('n',) + sample_shape)} for a batch; got shape "
                                f"{_fmt(arr.shape)}")
    else:
        raise RequestError(400, f"{what} must be a batch of shape "
                                f"{_fmt(('n',) + sample_shape)}; got shape {_fmt(arr.shape)}")
    if arr.size == 0:
        raise RequestError(400, f"{what} is empty (shape {_fmt(arr.shape)})")
    if any(w is not None and w != d for w, d in zip(sample_shape, arr.shape[1:])):
        of = "" if what == "inputs" else f" of {what}"
        raise RequestError(400, f"each sample{of} must have shape {_fmt(sample_shape)}; got "
                                f"{_fmt(arr.shape[1:])}")
    if dtype.kind == "O":  # text, checked by _as_strings
        return arr, single
    if dtype.kind in "iu":
        if arr.dtype.kind == "f":
            if not np.isfinite(arr).all() or not np.array_equal(arr, np.round(arr)):
                raise RequestError(400, f"{what} must be integers (the model takes {dtype.name} "
                                        "ids); got non-integer numbers")
        lo, hi = _int_range(dtype)
        if arr.min() < lo or arr.max() > hi:
            raise RequestError(400, f"{what} must fit in {dtype.name}; got values in "
                                    f"[{arr.min()}, {arr.max()}]")
        return arr.astype(dtype, copy=False), single
    if dtype.kind == "b":
        return arr.astype(dtype), single
    out = arr.astype(dtype, copy=False)
    if not np.isfinite(out).all():
        raise RequestError(400, f"{what} must be finite numbers representable in {dtype.name}")
    return out, single


def _inputs_field(payload):
    """payload["inputs"] of a decoded /predict body; RequestError(400) naming what came
    otherwise."""
    if not isinstance(payload, dict) or "inputs" not in payload:
        got = type(payload).__name__ if not isinstance(payload, dict) else \
            f"keys {sorted(payload)}"
        raise RequestError(400, 'the body must be a JSON object {"inputs": [...]}; got ' + got)
    return payload["inputs"]


def parse_inputs(payload, sample_shape, dtype):
    """The ``inputs`` of a decoded /predict body for a single-input model, as an array of dtype
    with a batch axis, and whether it was a single sample. Raises RequestError(400) naming what
    is wrong."""
    data = _inputs_field(payload)
    spec = TensorSpec("inputs", (None,) + tuple(sample_shape), dtype)
    return _conform(_values(data, spec, "inputs"), spec, "inputs")


def _by_name(given, specs, what):
    """{input name: value} from a dict that must name exactly the model's inputs."""
    names = [s.name for s in specs]
    missing = [n for n in names if n not in given]
    unknown = sorted(k for k in given if k not in names)
    if unknown or missing:
        raise RequestError(400, f"{what} must name the model's inputs {names}; " +
                           (f"unknown {unknown}" if unknown else "") +
                           ("; " if unknown and missing else "") +
                           (f"missing {missing}" if missing else ""))
    return [given[n] for n in names]


def _same_batch(arrays, singles, specs, what):
    if len(set(singles)) > 1:
        raise RequestError(400, f"{what}: give every input as one sample or every input as a "
                                "batch; got a mix")
    sizes = [a.shape[0] for a in arrays]
    if len(set(sizes)) > 1:
        got = ", ".join(f"{s.name}: {n}" for s, n in zip(specs, sizes))
        raise RequestError(400, f"{what}: every input must have the same number of samples; "
                                f"got {got}")
    return sizes[0]


# -- batching -----------------------------------------------------------------------------------
def _nrows(x):
    return x.shape[0] if isinstance(x, np.ndarray) else x[0].shape[0]


def _rows(x, lo, hi):
    return x[lo:hi] if isinstance(x, np.ndarray) else [a[lo:hi] for a in x]


def _concat(parts):
    if isinstance(parts[0], np.ndarray):
        return np.concatenate(parts)
    return [np.concatenate([p[i] for p in parts]) for i in range(len(parts[0]))]


def _shape_key(x):
    if isinstance(x, np.ndarray):
        return x.shape[1:], x.dtype.str
    return tuple((a.shape[1:], a.dtype.str) for a in x)


def _check_output(y, n):
    arrays = [y] if isinstance(y, np.ndarray) else y if isinstance(y, list) else None
    if not arrays or any(not isinstance(a, np.ndarray) or a.ndim < 1 or a.shape[0] != n
                         for a in arrays):
        shapes = getattr(y, "shape", None) if isinstance(y, np.ndarray) else \
            [getattr(a, "shape", None) for a in y] if isinstance(y, (list, tuple)) else None
        raise RuntimeError(f"the model returned {type(y).__name__} of shape {shapes} for a "
                           f"batch of {n}")


class _Pending:
    __slots__ = ("x", "n", "taken", "answered", "parts", "event", "result", "error", "callback",
                 "cancelled", "awaited")

    def __init__(self, x, callback=None):
        self.x = x
        self.n = _nrows(x)
        self.taken = 0      # rows handed to model calls so far
        self.answered = 0   # rows answered so far
        self.parts = []
        self.event = threading.Event()
        self.result = None
        self.error = None
        self.callback = callback
        self.cancelled = False
        self.awaited = 0    # the announcements made when it was submitted


class Batcher:
    """One thread that runs ``predict(x)`` on batches gathered from concurrent ``submit`` calls.

    predict: callable taking a batch (an array, or a list of arrays with one first axis for a
        model with several inputs) and returning an array with the same first axis (or a list
        of them, one per output).
    max_batch: most samples per call; a larger request is cut into chunks of max_batch rows,
        and after each chunk it goes back to the end of the queue, so requests queued meanwhile
        run between its chunks.
    timeout_ms: how long to wait after the first queued request for others to join it; the wait
        ends early once the requests announced before it began are submitted or withdrawn
        (``announce``: a request is being received; ModelServer announces each pass of its
        event loop, so a batch takes what one pass reads, and a busy loop starting pass after
        pass does not hold it for the whole window).
    max_queue: most waiting requests; ``submit`` raises RequestError(503) beyond it.
    thread_init: called once on the batcher thread before the first batch (ModelServer uses it
        to give that thread the kernels' thread count: OpenMP's count is per calling thread).
    batch_done: called on the batcher thread after each model call, once the callbacks of the
        requests it finished have run (ModelServer wakes its event loop there, once a call
        rather than once a request).
    """

    def __init__(self, predict, max_batch=DEFAULT_MAX_BATCH, timeout_ms=DEFAULT_BATCH_TIMEOUT_MS,
                 max_queue=DEFAULT_MAX_QUEUE, thread_init=None, batch_done=None):
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
        self.batch_done = batch_done
        self.batches = 0
        self.samples = 0
        self.batch_sizes = collections.Counter()  # samples per model call -> calls
        self._queue = collections.deque()
        self._announced = 0  # announce() calls so far
        self._resolved = 0   # withdraw() calls and announced submits so far
        self._gathering = False  # the batcher waits for announced requests to join a batch
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
            self._announced += 1

    def withdraw(self):
        """An announced request will not be submitted after all."""
        with self._cond:
            self._resolved += 1
            if self._gathering or self._queue:  # else the batcher has nothing to wake up for
                self._cond.notify_all()

    def submit(self, x, announced=False, callback=None):
        """Queue a batch (see ``predict``); returns a handle for ``wait``. callback(handle), if
        given, is called on the batcher thread once the handle has its result or error."""
        p = _Pending(x, callback)
        with self._cond:
            if announced:
                self._resolved += 1
                self._cond.notify_all()
            if self._closing:
                raise RequestError(503, "the server is shutting down")
            if len(self._queue) >= self.max_queue:
                raise RequestError(503, f"the server is busy ({len(self._queue)} requests "
                                        "queued); retry later")
            p.awaited = self._announced
            self._queue.append(p)
            if self._resolved >= self._announced:
                self._cond.notify()
            # else the batcher would wait for the announced requests anyway: the withdraw or
            # announced submit that resolves the last of them wakes it (one wake-up, not two)
        return p

    @staticmethod
    def cancel(pending):
        """Run no more of a submitted request (its remaining chunks are dropped)."""
        pending.cancelled = True

    @staticmethod
    def wait(pending, timeout=None):
        """The predictions for a submitted array (raises what the model call raised)."""
        if not pending.event.wait(timeout):
            raise RequestError(503, f"no answer from the model within {timeout} s")
        if pending.error is not None:
            raise pending.error
        return pending.result

    def queued(self):
        """(requests waiting, samples of theirs not yet handed to the model)."""
        with self._cond:
            return len(self._queue), sum(p.n - p.taken for p in self._queue)

    def close(self, timeout=None):
        """Answer everything queued, then stop the thread."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def _take(self):
        """The next batch: a list of (pending, first row, end row)."""
        with self._cond:
            while True:
                while self._queue and self._queue[0].cancelled:
                    self._queue.popleft()
                if self._queue:
                    break
                if self._closing:
                    return None
                self._cond.wait()
            batch = []
            room = self.max_batch
            again = None
            deadline = time.monotonic() + self.timeout
            # wait for the requests announced when the first one was submitted (those being
            # read in the same event-loop pass), not for ones announced later
            awaited = self._queue[0].awaited
            while room > 0:
                if self._queue:
                    p = self._queue.popleft()
                    if p.cancelled:
                        continue
                    k = min(room, p.n - p.taken)
                    batch.append((p, p.taken, p.taken + k))
                    p.taken += k
                    room -= k
                    if p.taken < p.n:
                        again = p  # only the last one taken can be left over (room is 0)
                    continue
                left = deadline - time.monotonic()
                if left <= 0 or self._closing or self._resolved >= awaited:
                    break
                self._gathering = True
                try:
                    self._cond.wait(left)
                finally:
                    self._gathering = False
            if again is not None:  # the rest of a big request queues behind the others
                self._queue.append(again)
            return batch

    def _loop(self):
        if self.thread_init is not None:
            self.thread_init()
        while True:
            batch = self._take()
            if batch is None:
                return
            groups = {}
            for item in batch:
                groups.setdefault(_shape_key(item[0].x), []).append(item)
            for group in groups.values():
                self._run(group)
                if self.batch_done is not None:
                    try:
                        self.batch_done()
                    except Exception:  # noqa: BLE001 - the batcher must keep running
                        pass

    def _run(self, group):
        group = [item for item in group if item[0].error is None]
        if not group:
            return
        try:
            parts = [_rows(p.x, lo, hi) for p, lo, hi in group]
            x = parts[0] if len(parts) == 1 else _concat(parts)
            n = _nrows(x)
            y = self.predict(x)
            if isinstance(y, tuple):
                y = list(y)
            _check_output(y, n)
        except Exception as e:  # noqa: BLE001 - handed to the waiting request
            if len(group) > 1:  # find the culprit: retry one by one
                for item in group:
                    self._run([item])
                return
            p = group[0][0]
            p.cancelled = True
            self._finish(p, e)
            return
        self.batches += 1
        self.samples += n
        self.batch_sizes[n] += 1
        lo = 0
        for p, a, b in group:
            k = b - a
            p.parts.append(_rows(y, lo, lo + k))
            lo += k
            p.answered += k
            if p.answered == p.n:
                p.result = p.parts[0] if len(p.parts) == 1 else _concat(p.parts)
                p.parts = None
                self._finish(p)

    @staticmethod
    def _finish(p, error=None):
        if p.event.is_set():
            return
        p.error = error
        p.event.set()
        if p.callback is not None:
            try:
                p.callback(p)
            except Exception:  # noqa: BLE001 - the batcher must keep running
                pass


# -- metrics ------------------------------------------------------------------------------------
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                    5.0, 10.0)


class _Metrics:
    """Counters written by the event-loop thread only; rendered in Prometheus text format."""

    def __init__(self):
        self.requests = collections.Counter()   # (endpoint, code) -> count
        self.latency = {}                       # endpoint -> [bucket counts..., +Inf], sum
        self.closed = collections.Counter()     # reason -> connections closed by the server

    def observe(self, endpoint, code, seconds):
        self.requests[endpoint, code] += 1
        hist = self.latency.get(endpoint)
        if hist is None:
            hist = self.latency[endpoint] = [[0] * (len(_LATENCY_BUCKETS) + 1), 0.0]
        hist[0][bisect.bisect_left(_LATENCY_BUCKETS, seconds)] += 1
        hist[1] += seconds

    def render(self, server):
        out = []

        def head(name, kind, text):
            out.append(f"# HELP {name} {text}")
            out.append(f"# TYPE {name} {kind}")

        head("nanonet_requests_total", "counter", "HTTP requests answered, by endpoint and "
             "status code.")
        for (endpoint, code), n in sorted(self.requests.items()):
            out.append(f'nanonet_requests_total{{endpoint="{endpoint}",code="{code}"}} {n}')
        head("nanonet_request_duration_seconds", "histogram", "Time from a request's last byte "
             "received to its answer queued for sending, by endpoint.")
        for endpoint, (counts, total) in sorted(self.latency.items()):
            acc = 0
            for le, c in zip(_LATENCY_BUCKETS + ("+Inf",), counts):
                acc += c
                out.append(f'nanonet_request_duration_seconds_bucket{{endpoint="{endpoint}",'
                           f'le="{le}"}} {acc}')
            out.append(f'nanonet_request_duration_seconds_sum{{endpoint="{endpoint}"}} '
                       f'{total:.6f}')
            out.append(f'nanonet_request_duration_seconds_count{{endpoint="{endpoint}"}} {acc}')
        batcher = server.batcher
        sizes = dict(batcher.batch_sizes)
        head("nanonet_batch_size", "histogram", "Samples per model call.")
        bounds, b = [], 1
        while b < batcher.max_batch:
            bounds.append(b)
            b *= 2
        bounds.append(batcher.max_batch)
        acc, total = 0, 0
        for le in bounds:
            acc = sum(c for s, c in sizes.items() if s <= le)
            out.append(f'nanonet_batch_size_bucket{{le="{le}"}} {acc}')
        calls = sum(sizes.values())
        total = sum(s * c for s, c in sizes.items())
        out.append(f'nanonet_batch_size_bucket{{le="+Inf"}} {calls}')
        out.append(f"nanonet_batch_size_sum {total}")
        out.append(f"nanonet_batch_size_count {calls}")
        head("nanonet_model_calls_total", "counter", "predict_on_batch calls that succeeded.")
        out.append(f"nanonet_model_calls_total {calls}")
        head("nanonet_inference_samples_total", "counter", "Samples the model has answered.")
        out.append(f"nanonet_inference_samples_total {total}")
        depth, samples = batcher.queued()
        head("nanonet_queue_depth", "gauge", "Requests waiting for the model.")
        out.append(f"nanonet_queue_depth {depth}")
        head("nanonet_queued_samples", "gauge", "Samples of waiting requests not yet given to "
             "the model.")
        out.append(f"nanonet_queued_samples {samples}")
        head("nanonet_open_connections", "gauge", "Open client connections.")
        out.append(f"nanonet_open_connections {len(server._conns)}")
        head("nanonet_connections_closed_total", "counter", "Connections closed by the server "
             "before the client closed them, by reason.")
        for reason in ("idle_timeout", "request_deadline", "evicted", "refused_full"):
            out.append(f'nanonet_connections_closed_total{{reason="{reason}"}} '
                       f"{self.closed[reason]}")
        return "\n".join(out) + "\n"


# -- JSON answers -------------------------------------------------------------------------------
_ENCODER = json.JSONEncoder(separators=(",", ":"))  # json.dumps(obj, separators=...) makes one
_dumps = _ENCODER.encode                            # a call; this one is made once


def _dumps_array(a):
    """JSON of an array's nested lists, in pieces of rows (one json.dumps call holds the GIL
    throughout, about 3 us a float: pieces keep the event loop answering others meanwhile)."""
    rows = max(1, _JSON_VALUES // max(1, a[0].size)) if a.ndim else 1
    if a.ndim == 0 or a.shape[0] <= rows:
        return _dumps(a.tolist())
    pieces = [_dumps(a[i:i + rows].tolist())[1:-1] for i in range(0, a.shape[0], rows)]
    return "[" + ",".join(pieces) + "]"


def _reject_constant(name):
    raise ValueError(f"{name} is not allowed (JSON has no NaN or Infinity)")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
_WS = re.compile(r"[ \t\n\r]*")
_NUMBER_START = frozenset("-0123456789")


def _loads(body):
    """json.loads of a request body that may be megabytes: the outer objects and lists are
    walked here and their elements (rows; pieces of flat number lists) decoded one call each,
    because one json.loads call holds the GIL throughout (about 80 ms a megabyte), which would
    stall the event loop and every other client for that long."""
    if len(body) <= _INLINE_BODY_BYTES:
        if isinstance(body, (bytes, bytearray)):  # as json.loads does, without a new decoder
            body = body.decode(json.detect_encoding(body), "surrogatepass")
        elif body.startswith("\ufeff"):
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", body, 0)
        return _DECODER.decode(body)
    text = body.decode("utf-8") if isinstance(body, (bytes, bytearray)) else body
    if text.startswith("\ufeff"):
        raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    value, end = _parse_value(text, _WS.match(text, 0).end(), 0, _DECODER)
    end = _WS.match(text, end).end()
    if end != len(text):
        raise json.JSONDecodeError("Extra data", text, end)
    return value


def _parse_value(s, i, depth, decoder):
    """Objects down to depth 2 ({"inputs": [{"name": ..., "data": [...]}]}) and lists down to
    depth 1 (a list of rows) are walked here; a long flat list of numbers anywhere down to
    depth 3 is decoded in pieces; anything else in one call."""
    c = s[i:i + 1]
    if c == "{" and depth <= 2:
        return _parse_object(s, i, depth, decoder)
    if c == "[" and depth <= 3:
        flat = _parse_numbers(s, i)
        if flat is not None:
            return flat
        if depth <= 1:
            return _parse_list(s, i, depth, decoder)
    return decoder.raw_decode(s, i)


def _parse_object(s, i, depth, decoder):
    out = {}
    i = _WS.match(s, i + 1).end()
    if s[i:i + 1] == "}":
        return out, i + 1
    while True:
        if s[i:i + 1] != '"':
            raise json.JSONDecodeError("Expecting property name enclosed in double quotes", s, i)
        key, i = decoder.raw_decode(s, i)
        i = _WS.match(s, i).end()
        if s[i:i + 1] != ":":
            raise json.JSONDecodeError("Expecting ':' delimiter", s, i)
        out[key], i = _parse_value(s, _WS.match(s, i + 1).end(), depth + 1, decoder)
        i = _WS.match(s, i).end()
        c = s[i:i + 1]
        if c == "}":
            return out, i + 1
        if c != ",":
            raise json.JSONDecodeError("Expecting ',' delimiter", s, i)
        i = _WS.match(s, i + 1).end()


def _parse_numbers(s, i):
    """(list, end) for a long flat list of numbers at s[i] == "[", decoded in pieces; None for
    anything else."""
    i = _WS.match(s, i + 1).end()
    if s[i:i + 1] not in _NUMBER_START:
        return None
    close = s.find("]", i)
    if close < i + 8 * _JSON_VALUES or s.find("[", i, close) >= 0 or \
            s.find('"', i, close) >= 0 or s.find("{", i, close) >= 0:
        return None
    out = []
    pos = i
    while pos < close:
        cut = s.find(",", min(close, pos + 8 * _JSON_VALUES), close)
        cut = close if cut < 0 else cut
        piece = s[pos:cut]
        if not piece.strip():
            raise json.JSONDecodeError("Expecting value", s, pos)
        try:
            out.extend(_DECODER.decode("[" + piece + "]"))
        except json.JSONDecodeError as e:
            raise json.JSONDecodeError(e.msg, s, pos + max(0, e.pos - 1)) from None
        pos = cut + 1
    return out, close + 1


def _parse_list(s, i, depth, decoder):
    out = []
    i = _WS.match(s, i + 1).end()
    if s[i:i + 1] == "]":
        return out, i + 1
    while True:
        value, i = _parse_value(s, i, depth + 1, decoder)
        out.append(value)
        i = _WS.match(s, i).end()
        c = s[i:i + 1]
        if c == "]":
            return out, i + 1
        if c != ",":
            raise json.JSONDecodeError("Expecting ',' delimiter", s, i)
        i = _WS.match(s, i + 1).end()


_V2_TYPES = {"BOOL": "bool", "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32",
             "UINT64": "uint64", "INT8": "int8", "INT16": "int16", "INT32": "int32",
             "INT64": "int64", "FP16": "float16", "FP32": "float32", "FP64": "float64"}
_V2_NAMES = {np.dtype(v).str: k for k, v in _V2_TYPES.items()}
_TF_TYPES = {"bool": "DT_BOOL", "uint8": "DT_UINT8", "uint16": "DT_UINT16", "uint32": "DT_UINT32",
             "uint64": "DT_UINT64", "int8": "DT_INT8", "int16": "DT_INT16", "int32": "DT_INT32",
             "int64": "DT_INT64", "float16": "DT_HALF", "float32": "DT_FLOAT",
             "float64": "DT_DOUBLE", "object": "DT_STRING"}


def _v2_type(dtype):
    if np.dtype(dtype).kind == "O":
        return "BYTES"  # strings
    return _V2_NAMES.get(np.dtype(dtype).str, np.dtype(dtype).name.upper())


def _v2_shape(shape):
    return [-1 if d is None else d for d in shape]


def _v2_fmt(sample_shape):
    """A batch shape as a v2 client writes it: [n, 8]."""
    return "[" + ", ".join(["n"] + ["-1" if d is None else str(d) for d in sample_shape]) + "]"


class _Job:
    """One inference request on its way through the server: the protocol, its arrays (one per
    model input, batch axis first), whether it was one sample, and what the answer needs."""

    __slots__ = ("proto", "xs", "n", "single", "request_id", "wanted")

    def __init__(self, proto, xs, single=False, request_id=None, wanted=None):
        self.proto = proto
        self.xs = xs
        self.n = xs[0].shape[0]
        self.single = single
        self.request_id = request_id
        self.wanted = wanted


# -- HTTP ---------------------------------------------------------------------------------------
# connection states: waiting for a request, receiving its headers, its body, waiting for the
# model, answer queued before closing, closing (reading and dropping), closed
_IDLE, _HEAD, _BODY, _BUSY, _DONE, _LINGER, _CLOSED = range(7)
_VERSION = re.compile(r"HTTP/(\d)\.(\d)\Z")
_URL_SPECIAL = re.compile(r"[%?#;\\\x00-\x20\x7f-\uffff]|//")  # cases for urlsplit and unquote
_TFS_PATH = re.compile(r"/v1/models/([^/:]+)(?:/versions/([^/:]+))?(/metadata|:[A-Za-z]+)?\Z")
_V2_PATH = re.compile(r"/v2/models/([^/]+)(?:/versions/([^/]+))?(/ready|/infer)?\Z")


class _Request:
    __slots__ = ("method", "target", "path", "version", "headers", "body", "keep_alive",
                 "endpoint")

    def __init__(self, method, target, version, headers):
        self.method = method
        self.target = target
        if target[:1] == "/" and not _URL_SPECIAL.search(target):
            self.path = target  # what urlsplit and unquote would give
        else:
            self.path = unquote(urlsplit(target).path)
        self.version = version
        self.headers = headers
        self.body = b""
        conn = headers.get("connection", "").lower()
        if version >= (1, 1):
            self.keep_alive = "close" not in conn
        else:
            self.keep_alive = "keep-alive" in conn
        self.endpoint = "other"


class _Conn:
    __slots__ = ("sock", "fd", "addr", "inbuf", "state", "events", "started", "idle_since",
                 "head_end", "body_len", "request", "received", "out", "out_since",
                 "close_after", "pending", "busy_since", "gen", "linger_until", "continued",
                 "large")

    def __init__(self, sock, addr, now):
        self.sock = sock
        self.fd = sock.fileno()
        self.addr = addr
        self.inbuf = bytearray()
        self.state = _IDLE
        self.events = 0
        self.started = None      # first byte of the request being received
        self.idle_since = now
        self.head_end = 0
        self.body_len = 0
        self.request = None
        self.received = 0.0      # when the whole request had arrived
        self.out = collections.deque()
        self.out_since = None
        self.close_after = False
        self.pending = None
        self.busy_since = 0.0
        self.gen = 0             # bumped per request: stale answers are dropped
        self.linger_until = 0.0
        self.continued = False
        self.large = False       # holds one of the _MAX_LARGE slots


class ModelServer:
    """An HTTP server answering predict requests for model (see the module docstring).

    ``ModelServer(model, port=0)`` binds an ephemeral port (``server.port``); ``start()`` serves
    from a background thread, ``serve_forever()`` from the calling one; ``shutdown()`` stops
    gracefully. Usable as a context manager (start on enter, shutdown on exit).
    """

    def __init__(self, model, host="127.0.0.1", port=8000, max_batch=DEFAULT_MAX_BATCH,
                 batch_timeout_ms=DEFAULT_BATCH_TIMEOUT_MS, max_body_bytes=DEFAULT_MAX_BODY_BYTES,
                 max_queue=DEFAULT_MAX_QUEUE, max_connections=DEFAULT_MAX_CONNECTIONS,
                 request_timeout=DEFAULT_REQUEST_TIMEOUT, idle_timeout=DEFAULT_IDLE_TIMEOUT,
                 log_requests=False, max_samples=DEFAULT_MAX_SAMPLES,
                 request_deadline=DEFAULT_REQUEST_DEADLINE, model_name=None):
        from . import __version__, ops
        for arg, value in (("max_body_bytes", max_body_bytes), ("max_connections",
                                                                max_connections),
                           ("max_samples", max_samples)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ModelServer: {arg} must be a positive int; got {value!r}")
        for arg, value in (("request_timeout", request_timeout), ("idle_timeout", idle_timeout),
                           ("request_deadline", request_deadline)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                    not math.isfinite(value) or value <= 0:
                raise ValueError(f"ModelServer: {arg} must be a number of seconds > 0; got "
                                 f"{value!r}")
        if model_name is not None and (not isinstance(model_name, str) or not model_name or
                                       "/" in model_name or ":" in model_name):
            raise ValueError(f"ModelServer: model_name must be a non-empty string without '/' "
                             f"or ':'; got {model_name!r}")
        self.model = model
        self.inputs, self.outputs = describe_model(model)
        self.model_name = model_name or str(getattr(model, "name", "model"))
        self.sample_shape, self.input_dtype = self.inputs[0].sample_shape, self.inputs[0].dtype
        self.class_names = _class_names(model, self.outputs[0])
        self.max_body_bytes = max_body_bytes
        self.max_connections = max_connections
        self.max_samples = max_samples
        self.request_timeout = float(request_timeout)
        self.idle_timeout = float(idle_timeout)
        self.request_deadline = float(request_deadline)
        self.log_requests = bool(log_requests)
        self.server_version = f"nanonet/{__version__}"
        threads = ops.get_num_threads()  # the kernels' thread count on the batcher thread too
        self.batcher = Batcher(self._call_model, max_batch=max_batch,
                               timeout_ms=batch_timeout_ms, max_queue=max_queue,
                               thread_init=lambda: ops.set_num_threads(threads),
                               batch_done=self._wake)
        self.requests = 0
        self.draining = False
        self.metrics = _Metrics()
        self._lock = threading.Lock()
        self._closed = False
        self._serving = False
        self._done = threading.Event()
        self._loop_done = threading.Event()
        self._thread = None
        self._drain_deadline = None
        self._conns = {}
        self._calls = collections.deque()
        self._large = 0  # requests with bodies over _INLINE_BODY_BYTES, received to answered
        self._wake_flag = False
        self._date = (0, "")
        self._heads = {}  # (status, content type, close, keep-alive) -> (date, head bytes)
        self._workers = None
        _raise_file_limit(max_connections + 64)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._listener.bind((host, port))
            self._listener.listen(min(1024, socket.SOMAXCONN))
            self._listener.setblocking(False)
        except BaseException:
            self._listener.close()
            raise
        self._address = self._listener.getsockname()[:2]
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._listener, selectors.EVENT_READ, "accept")
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._accepting = True

    # -- the model ----------------------------------------------------------------------------
    def _call_model(self, x):
        """predict_on_batch on an array (one input) or a list of arrays in input order;
        returns an array (one output) or a list of arrays in output order."""
        if isinstance(x, np.ndarray):
            y = self.model.predict_on_batch(x)
        else:
            y = self.model.predict_on_batch({s.name: a for s, a in zip(self.inputs, x)})
        if len(self.outputs) == 1:
            if isinstance(y, dict) and len(y) == 1:
                y = next(iter(y.values()))
            elif isinstance(y, (list, tuple)) and len(y) == 1:
                y = y[0]
            return y
        if isinstance(y, dict):
            missing = [s.name for s in self.outputs if s.name not in y]
            if missing:
                raise RuntimeError(f"the model's answer has no outputs {missing}; it has "
                                   f"{sorted(y)}")
            return [y[s.name] for s in self.outputs]
        if isinstance(y, (list, tuple)) and len(y) == len(self.outputs):
            return list(y)
        raise RuntimeError(f"the model returned {type(y).__name__}; expected a list or dict of "
                           f"{len(self.outputs)} outputs {[s.name for s in self.outputs]}")

    # -- addresses ----------------------------------------------------------------------------
    @property
    def host(self):
        return self._address[0]

    @property
    def port(self):
        return self._address[1]

    @property
    def url(self):
        host = self.host
        return f"http://{'[' + host + ']' if ':' in host else host}:{self.port}"

    def health(self):
        model = self.model
        first_in, first_out = self.inputs[0], self.outputs[0]
        count = getattr(model, "count_params", None)
        return {"status": "shutting_down" if self.draining else "ok", "model": self.model_name,
                "nanonet_version": self.server_version.split("/", 1)[1],
                "inputs": [s.to_json() for s in self.inputs],
                "outputs": [s.to_json() for s in self.outputs],
                "input_shape": list(first_in.shape), "input_dtype": first_in.dtype_name,
                "class_names": self.class_names,
                "output_shape": list(first_out.shape),
                "params": count() if callable(count) else None,
                "layers": [type(layer).__name__ for layer in getattr(model, "layers", [])],
                "max_batch": self.batcher.max_batch,
                "batch_timeout_ms": self.batcher.timeout * 1000.0,
                "max_samples_per_request": self.max_samples,
                "requests": self.requests, "batches": self.batcher.batches}

    # -- running ------------------------------------------------------------------------------
    def serve_forever(self):
        """Serve until ``shutdown()`` (from another thread or a signal handler's thread)."""
        with self._lock:
            if self._closed or self._serving:
                return
            self._serving = True
        self.batcher.start()
        self._workers = concurrent.futures.ThreadPoolExecutor(2, "nanonet-parse")
        try:
            self._loop()
        finally:
            for conn in list(self._conns.values()):
                self._close(conn)
            self._workers.shutdown(wait=False)
            self._loop_done.set()

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
            deadline = time.monotonic() + timeout
            self._drain_deadline = deadline
            self.draining = True
            if serving:
                self._wake()
                self._loop_done.wait(timeout)
            self.batcher.close(timeout=max(0.0, deadline - time.monotonic()))
            if self._thread is not None:
                self._thread.join(max(0.0, deadline - time.monotonic()))
            if not serving or self._loop_done.is_set():
                self._sel.close()
                for s in (self._listener, self._wake_r, self._wake_w):
                    s.close()
        finally:
            self._done.set()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.shutdown()

    def _wake(self):
        if not self._wake_flag:
            self._wake_flag = True
            try:
                self._wake_w.send(b"x")
            except OSError:
                pass

    def _call_soon(self, fn):
        """Run fn on the event-loop thread (from any thread)."""
        self._calls.append(fn)
        self._wake()

    def _loop(self):
        sel = self._sel
        sweep_every = min(0.25, self.request_deadline / 8, self.idle_timeout / 8)
        next_sweep = time.monotonic() + sweep_every
        while True:
            events = sel.select(max(0.0, min(sweep_every, next_sweep - time.monotonic())))
            self.batcher.announce()  # requests read in this pass join one batch
            try:
                for key, mask in events:
                    what = key.data
                    if what == "accept":
                        self._accept()
                    elif what == "wake":
                        try:  # drain first, then clear: a wake-up sent meanwhile is not lost
                            while self._wake_r.recv(4096):
                                pass
                        except OSError:
                            pass
                        self._wake_flag = False
                    elif what.state != _CLOSED:
                        try:
                            if mask & selectors.EVENT_WRITE:
                                self._on_write(what)
                            if mask & selectors.EVENT_READ and what.state != _CLOSED:
                                self._on_read(what)
                        except Exception:  # noqa: BLE001 - a bug must cost one connection only
                            self._internal_error(what)
                while self._calls:
                    try:
                        self._calls.popleft()()
                    except Exception:  # noqa: BLE001
                        self._internal_error(None)
            finally:
                self.batcher.withdraw()
            now = time.monotonic()
            if self.draining and self._drain(now):
                return
            if now >= next_sweep:
                self._sweep(now)
                next_sweep = now + sweep_every

    def _internal_error(self, conn):
        import traceback
        traceback.print_exc(file=sys.stderr)
        if conn is not None:
            self._close(conn)

    def _drain(self, now):
        """Shutting down: True when the loop may end."""
        if self._accepting:
            self._accepting = False
            self._sel.unregister(self._listener)
            self._listener.close()
        for conn in list(self._conns.values()):
            if conn.state in (_IDLE, _LINGER) and not conn.out and not conn.inbuf:
                self._close(conn)
        return not self._conns or now >= self._drain_deadline

    def _sweep(self, now):
        """Deadlines: idle keep-alive connections, requests received too slowly, answers not
        read, the model's answer."""
        if not self._accepting and not self.draining and not self._closed:
            self._resume_accepting()
        for conn in list(self._conns.values()):
            if conn.state == _CLOSED:
                continue
            if conn.out and now - conn.out_since > self.request_deadline:
                self._close(conn)  # the client does not read its answer
            elif conn.state == _IDLE and not conn.out and now - conn.idle_since > \
                    self.idle_timeout:
                self.metrics.closed["idle_timeout"] += 1
                self._close(conn)
            elif conn.state in (_HEAD, _BODY) and now - conn.started > self.request_deadline:
                self.metrics.closed["request_deadline"] += 1
                self._refuse(conn, RequestError(
                    408, f"the request was not received within {self.request_deadline:g} s "
                         "(headers and body)", close=True))
            elif conn.state == _BUSY and conn.pending is not None and \
                    now - conn.busy_since > self.request_timeout:
                Batcher.cancel(conn.pending)
                conn.pending = None
                self._send_error(conn, RequestError(
                    503, f"no answer from the model within {self.request_timeout:g} s"))
            elif conn.state == _LINGER and now > conn.linger_until:
                self._close(conn)

    # -- connections --------------------------------------------------------------------------
    def _accept(self):
        now = time.monotonic()
        for _ in range(64):
            try:
                sock, addr = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    if not self._evict(now):  # out of file descriptors: wait for the sweep
                        self._sel.unregister(self._listener)
                        self._accepting = False
                    return
                if e.errno in (errno.ECONNABORTED, errno.EPROTO):
                    continue  # the client gave up while queued
                return
            full = len(self._conns) >= self.max_connections and not self._evict(now)
            if full and len(self._conns) >= self.max_connections + 64:
                self.metrics.closed["refused_full"] += 1
                sock.close()  # too many refusals still closing: no answer at all
                continue
            sock.setblocking(False)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
            conn = _Conn(sock, addr, now)
            self._conns[conn.fd] = conn
            self._want(conn, selectors.EVENT_READ)
            if full:  # answered, then closed after a short linger (no reset of its request)
                self.metrics.closed["refused_full"] += 1
                self._refuse(conn, RequestError(503, "too many open connections, all busy "
                                                     "with requests; retry later", close=True))

    def _resume_accepting(self):
        self._sel.register(self._listener, selectors.EVENT_READ, "accept")
        self._accepting = True

    def _evict(self, now):
        """Close one connection to make room: the one idle the longest, else the one that has
        been receiving its request the longest. False when every one waits for the model or
        is sending an answer."""
        idle = reading = None
        for conn in self._conns.values():
            if conn.out:
                continue
            if conn.state in (_IDLE, _LINGER):
                if idle is None or conn.idle_since < idle.idle_since:
                    idle = conn
            elif conn.state in (_HEAD, _BODY):
                if reading is None or conn.started < reading.started:
                    reading = conn
        victim = idle or reading
        if victim is None:
            return False
        self.metrics.closed["evicted"] += 1
        if victim is reading:
            try:
                victim.sock.send(self._head_bytes(503, b'{"error":"the server is at its '
                                                       b'connection limit"}', close=True))
            except OSError:
                pass
        self._close(victim)
        return True

    def _want(self, conn, events):
        if events == conn.events or conn.state == _CLOSED:
            return
        if conn.events == 0:
            self._sel.register(conn.sock, events, conn)
        elif events == 0:
            self._sel.unregister(conn.sock)
        else:
            self._sel.modify(conn.sock, events, conn)
        conn.events = events

    def _release_large(self, conn):
        if conn.large:
            conn.large = False
            self._large -= 1

    def _close(self, conn):
        if conn.state == _CLOSED:
            return
        self._release_large(conn)
        if conn.pending is not None:
            Batcher.cancel(conn.pending)
            conn.pending = None
        self._want(conn, 0)
        conn.state = _CLOSED
        conn.out.clear()
        conn.inbuf = bytearray()
        self._conns.pop(conn.fd, None)
        try:
            conn.sock.close()
        except OSError:
            pass

    def _on_read(self, conn):
        try:
            data = conn.sock.recv(262144)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        if conn.state == _LINGER:
            if not data:
                self._close(conn)
            return
        if conn.state == _BUSY:  # still registered for reading while its request runs
            if not data:  # half-closed: answer first (the end is seen again after that)
                self._want(conn, selectors.EVENT_WRITE if conn.out else 0)
                return
            conn.inbuf += data  # pipelined requests: parsed once the answer is queued
            if len(conn.inbuf) >= _BUSY_READ_BYTES:
                self._want(conn, selectors.EVENT_WRITE if conn.out else 0)
            return
        if not data:  # the client closed (or half-closed) its side
            self._close(conn)
            return
        conn.inbuf += data
        self._advance(conn)

    def _on_write(self, conn):
        out = conn.out
        try:
            while out:
                chunk = out[0]
                sent = conn.sock.send(chunk)
                if sent < len(chunk):
                    out[0] = memoryview(chunk)[sent:]
                    return
                out.popleft()
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        self._sent_all(conn)

    def _sent_all(self, conn):
        conn.out_since = None
        if conn.close_after:
            conn.close_after = False
            try:
                conn.sock.shutdown(socket.SHUT_WR)
            except OSError:
                self._close(conn)
                return
            conn.state = _LINGER  # read and drop what the client still sends, then close
            conn.inbuf = bytearray()
            conn.linger_until = time.monotonic() + _LINGER_S
            self._want(conn, selectors.EVENT_READ)
        elif conn.state != _BUSY:
            self._want(conn, selectors.EVENT_READ)
        else:
            self._want(conn, self._busy_events(conn))

    @staticmethod
    def _busy_events(conn):
        """What a connection waiting for the model is registered for: reading stays on (one
        epoll change less a request each way; a client that resets is noticed) until
        _BUSY_READ_BYTES of pipelined requests wait; writing while an answer is unsent."""
        events = selectors.EVENT_WRITE if conn.out else 0
        if len(conn.inbuf) < _BUSY_READ_BYTES:
            events |= selectors.EVENT_READ
        return events

    def _send(self, conn, data):
        if conn.state == _CLOSED:
            return
        if not conn.out:
            try:
                sent = conn.sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self._close(conn)
                return
            if sent == len(data):
                self._sent_all(conn)
                return
            data = memoryview(data)[sent:]
            conn.out_since = time.monotonic()
        conn.out.append(data)
        self._want(conn, selectors.EVENT_WRITE)

    # -- requests -----------------------------------------------------------------------------
    def _advance(self, conn):
        """Parse what has arrived: as many (pipelined) requests as are complete."""
        while conn.state in (_IDLE, _HEAD, _BODY) and conn.inbuf and not conn.close_after:
            buf = conn.inbuf
            if conn.state == _IDLE:
                conn.state = _HEAD
                conn.started = time.monotonic()
            if conn.state == _HEAD:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > MAX_HEADER_BYTES:
                        self._refuse(conn, RequestError(431, f"the request headers are over "
                                                             f"{MAX_HEADER_BYTES} bytes",
                                                        close=True))
                    return
                if end > MAX_HEADER_BYTES:
                    self._refuse(conn, RequestError(431, f"the request headers are over "
                                                         f"{MAX_HEADER_BYTES} bytes", close=True))
                    return
                try:
                    conn.request = self._parse_head(bytes(buf[:end]))
                    conn.body_len = self._body_length(conn.request)
                    if conn.body_len > _INLINE_BODY_BYTES:
                        if self._large >= _MAX_LARGE:
                            raise RequestError(503, f"{self._large} large requests (bodies over "
                                                    f"{_INLINE_BODY_BYTES} bytes) are in "
                                                    "progress, the most at once; retry later",
                                               close=True)
                        self._large += 1
                        conn.large = True
                except RequestError as e:
                    self._refuse(conn, e)
                    return
                conn.head_end = end + 4
                conn.state = _BODY
                conn.continued = False
            if conn.state == _BODY:
                need = conn.head_end + conn.body_len
                if len(buf) < need:
                    if not conn.continued and "100-continue" in \
                            conn.request.headers.get("expect", "").lower():
                        conn.continued = True
                        self._send(conn, b"HTTP/1.1 100 Continue\r\n\r\n")
                    return
                req = conn.request
                req.body = bytes(buf[conn.head_end:need])
                del buf[:need]
                conn.request = None
                conn.received = time.monotonic()
                conn.state = _BUSY
                conn.gen += 1
                self._dispatch(conn, req)

    def _parse_head(self, head):
        text = head.decode("latin-1")
        lines = text.split("\r\n")
        while lines and not lines[0]:
            lines.pop(0)  # tolerate blank lines before a request (RFC 9112 2.2)
        if not lines:
            raise RequestError(400, "Bad request syntax ('')", close=True)
        words = lines[0].split()
        if len(words) != 3:
            raise RequestError(400, f"Bad request syntax ({lines[0]!r})", close=True)
        method, target, version = words
        m = _VERSION.match(version)
        if m is None:
            raise RequestError(400, f"Bad request version ({version!r})", close=True)
        ver = (int(m.group(1)), int(m.group(2)))
        if ver[0] != 1:
            raise RequestError(505, f"HTTP version {version} is not supported; use HTTP/1.1",
                               close=True)
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise RequestError(400, f"Bad header line {line[:100]!r}", close=True)
            name = name.lower()
            value = value.strip()
            if name in headers:
                if name == "content-length" and headers[name] != value:
                    raise RequestError(400, "conflicting Content-Length headers", close=True)
                headers[name] = headers[name] + ", " + value
            else:
                headers[name] = value
        return _Request(method, target, ver, headers)

    def _body_length(self, req):
        if "transfer-encoding" in req.headers:
            raise RequestError(411, "chunked bodies are not supported; send a Content-Length",
                               close=True)
        length = req.headers.get("content-length")
        if length is None:
            if req.method == "POST":
                raise RequestError(411, "a Content-Length header is required", close=True)
            return 0
        n = int(length) if length.isdigit() else -1
        if n < 0:
            raise RequestError(400, f"invalid Content-Length {length!r}", close=True)
        if n > self.max_body_bytes:
            raise RequestError(413, f"the body is {n} bytes; the limit is "
                                    f"{self.max_body_bytes} (--max-body-bytes)", close=True)
        return n

    def _dispatch(self, conn, req):
        try:
            self._route(conn, req)
        except RequestError as e:
            self._send_error(conn, e, req)
        except Exception as e:  # noqa: BLE001 - the server must keep running
            self._send_error(conn, RequestError(500, f"internal error: {type(e).__name__}: {e}"),
                             req)

    def _route(self, conn, req):
        path, method = req.path, req.method
        get = None  # a GET answer: callable returning (status, obj)
        post = None  # an inference protocol
        if path in ("/health", "/"):
            req.endpoint = "health"
            get = lambda: (200, self.health())  # noqa: E731
        elif path == "/metrics":
            req.endpoint = "metrics"
            if method == "GET":
                text = self.metrics.render(self).encode("utf-8")
                return self._respond(conn, req, 200, text,
                                     "text/plain; version=0.0.4; charset=utf-8")
        elif path == "/predict":
            req.endpoint = "predict"
            post = "predict"
        elif path.startswith("/v1/"):
            m = _TFS_PATH.match(path)
            if m is None:
                raise RequestError(404, f"unknown path {path!r}; TensorFlow Serving paths are "
                                        "/v1/models/{name}[/versions/1][/metadata|:predict]")
            self._check_model(m.group(1), m.group(2))
            tail = m.group(3)
            if tail is None:
                req.endpoint = "tfs_status"
                get = lambda: (200, {"model_version_status": [{  # noqa: E731
                    "version": MODEL_VERSION, "state": "END" if self.draining else "AVAILABLE",
                    "status": {"error_code": "OK", "error_message": ""}}]})
            elif tail == "/metadata":
                req.endpoint = "tfs_metadata"
                get = lambda: (200, self._tfs_metadata())  # noqa: E731
            elif tail == ":predict":
                req.endpoint = "tfs_predict"
                post = "tfs"
            else:
                raise RequestError(404, f"{tail[1:]} is not supported; use :predict")
        elif path.startswith("/v2"):
            get = self._v2_get(req, path)
            if get is None and req.endpoint == "v2_infer":
                post = "v2"
            elif get is None:
                raise RequestError(404, f"unknown path {path!r}; Open Inference Protocol v2 "
                                        "paths are /v2/health/live, /v2/health/ready, "
                                        "/v2/models/{name}[/ready|/infer]")
        else:
            raise RequestError(404, f"unknown path {path!r}; use POST /predict, GET /health, "
                                    "GET /metrics, /v1/models/{name}... (TensorFlow Serving) or "
                                    "/v2/... (KServe v2)")
        if post is not None:
            if method != "POST":
                raise RequestError(405, f"method {method} is not allowed for {path}; use POST",
                                   headers=(("Allow", "POST"),))
            return self._infer(conn, req, post)
        if method != "GET":
            raise RequestError(405, f"method {method} is not allowed for {path}; use GET",
                               headers=(("Allow", "GET"),))
        status, obj = get()
        self._respond(conn, req, status, obj)

    def _check_model(self, name, version):
        if name != self.model_name:
            raise RequestError(404, f"unknown model {name!r}; this server serves "
                                    f"{self.model_name!r}")
        if version is not None and version != MODEL_VERSION:
            raise RequestError(404, f"model {name!r} has no version {version!r}; its only "
                                    f"version is {MODEL_VERSION}")

    def _tfs_metadata(self):
        def sig(specs):
            return {s.name: {"dtype": _TF_TYPES.get(s.dtype.name, "DT_INVALID"), "name": s.name,
                             "tensor_shape": {"dim": [{"size": str(-1 if d is None else d),
                                                       "name": ""} for d in s.shape],
                                              "unknown_rank": False}}
                    for s in specs}
        return {"model_spec": {"name": self.model_name, "signature_name": "",
                               "version": MODEL_VERSION},
                "metadata": {"signature_def": {"signature_def": {"serving_default": {
                    "inputs": sig(self.inputs), "outputs": sig(self.outputs),
                    "method_name": "tensorflow/serving/predict"}}}}}

    def _v2_get(self, req, path):
        """A GET answer for a v2 path, or None (req.endpoint says v2_infer for .../infer)."""
        if path == "/v2":
            req.endpoint = "v2_metadata"
            return lambda: (200, {"name": "nanonet", "version":
                                  self.server_version.split("/", 1)[1], "extensions": []})
        if path in ("/v2/health/live", "/v2/health/ready"):
            req.endpoint = "v2_health"
            if path.endswith("live"):
                return lambda: (200, {"live": True})
            return lambda: (503, {"ready": False}) if self.draining else (200, {"ready": True})
        m = _V2_PATH.match(path)
        if m is None:
            return None
        self._check_model(m.group(1), m.group(2))
        tail = m.group(3)
        if tail == "/infer":
            req.endpoint = "v2_infer"
            return None
        req.endpoint = "v2_metadata"
        if tail == "/ready":
            return lambda: ((503, {"name": self.model_name, "ready": False}) if self.draining
                            else (200, {"name": self.model_name, "ready": True}))

        def spec(s):
            return {"name": s.name, "datatype": _v2_type(s.dtype), "shape": _v2_shape(s.shape)}
        return lambda: (200, {"name": self.model_name, "versions": [MODEL_VERSION],
                              "platform": "nanonet", "inputs": [spec(s) for s in self.inputs],
                              "outputs": [spec(s) for s in self.outputs]})

    # -- inference ----------------------------------------------------------------------------
    def _infer(self, conn, req, proto):
        if self.draining:
            raise RequestError(503, "the server is shutting down", close=True)
        if "inference-header-content-length" in req.headers:
            raise RequestError(400, "the binary tensor data extension is not supported; send "
                                    "the tensors as JSON")
        if len(req.body) <= _INLINE_BODY_BYTES:
            job = self._parse(proto, req.body)
            return self._submit(conn, req, job)
        gen = conn.gen
        future = self._workers.submit(self._parse, proto, req.body)
        req.body = b""
        conn.pending = None
        conn.busy_since = time.monotonic()
        self._want(conn, self._busy_events(conn))
        future.add_done_callback(lambda f: self._call_soon(
            lambda: self._parsed(conn, gen, req, f)))

    def _parsed(self, conn, gen, req, future):
        if conn.state != _BUSY or conn.gen != gen:
            return
        try:
            job = future.result()
        except RequestError as e:
            return self._send_error(conn, e, req)
        except Exception as e:  # noqa: BLE001
            return self._send_error(conn, RequestError(500, f"internal error: "
                                                            f"{type(e).__name__}: {e}"), req)
        try:
            self._submit(conn, req, job)
        except RequestError as e:
            self._send_error(conn, e, req)

    def _submit(self, conn, req, job):
        if job.n > self.max_samples:
            raise RequestError(413, f"the request has {job.n} samples; the limit is "
                                    f"{self.max_samples} per request "
                                    "(--max-samples-per-request); split it")
        gen = conn.gen
        x = job.xs[0] if len(job.xs) == 1 else job.xs
        conn.busy_since = time.monotonic()
        calls = self._calls  # the batcher's batch_done wakes the loop, once a model call
        conn.pending = self.batcher.submit(x, callback=lambda p: calls.append(
            lambda: self._answered(conn, gen, req, job, p)))
        self._want(conn, self._busy_events(conn))

    def _answered(self, conn, gen, req, job, pending):
        if conn.state != _BUSY or conn.gen != gen or conn.pending is not pending:
            return
        conn.pending = None
        if pending.error is not None:
            e = pending.error
            if isinstance(e, RequestError):
                err = e
            elif isinstance(e, ValueError):  # the model refused the values (e.g. a token id)
                err = RequestError(400, str(e))
            else:
                err = RequestError(500, f"internal error: {type(e).__name__}: {e}")
            return self._send_error(conn, err, req)
        ys = [pending.result] if isinstance(pending.result, np.ndarray) else pending.result
        if job.n <= _INLINE_ROWS:
            return self._answer(conn, gen, req, job, ys)
        future = self._workers.submit(self._encode, job, ys)
        future.add_done_callback(lambda f: self._call_soon(
            lambda: self._encoded(conn, gen, req, f)))

    def _answer(self, conn, gen, req, job, ys):
        try:
            body = self._encode(job, ys)
        except Exception as e:  # noqa: BLE001
            return self._send_error(conn, RequestError(500, f"internal error: "
                                                            f"{type(e).__name__}: {e}"), req)
        self.requests += 1
        self._respond(conn, req, 200, body)

    def _encoded(self, conn, gen, req, future):
        if conn.state != _BUSY or conn.gen != gen:
            return
        try:
            body = future.result()
        except Exception as e:  # noqa: BLE001
            return self._send_error(conn, RequestError(500, f"internal error: "
                                                            f"{type(e).__name__}: {e}"), req)
        self.requests += 1
        self._respond(conn, req, 200, body)

    def _parse(self, proto, body):
        """The request body of an inference protocol as a _Job (RequestError if it is bad)."""
        try:
            payload = _loads(body)
        except (ValueError, RecursionError) as e:
            raise RequestError(400, f"the body is not valid JSON: {e}") from None
        del body
        if proto == "predict":
            return self._parse_predict(payload)
        if proto == "tfs":
            return self._parse_tfs(payload)
        return self._parse_v2(payload)

    def _parse_predict(self, payload):
        specs = self.inputs
        if len(specs) == 1:
            if isinstance(payload, dict) and "instances" in payload and "inputs" not in payload:
                rows = payload["instances"]  # TF Serving's row format: always a batch
                if not isinstance(rows, list) or not rows:
                    raise RequestError(400, "instances must be a non-empty list of samples")
                x = _conform(_values(rows, specs[0], "instances"), specs[0], "instances",
                             batch=True)[0]
                return _Job("predict", [x], False)
            data = _inputs_field(payload)
            if isinstance(data, dict) and len(data) == 1 and specs[0].name in data:
                data = data[specs[0].name]
            x, single = _conform(_values(data, specs[0], "inputs"), specs[0], "inputs")
            return _Job("predict", [x], single)
        names = [s.name for s in specs]
        if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), dict):
            got = type(payload).__name__ if not isinstance(payload, dict) else \
                f"keys {sorted(payload)}" if "inputs" not in payload else \
                f"inputs of type {type(payload['inputs']).__name__}"
            raise RequestError(400, "the body must be a JSON object {\"inputs\": {name: [...]}} "
                                    f"naming the model's inputs {names}; got {got}")
        values = _by_name(payload["inputs"], specs, "inputs")
        xs, singles = [], []
        for s, v in zip(specs, values):
            what = f"inputs[{s.name!r}]"
            x, single = _conform(_values(v, s, what), s, what)
            xs.append(x)
            singles.append(single)
        _same_batch(xs, singles, specs, "inputs")
        return _Job("predict", xs, singles[0])

    def _parse_tfs(self, payload):
        specs = self.inputs
        if not isinstance(payload, dict) or ("instances" in payload) == ("inputs" in payload):
            got = type(payload).__name__ if not isinstance(payload, dict) else \
                f"keys {sorted(payload)}"
            raise RequestError(400, 'the body must be a JSON object with "instances" (row '
                                    'format) or "inputs" (columnar format), not both; got ' + got)
        signature = payload.get("signature_name", "serving_default")
        if signature not in ("serving_default", "", None):
            raise RequestError(400, f"unknown signature_name {signature!r}; the model has "
                                    "'serving_default'")
        if "instances" in payload:
            rows = payload["instances"]
            if not isinstance(rows, list) or not rows:
                raise RequestError(400, "instances must be a non-empty list of samples; got " +
                                   (type(rows).__name__ if not isinstance(rows, list) else
                                    "an empty list"))
            if len(rows) > self.max_samples:
                raise RequestError(413, f"the request has {len(rows)} samples; the limit is "
                                        f"{self.max_samples} per request "
                                        "(--max-samples-per-request); split it")
            if len(specs) > 1 or isinstance(rows[0], dict):
                names = [s.name for s in specs]
                for i, row in enumerate(rows):
                    if not isinstance(row, dict):
                        raise RequestError(400, f"instances[{i}] must be an object naming the "
                                                f"model's inputs {names}; got "
                                                f"{type(row).__name__}")
                if len(specs) == 1 and all(len(r) == 1 for r in rows):
                    columns = [[next(iter(r.values())) for r in rows]]
                else:
                    columns = [[] for _ in specs]
                    for i, row in enumerate(rows):
                        for col, v in zip(columns, _by_name(row, specs, f"instances[{i}]")):
                            col.append(v)
            else:
                columns = [rows]
            xs = [_conform(_values(col, s, f"instances[{s.name!r}]" if len(specs) > 1
                                   else "instances"), s,
                           f"instances[{s.name!r}]" if len(specs) > 1 else "instances",
                           batch=True)[0]
                  for s, col in zip(specs, columns)]
            return _Job("tfs_rows", xs)
        data = payload["inputs"]
        if isinstance(data, dict):
            if len(specs) == 1 and len(data) == 1:
                values = list(data.values())
            else:
                values = _by_name(data, specs, "inputs")
        elif len(specs) == 1:
            values = [data]
        else:
            raise RequestError(400, f"inputs must be an object naming the model's inputs "
                                    f"{[s.name for s in specs]}; got {type(data).__name__}")
        xs = []
        for s, v in zip(specs, values):
            what = f"inputs[{s.name!r}]" if len(specs) > 1 else "inputs"
            xs.append(_conform(_values(v, s, what), s, what, batch=True)[0])
        _same_batch(xs, [False] * len(xs), specs, "inputs")
        return _Job("tfs_columns", xs)

    def _parse_v2(self, payload):
        specs = self.inputs
        if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), list) or \
                not payload["inputs"]:
            got = type(payload).__name__ if not isinstance(payload, dict) else \
                f"keys {sorted(payload)}"
            raise RequestError(400, 'the body must be a JSON object {"inputs": [{"name", '
                                    '"shape", "datatype", "data"}, ...]}; got ' + got)
        tensors = payload["inputs"]
        for i, t in enumerate(tensors):
            if not isinstance(t, dict) or not isinstance(t.get("name"), str):
                raise RequestError(400, f"inputs[{i}] must be an object with a string name, "
                                        f"shape, datatype and data; got {_short(t)}")
        given = {}
        if len(specs) == 1 and len(tensors) == 1:
            given[specs[0].name] = tensors[0]
        else:
            for t in tensors:
                if t["name"] in given:
                    raise RequestError(400, f"input {t['name']!r} is given twice")
                given[t["name"]] = t
        values = _by_name(given, specs, "inputs")
        xs = [self._v2_tensor(t, s) for t, s in zip(values, specs)]
        _same_batch(xs, [False] * len(xs), specs, "inputs")
        request_id = payload.get("id")
        if request_id is not None and not isinstance(request_id, str):
            raise RequestError(400, f"id must be a string; got {type(request_id).__name__}")
        wanted = None
        if payload.get("outputs") is not None:
            asked = payload["outputs"]
            known = [s.name for s in self.outputs] + (["labels"] if self.class_names else [])
            if not isinstance(asked, list) or not all(isinstance(o, dict) and "name" in o
                                                      for o in asked):
                raise RequestError(400, 'outputs must be a list of {"name": ...} objects')
            wanted = [o["name"] for o in asked]
            unknown = [w for w in wanted if w not in known]
            if unknown:
                raise RequestError(400, f"unknown outputs {unknown}; the model's outputs are "
                                        f"{known}")
        return _Job("v2", xs, request_id=request_id, wanted=wanted)

    @staticmethod
    def _v2_tensor(t, spec):
        what = f"input {t['name']!r}"
        shape, datatype, data = t.get("shape"), t.get("datatype"), t.get("data")
        if not isinstance(shape, list) or not shape or \
                not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise RequestError(400, f"{what}: shape must be a list of sizes >= 0 with the batch "
                                    f"axis first, e.g. {_v2_fmt(spec.sample_shape)}; "
                                    f"got {_short(shape)}")
        if spec.dtype.kind == "O" or datatype == "BYTES":
            return ModelServer._v2_bytes(t, spec, what, shape, datatype, data)
        if datatype not in _V2_TYPES:
            raise RequestError(400, f"{what}: datatype must be one of {sorted(_V2_TYPES)} (BYTES "
                                    f"for a string input); got {_short(datatype)}")
        want = _v2_type(spec.dtype)
        kind = np.dtype(_V2_TYPES[datatype]).kind
        if (spec.dtype.kind in "iu" and kind not in "iu") or (spec.dtype.kind == "f" and
                                                               kind not in "iuf"):
            raise RequestError(400, f"{what}: datatype {datatype} does not fit the model's input "
                                    f"{spec.name!r}, which takes {want}")
        if not isinstance(data, list):
            raise RequestError(400, f"{what}: data must be a list of numbers (row-major, flat or "
                                    f"nested); got {type(data).__name__}")
        arr = _as_numbers(data, f"{what} data")
        size = int(np.prod(shape))
        if arr.size != size:
            raise RequestError(400, f"{what}: shape {shape} needs {size} values; data has "
                                    f"{arr.size}")
        if kind in "iu" and arr.dtype.kind == "f":
            raise RequestError(400, f"{what}: datatype {datatype} needs integers; data holds "
                                    "floating-point numbers")
        arr = arr.reshape(shape)
        if len(shape) != len(spec.shape):
            raise RequestError(400, f"{what}: shape must be {_v2_fmt(spec.sample_shape)} (batch "
                                    f"axis first); got {shape}")
        return _conform(arr, spec, what, batch=True)[0]

    @staticmethod
    def _v2_bytes(t, spec, what, shape, datatype, data):
        """A BYTES tensor (UTF-8 strings as JSON strings) for a string input."""
        if spec.dtype.kind != "O":
            raise RequestError(400, f"{what}: datatype BYTES is not supported by the model's "
                                    f"input {spec.name!r}, which takes "
                                    f"{_v2_type(spec.dtype)} (BYTES is for string inputs)")
        if datatype != "BYTES":
            raise RequestError(400, f"{what}: datatype {_short(datatype)} does not fit the "
                                    f"model's input {spec.name!r}, which takes BYTES (strings)")
        if not isinstance(data, list):
            raise RequestError(400, f"{what}: data must be a list of strings; got "
                                    f"{type(data).__name__}")
        arr = np.array(data, dtype=object).reshape(-1) if data else np.empty(0, dtype=object)
        if not all(isinstance(v, str) for v in arr.tolist()):
            raise RequestError(400, f"{what}: BYTES data must be a (flat or nested) list of "
                                    "strings")
        size = int(np.prod(shape))
        if arr.size != size:
            raise RequestError(400, f"{what}: shape {shape} needs {size} values; data has "
                                    f"{arr.size}")
        if len(shape) == len(spec.shape) - 1 and spec.sample_shape == (1,):
            shape = shape + [1]  # [n] texts for an input of shape (None, 1)
        if len(shape) != len(spec.shape):
            raise RequestError(400, f"{what}: shape must be {_v2_fmt(spec.sample_shape)} (batch "
                                    f"axis first); got {shape}")
        return _conform(arr.reshape(shape), spec, what, batch=True)[0]

    def _labels(self, ys):
        """The top class name of every sample of the first output (None without
        class_names): argmax of the last axis, or p >= 0.5 for one sigmoid unit."""
        names = self.class_names
        if names is None:
            return None
        y = ys[0]
        if y.shape[-1] == 1:
            top = (y[..., 0] >= 0.5).astype(np.int64)
        else:
            top = np.argmax(y, axis=-1)
        return np.asarray(names, dtype=object)[top].tolist()

    def _encode(self, job, ys):
        """The JSON answer (bytes) for a job's outputs, one array per model output (and the
        top labels when the model has class_names)."""
        outs = self.outputs
        labels = self._labels(ys)
        tail = "" if labels is None else ',"labels":' + _dumps(
            labels[0] if job.single else labels)
        if job.proto == "v2":
            parts = []
            for s, y in zip(outs, ys):
                if job.wanted is not None and s.name not in job.wanted:
                    continue
                parts.append('{"name":' + _dumps(s.name) + ',"datatype":' +
                             _dumps(_v2_type(y.dtype)) + ',"shape":' + _dumps(list(y.shape)) +
                             ',"data":' + _dumps_array(y.reshape(-1)) + "}")
            if labels is not None and (job.wanted is None or "labels" in job.wanted):
                parts.append('{"name":"labels","datatype":"BYTES","shape":' +
                             _dumps([len(labels)]) + ',"data":' + _dumps(labels) + "}")
            head = '{"model_name":' + _dumps(self.model_name) + ',"model_version":"' + \
                MODEL_VERSION + '"'
            if job.request_id is not None:
                head += ',"id":' + _dumps(job.request_id)
            return (head + ',"outputs":[' + ",".join(parts) + "]}").encode("utf-8")
        if job.proto == "tfs_rows":
            if len(outs) == 1:
                return ('{"predictions":' + _dumps_array(ys[0]) + tail + "}").encode("utf-8")
            lists = [y.tolist() for y in ys]
            rows = [{s.name: col[i] for s, col in zip(outs, lists)} for i in range(job.n)]
            return (_dumps({"predictions": rows})[:-1] + tail + "}").encode("utf-8")
        if job.single:
            ys = [y[0] for y in ys]
        if len(outs) == 1:
            return ('{"outputs":' + _dumps_array(ys[0]) + tail + "}").encode("utf-8")
        return ('{"outputs":{' + ",".join(_dumps(s.name) + ":" + _dumps_array(y)
                                          for s, y in zip(outs, ys)) + "}" + tail +
                "}").encode("utf-8")

    # -- answers ------------------------------------------------------------------------------
    def _http_date(self):
        now = int(time.time())
        if self._date[0] != now:
            self._date = (now, email.utils.formatdate(now, usegmt=True))
        return self._date[1]

    def _head_bytes(self, status, body, content_type="application/json", close=False,
                    headers=(), keep_alive_header=False):
        date = self._http_date()
        key = (status, content_type, close, keep_alive_header) if not headers else None
        cached = self._heads.get(key) if key is not None else None
        if cached is not None and cached[0] == date:
            return cached[1] + b"%d\r\n\r\n" % len(body) + body
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Unknown"
        lines = [f"HTTP/1.1 {status} {reason}", f"Server: {self.server_version}",
                 f"Date: {date}", f"Content-Type: {content_type}"]
        lines.extend(f"{k}: {v}" for k, v in headers)
        if close:
            lines.append("Connection: close")
        elif keep_alive_header:
            lines.append("Connection: keep-alive")
        lines.append("Content-Length: ")
        head = "\r\n".join(lines).encode("latin-1")
        if key is not None:  # the head up to the length, remade once a second (the Date)
            self._heads[key] = (date, head)
        return head + b"%d\r\n\r\n" % len(body) + body

    def _respond(self, conn, req, status, body, content_type="application/json", headers=(),
                 close=False):
        """Queue an answer to req on conn; the connection goes on to its next request."""
        if conn.state == _CLOSED:
            return
        self._release_large(conn)
        if not isinstance(body, (bytes, bytearray)):
            body = _dumps(body).encode("utf-8")
        if req is None or not req.keep_alive or self.draining:
            close = True
        now = time.monotonic()
        endpoint = req.endpoint if req is not None else "other"
        self.metrics.observe(endpoint, status, now - conn.received if conn.received else 0.0)
        if self.log_requests:
            line = f"{req.method} {req.target} HTTP/{req.version[0]}.{req.version[1]}" \
                if req is not None else "-"
            sys.stderr.write(f"{conn.addr[0]} - - [{self._http_date()}] \"{line}\" {status} "
                             f"{len(body)}\n")
        data = self._head_bytes(status, body, content_type, close, headers,
                                keep_alive_header=req is not None and req.version < (1, 1))
        conn.pending = None
        if close:
            conn.close_after = True
            conn.state = _DONE  # nothing more is parsed on this connection
        else:
            conn.state = _IDLE
            conn.idle_since = now
            conn.received = 0.0
        self._send(conn, data)
        if conn.state == _IDLE and conn.inbuf:
            self._advance(conn)  # a pipelined request

    def _send_error(self, conn, err, req=None):
        self._respond(conn, req, err.status, {"error": err.message}, headers=err.headers,
                      close=err.close)

    def _refuse(self, conn, err):
        """An error while a request is being received: answer it and close the connection."""
        conn.request = None
        conn.received = time.monotonic()
        self._respond(conn, None, err.status, {"error": err.message}, close=True)


def _short(value, n=60):
    text = repr(value)
    return text if len(text) <= n else text[:n] + "..."


def _raise_file_limit(want):
    """Raise this process's open-file soft limit to want (up to the hard limit) if lower."""
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < want:
            new = want if hard == resource.RLIM_INFINITY else min(want, hard)
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    except (ImportError, ValueError, OSError):
        pass


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


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0; got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0; got {text!r}")
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
                        help="most samples per model call; a larger request is cut into "
                             f"chunks of this size (default {DEFAULT_MAX_BATCH})")
    parser.add_argument("--batch-timeout-ms", type=_nonnegative_float,
                        default=DEFAULT_BATCH_TIMEOUT_MS,
                        help="how long the first queued request waits for others to join its "
                             f"batch (default {DEFAULT_BATCH_TIMEOUT_MS} ms)")
    parser.add_argument("--max-body-bytes", type=_positive_int, default=DEFAULT_MAX_BODY_BYTES,
                        help=f"largest request body accepted (default {DEFAULT_MAX_BODY_BYTES})")
    parser.add_argument("--max-queue", type=_positive_int, default=DEFAULT_MAX_QUEUE,
                        help=f"most requests waiting for the model before answering 503 "
                             f"(default {DEFAULT_MAX_QUEUE})")
    parser.add_argument("--max-samples-per-request", type=_positive_int,
                        default=DEFAULT_MAX_SAMPLES,
                        help="most samples in one request; more are answered 413 (default "
                             f"{DEFAULT_MAX_SAMPLES})")
    parser.add_argument("--max-connections", type=_positive_int, default=DEFAULT_MAX_CONNECTIONS,
                        help="most open client connections; at the limit the longest-idle one "
                             "is closed to make room, and only when all are busy with requests "
                             f"is a new one answered 503 (default {DEFAULT_MAX_CONNECTIONS})")
    parser.add_argument("--request-deadline", type=_positive_float,
                        default=DEFAULT_REQUEST_DEADLINE,
                        help="seconds to receive a whole request, headers and body, from its "
                             f"first byte; later a 408 and the connection is closed (default "
                             f"{DEFAULT_REQUEST_DEADLINE:g})")
    parser.add_argument("--idle-timeout", type=_positive_float, default=DEFAULT_IDLE_TIMEOUT,
                        help="seconds a keep-alive connection may wait without a request "
                             f"(default {DEFAULT_IDLE_TIMEOUT:g})")
    parser.add_argument("--model-name", default=None,
                        help="the name in /v1/models/{name} and /v2/models/{name} (default: "
                             "the model's name)")
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
                             max_samples=args.max_samples_per_request,
                             request_deadline=args.request_deadline,
                             idle_timeout=args.idle_timeout, model_name=args.model_name,
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
    print(f"nanonet serve: {server.model_name} from {args.model} on {server.url} (POST "
          f"/predict, GET /health, GET /metrics, TensorFlow Serving /v1/models/"
          f"{server.model_name}, KServe /v2/models/{server.model_name}; max batch "
          f"{server.batcher.max_batch}, window "
          f"{args.batch_timeout_ms:g} ms, {threads} kernel threads); Ctrl-C stops", flush=True)
    try:
        server.serve_forever()
    finally:
        server.shutdown()
        for s, h in previous.items():
            signal.signal(s, h)
    print(f"nanonet serve: stopped after {server.requests} requests", flush=True)
    return 0
