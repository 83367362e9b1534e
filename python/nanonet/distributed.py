"""Data-parallel training across processes on MPI (Horovod-style; ``pip install "nanonet[mpi]"``).

    import nanonet as nn
    nn.distributed.initialize()      # rank 0 of 1 (a no-op) without mpiexec or without mpi4py
    model.compile(...); model.fit(x, y, batch_size=64, ...)   # the same script on every rank

launched as ``mpiexec -n N python train.py``. Every rank holds the whole data set and the whole
model; ``fit`` (through the hook in models/training.py, the only place that knows about ranks)

- broadcasts the weights, the optimizer state and the training seed from rank 0 at the start, so
  ranks start identical without a seed and shuffle identically every epoch;
- splits each global batch of ``batch_size`` samples into equal, disjoint, contiguous shares
  (the first ``batch % N`` ranks take one more; ``shard``);
- after backward, scales each rank's gradients by (its samples / global batch) and sums them
  with MPI Allreduce over a few flat buckets per dtype (``bucket_bytes``), so the optimizer step
  equals the one-process step on the global batch. An Embedding table's gradient is row-sparse
  (only the rows of this share's ids are nonzero): its nonzero rows are allgathered and summed
  in rank order instead, a few hundred KiB instead of V x E floats (losses are means over samples; a masked
  sequence output's mean over unmasked steps is weighted by samples, not steps, the one case
  that is not exact);
- sums every metric's (total, count) over ranks before computing logs, so History, EarlyStopping
  and ReduceLROnPlateau see the same numbers on every rank;
- shards validation and ``evaluate`` the same way and reduces their metrics. ``predict``,
  ``train_on_batch`` and the other *_on_batch methods are not distributed: each rank computes
  the full result on what it is given.

Dropout: every rank draws from the same epoch Generator, so ranks apply the same dropout masks to
different samples (the equivalence holds with dropout off).

Callbacks with ``rank0_only = True`` (ProgbarLogger, ModelCheckpoint, CSVLogger; set it on your
own) run on rank 0 only. Checkpoints are ordinary ``.nnet`` files: resume on any number of ranks.

Failure: an uncaught exception on any rank calls MPI_Abort (every rank stops). Collectives wait
through a watchdog: a peer that does not answer within ``timeout`` seconds (default 60, env
``NANONET_DIST_TIMEOUT``), or whose death MPI reports, stops this rank with a message naming the
lost rank (by its pid on this host) and MPI_Abort. When a rank dies, mpiexec (hydra) itself
SIGKILLs the others within a second and names the dead process's pid and exit code (even with
``-disable-auto-cleanup``); rank 0 writes the rank -> pid table to stderr at ``initialize`` so
that pid names the rank.

Nothing here imports mpi4py until ``initialize`` runs under a launcher.
"""
from __future__ import annotations

import os
import sys
import time
import traceback
from typing import Any

import numpy as np

__all__ = ["initialize", "is_initialized", "rank", "size", "is_primary", "barrier", "allreduce",
           "broadcast", "broadcast_model", "shard", "print0", "abort", "gather_floats", "last_hook",
           "DataParallel"]

_INSTALL = 'pip install "nanonet[mpi]"'
_LAUNCHER_ENV = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS")

_comm = None       # an mpi4py communicator (a dup of COMM_WORLD) when size > 1
_rank = 0
_size = 1
_peers = None      # [(hostname, pid)] by rank
_timeout = 60.0
_initialized = False
_last_hook = None  # the DataParallel of the latest fit / evaluate (for its timings)
bucket_bytes = 4 << 20  # gradient buckets: a few large Allreduce calls, not one per weight


def _launcher_size():
    for k in _LAUNCHER_ENV:
        v = os.environ.get(k)
        if v and v.isdigit():
            return int(v)
    return 1


def initialize(comm: Any = None, timeout: Any = None) -> Any:
    """Join the MPI job (idempotent). Without a launcher, or with mpi4py absent and no launcher,
    this is rank 0 of 1 and nothing changes. ``comm``: an mpi4py communicator (default
    COMM_WORLD). ``timeout``: seconds a collective waits for its peers before naming the lost
    rank and aborting (default: env NANONET_DIST_TIMEOUT or 60). Returns (rank, size)."""
    global _comm, _rank, _size, _peers, _timeout, _initialized
    if timeout is None:
        timeout = float(os.environ.get("NANONET_DIST_TIMEOUT", "60"))
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"initialize: timeout must be a number of seconds > 0; got {timeout!r}")
    _timeout = float(timeout)
    if _initialized:
        return _rank, _size
    if comm is None and _launcher_size() <= 1:
        _initialized = True
        return _rank, _size
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError(f"nanonet.distributed.initialize: running under an MPI launcher "
                          f"({_launcher_size()} processes) needs mpi4py; install it with "
                          f"{_INSTALL} (got: {e})") from None
    base = MPI.COMM_WORLD if comm is None else comm
    if base.Get_size() > 1:
        _comm = base.Dup()
        _comm.Set_errhandler(MPI.ERRORS_RETURN)
        _rank, _size = _comm.Get_rank(), _comm.Get_size()
        import socket
        _peers = _comm.allgather((socket.gethostname(), os.getpid()))
        _install_excepthook()
        if _rank == 0:  # the launcher names a lost process by pid: this line maps it to a rank
            table = ", ".join(f"{r}: pid {pid} on {h}" for r, (h, pid) in enumerate(_peers))
            sys.stderr.write(f"nanonet.distributed: {_size} ranks ({table})\n")
            sys.stderr.flush()
    _initialized = True
    return _rank, _size


def is_initialized() -> Any:
    return _initialized


def rank() -> Any:
    """This process's rank (0 without MPI)."""
    return _rank


def size() -> Any:
    """The number of ranks (1 without MPI)."""
    return _size


def is_primary() -> Any:
    """True on rank 0: the rank that prints and writes files."""
    return _rank == 0


def print0(*args: Any, **kwargs: Any) -> Any:
    """print on rank 0 only."""
    if _rank == 0:
        print(*args, **kwargs)


# Seconds MPI_Abort gets to end this process before abort() ends it itself (os._exit): an
# MPI_Abort that neither returns nor exits would otherwise hold every rank until the launcher's
# own timeout; a rank that exits without MPI_Finalize makes mpiexec stop the others. (Defensive:
# CI saw 2-rank jobs outlive the "Abort(3) on node 0" line, MPICH 5.0.2 wheel, in some full-suite
# runs, never alone; which process stayed was not caught.)
_ABORT_GRACE_S = 10.0


def abort(message: Any, code: Any = 1) -> Any:
    """Write ``message`` (with this rank) to stderr and stop every rank (MPI_Abort; if that has
    not ended this process within ``_ABORT_GRACE_S`` seconds, os._exit)."""
    sys.stderr.write(f"nanonet.distributed: rank {_rank} of {_size}: {message}\n")
    sys.stderr.flush()
    if _comm is not None:
        import threading
        sys.stdout.flush()
        fallback = threading.Timer(_ABORT_GRACE_S, os._exit, args=(int(code),))
        fallback.daemon = True
        fallback.start()
        _comm.Abort(code)
    raise SystemExit(code)


def _install_excepthook():
    previous = sys.excepthook

    def hook(kind, value, tb):
        if issubclass(kind, KeyboardInterrupt):
            return previous(kind, value, tb)
        text = "".join(traceback.format_exception(kind, value, tb))
        abort(f"uncaught exception; aborting all {_size} ranks\n{text}")

    sys.excepthook = hook


# -- collectives with a watchdog -------------------------------------------------------------
def _lost(what, err=None):
    """A collective failed or timed out: name the peers on this host that are gone."""
    gone = []
    import socket
    host = socket.gethostname()
    for r, (h, pid) in enumerate(_peers or []):
        if r != _rank and h == host:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                gone.append(f"rank {r} (pid {pid} on {h})")
            except PermissionError:
                pass
    reason = f"MPI reported {err}" if err is not None else f"no reply within {_timeout:g} s"
    who = ("lost " + ", ".join(gone)) if gone else \
        "a peer rank did not answer (hung, or lost on another host)"
    abort(f"{who}; {reason} in {what}; stopping", code=3)


def _wait(req, what):
    """Wait for a nonblocking request up to the timeout. MPI progresses a nonblocking
    collective only inside Test, so this spins (as a blocking MPI call would), yielding the core
    after the first millisecond so an oversubscribed node still runs its other ranks."""
    try:
        if req.Test():
            return
        t0 = time.monotonic()
        deadline = t0 + _timeout
        while not req.Test():
            now = time.monotonic()
            if now - t0 > 1e-3:
                os.sched_yield()
                if now > deadline:
                    _lost(what)
    except Exception as e:  # mpi4py.MPI.Exception: a peer died, as MPI noticed
        if type(e).__name__ == "Exception" and type(e).__module__.startswith("mpi4py"):
            _lost(what, e)
        raise


def _check_buffer(buf, fn):
    if not isinstance(buf, np.ndarray):
        raise TypeError(f"{fn}: buf must be a numpy.ndarray; got {type(buf).__name__}")
    if buf.dtype not in (np.float32, np.float64) or not buf.flags.c_contiguous or \
            not buf.flags.writeable:
        raise ValueError(f"{fn}: buf must be a writeable C-contiguous float32 or float64 array; "
                         f"got dtype {buf.dtype}, contiguous={buf.flags.c_contiguous}, "
                         f"writeable={buf.flags.writeable}")


def allreduce(buf: Any, what: Any = "allreduce") -> Any:
    """Sum ``buf`` over every rank, in place (a writeable contiguous float32 / float64 array).
    Returns buf."""
    _check_buffer(buf, "allreduce")
    if _comm is not None:
        from mpi4py import MPI
        _wait(_comm.Iallreduce(MPI.IN_PLACE, buf, op=MPI.SUM), what)
    return buf


def _allreduce_many(bufs, what):
    if _comm is None:
        return
    from mpi4py import MPI
    reqs = [_comm.Iallreduce(MPI.IN_PLACE, b, op=MPI.SUM) for b in bufs]
    for r in reqs:
        _wait(r, what)


def barrier(what: Any = "barrier") -> Any:
    if _comm is not None:
        _wait(_comm.Ibarrier(), what)


def broadcast(arrays: Any, root: Any = 0, what: Any = "broadcast") -> Any:
    """Overwrite each array (in place) with root's copy."""
    if _comm is None:
        return
    for a in arrays:
        if not isinstance(a, np.ndarray) or not a.flags.c_contiguous or not a.flags.writeable:
            raise ValueError(f"broadcast: every array must be a writeable C-contiguous "
                             f"numpy.ndarray; got {type(a).__name__}")
        _wait(_comm.Ibcast(a, root=root), what)


def _broadcast_object(obj, root=0, what="broadcast"):
    if _comm is None:
        return obj
    return _comm.bcast(obj, root=root)


def broadcast_model(model: Any, root: Any = 0) -> Any:
    """Rank 0's weights, optimizer state (slots and iteration count) and training seed on every
    rank. Builds the optimizer's slots first when it has none yet."""
    if _comm is None:
        return
    broadcast([w for w in model.weights], root, "broadcast of the weights")
    opt = getattr(model, "optimizer", None)
    if opt is not None:
        opt.build(model.trainable_weights)
        values = [np.array(v) if v.ndim == 0 else v for v in opt.variables]
        broadcast(values, root, "broadcast of the optimizer state")
        opt.set_variables(values)
    seed = getattr(model, "_train_seed", None)
    if seed is None and _rank == root:
        from . import random as _random
        seed = _random.draw_seed()
    model._train_seed = _broadcast_object(seed, root)


def gather_floats(values: Any) -> Any:
    """Every rank's list of floats, concatenated in rank order (on every rank)."""
    if _comm is None:
        return [float(v) for v in values]
    return [float(v) for part in _comm.allgather([float(v) for v in values]) for v in part]


def last_hook() -> Any:
    """The DataParallel hook of the latest data-parallel fit or evaluate (None on one process):
    its ``timings`` hold the per-step breakdown."""
    return _last_hook


def shard(sl: Any, n_ranks: Any = None, r: Any = None) -> Any:
    """This rank's contiguous share of the global batch ``sl`` (a slice with a stop): sizes
    differ by at most one, the first ``len % n_ranks`` ranks take the larger."""
    n_ranks = _size if n_ranks is None else n_ranks
    r = _rank if r is None else r
    n = sl.stop - sl.start
    q, rem = divmod(n, n_ranks)
    start = sl.start + r * q + min(r, rem)
    return slice(start, start + q + (1 if r < rem else 0))


class DataParallel:
    """The per-fit state of the training-loop hook: gradient buckets, metric reduction and a
    per-step time breakdown (``timings``: seconds summed over steps of compute, pack, wait,
    allreduce; ``wait`` is only separated from ``allreduce`` with ``profile=True``, which adds a
    barrier before each reduction)."""

    def __init__(self, model: Any, profile: Any = None) -> None:
        self.model = model
        self.profile = bool(int(os.environ.get("NANONET_DIST_PROFILE", "0"))) \
            if profile is None else bool(profile)
        self._layout = None
        self.n_global = self.n_local = 0
        self.timings = {"compute": 0.0, "pack": 0.0, "wait": 0.0, "allreduce": 0.0, "steps": 0,
                        "dense_tables": 0}
        self._t_step = None
        global _last_hook
        _last_hook = self

    @classmethod
    def start(cls, model: Any, broadcast: Any = True) -> Any:
        """None on one process; else (for fit) broadcast the model from rank 0 and return the
        hook."""
        if _size == 1:
            return None
        if broadcast:
            broadcast_model(model)
        return cls(model)

    def shard(self, sl: Any, xs: Any = None) -> Any:
        """This rank's share of the global batch sl (remembered for the gradient scale; the
        inputs xs, when given, tell the Embedding tables' rows)."""
        self.n_global = sl.stop - sl.start
        self._t_step = time.perf_counter()
        mine = shard(sl)
        self.n_local = mine.stop - mine.start
        self._xs, self._mine = xs, mine
        return mine

    # -- gradients -----------------------------------------------------------------------------
    def _build_layout(self, params):
        """Per dtype, one flat buffer holding every dense parameter's gradient then a presence
        count per parameter (Embedding tables: presence only); buffers are cut into buckets of
        about bucket_bytes."""
        from .layers.embedding import Embedding
        layers = getattr(self.model, "layers", [])
        tables = {id(layer.embeddings) for layer in layers
                  if isinstance(layer, Embedding) and layer.embeddings is not None}
        self._sparse = {i: None for i, p in enumerate(params) if id(p) in tables and p.ndim == 2}
        # Which model input feeds each table (its rows are that input's ids); None: scan the
        # gradient for nonzero rows instead.
        self._table_input = {}
        inputs = [id(t) for t in getattr(self.model, "inputs", [])]
        by_param = {id(p): i for i, p in enumerate(params)}
        for node in getattr(self.model, "_nodes", []):
            if isinstance(node.layer, Embedding) and id(node.layer.embeddings) in by_param:
                i = by_param[id(node.layer.embeddings)]
                k = inputs.index(id(node.inputs[0])) if len(node.inputs) == 1 and \
                    id(node.inputs[0]) in inputs else None
                self._table_input[i] = k if self._table_input.get(i, k) == k else None
        for i in self._sparse:
            self._table_input.setdefault(i, None)
        groups = {}
        for i, p in enumerate(params):
            groups.setdefault(np.dtype(p.dtype), []).append(i)
        layout = []
        for dt, idx in groups.items():
            offsets, off = [], 0
            for i in idx:
                offsets.append(off)
                off += 0 if i in self._sparse else params[i].size
            buf = np.zeros(off + len(idx), dtype=dt)
            step = max(1, bucket_bytes // dt.itemsize)
            buckets = [buf[s:s + step] for s in range(0, buf.size, step)]
            layout.append((dt, idx, offsets, buf, buckets))
        self._layout = (len(params), layout)

    def reduce_gradients(self, wgrads: Any, params: Any) -> Any:
        """{id(weight): this rank's mean gradient} -> list aligned with params of the gradient of
        the global batch's mean loss (None where no rank had one)."""
        t0 = time.perf_counter()
        if self._t_step is not None:
            self.timings["compute"] += t0 - self._t_step
        if self._layout is None or self._layout[0] != len(params):
            self._build_layout(params)
        scale = self.n_local / self.n_global
        out = [None] * len(params)
        for dt, idx, offsets, buf, _ in self._layout[1]:
            n_val = buf.size - len(idx)
            flags = buf[n_val:]
            for j, (i, off) in enumerate(zip(idx, offsets)):
                p = params[i]
                dst = buf[off:off + p.size]
                g = wgrads.get(id(p))
                flags[j] = 0 if g is None else 1
                if i in self._sparse:
                    self._sparse[i] = g
                elif g is None:
                    dst[...] = 0
                else:
                    np.multiply(g.reshape(-1), dt.type(scale), out=dst)
        t1 = time.perf_counter()
        self.timings["pack"] += t1 - t0
        if self.profile:
            barrier("gradient barrier (profile)")
        t2 = time.perf_counter()
        self.timings["wait"] += t2 - t1
        if _comm is not None:
            from mpi4py import MPI
            reqs = [_comm.Iallreduce(MPI.IN_PLACE, b, op=MPI.SUM)
                    for entry in self._layout[1] for b in entry[4]]
        for i, g in self._sparse.items():
            out[i] = self._reduce_rows(i, params[i], g, scale)
        if _comm is not None:
            for r in reqs:
                _wait(r, "the gradient allreduce")
        t3 = time.perf_counter()
        self.timings["allreduce"] += t3 - t2
        for dt, idx, offsets, buf, _ in self._layout[1]:
            flags = buf[buf.size - len(idx):]
            for j, (i, off) in enumerate(zip(idx, offsets)):
                if flags[j] > 0 and i not in self._sparse:
                    p = params[i]
                    out[i] = buf[off:off + p.size].reshape(p.shape)
                elif flags[j] == 0:
                    out[i] = None
        self.timings["pack"] += time.perf_counter() - t3
        self.timings["steps"] += 1
        return out

    def _reduce_rows(self, i, p, g, scale):
        """The summed gradient of an Embedding table from every rank's nonzero rows
        (Allgatherv of row ids and rows; summed in rank order, the same on every rank). The
        dense result lives in a buffer kept per table, re-zeroed only where it was set."""
        t0 = time.perf_counter()
        k = self._table_input[i]
        if g is None:
            rows = np.zeros(0, dtype=np.int64)
            vals = np.zeros((0, p.shape[1]), dtype=p.dtype)
        else:
            if k is not None and self._xs is not None:
                rows = np.unique(self._xs[k][self._mine]).astype(np.int64, copy=False)
            else:
                rows = np.flatnonzero(g.any(axis=1)).astype(np.int64)
            vals = np.multiply(g[rows], p.dtype.type(scale))
        self.timings["pack"] += time.perf_counter() - t0
        self.timings["allreduce"] -= time.perf_counter() - t0
        counts = np.zeros(_size, dtype=np.int64)
        _wait(_comm.Iallgather(np.array([rows.size], dtype=np.int64), counts),
              "the embedding row-count allgather")
        state = getattr(self, "_tables", {}).get(i)
        if state is None:
            state = [np.zeros(p.shape, dtype=p.dtype), np.zeros(0, dtype=np.int64)]
            self.__dict__.setdefault("_tables", {})[i] = state
        dense, last = state
        if int(counts.sum()) * (p.shape[1] * p.itemsize + 8) > 2 * p.nbytes:
            # Gathering every rank's rows would move more than a ring allreduce of the whole
            # table (about 2x its bytes): reduce it dense (the same decision on every rank).
            if g is None:
                dense[...] = 0
            else:
                np.multiply(g, p.dtype.type(scale), out=dense)
            state[1] = np.arange(p.shape[0])
            self.timings["dense_tables"] += 1
            from mpi4py import MPI as _MPI
            _wait(_comm.Iallreduce(_MPI.IN_PLACE, dense, op=_MPI.SUM), "the embedding allreduce")
            return dense
        all_rows = np.empty(int(counts.sum()), dtype=np.int64)
        all_vals = np.empty((all_rows.size, p.shape[1]), dtype=p.dtype)
        r1 = _comm.Iallgatherv(rows, (all_rows, counts))
        r2 = _comm.Iallgatherv(vals, (all_vals, counts * p.shape[1]))
        _wait(r1, "the embedding row allgather")
        _wait(r2, "the embedding row allgather")
        dense[last] = 0
        start = 0
        for c in counts:  # rank order: rows are unique within a rank
            dense[all_rows[start:start + c]] += all_vals[start:start + c]
            start += c
        state[1] = all_rows
        return dense

    # -- metrics -------------------------------------------------------------------------------
    def reduce_logs(self, metric_set: Any, names: Any) -> Any:
        """The logs of metric_set summed over ranks: every metric is a weighted mean
        (total / count), so sum both and divide. metric_set may be None on a rank that has seen
        no samples yet."""
        state = np.zeros(2 * len(names))
        if metric_set is not None:
            for k, m in enumerate(metric_set):
                state[2 * k] = m._total
                state[2 * k + 1] = m._count
        allreduce(state, "the metric allreduce")
        return {name: float(state[2 * k] / state[2 * k + 1]) if state[2 * k + 1] else 0.0
                for k, name in enumerate(names)}

    def summary(self) -> None:
        """One line: mean milliseconds per step of each phase."""
        n = max(1, self.timings["steps"])
        parts = [f"{k} {1e3 * self.timings[k] / n:.2f} ms" for k in
                 ("compute", "pack", "wait", "allreduce")]
        return f"rank {_rank}/{_size}: {n} steps, per step " + ", ".join(parts)
