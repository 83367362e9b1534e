"""Data in: inputs, targets and sample weights as a model takes them -> lists of arrays.

A model with one input takes an array; with several, a list in ``model.inputs`` order or a dict
by input name (``model.input_names``). Targets likewise by output (``model.output_names``), and
sample weights as one array for every output or a list / dict per output. Everything is checked
here, once, with errors naming the argument, the expected and the received value: numeric data,
a batch axis, one sample count, shapes against the model's inputs and outputs, class ids in
range for sparse cross-entropy. Batches are then plain slices of these arrays (``batch_slices``).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import losses as _losses
from ..layers.node import fmt_shape

__all__ = ["as_array", "as_strings", "standardize_inputs", "standardize_targets",
           "standardize_weights", "batch_slices", "take", "gather", "split_validation"]


def as_array(a: Any, name: str | None, fn: Any) -> Any:
    if a is None:
        raise ValueError(f"{fn}: {name} is required; got None")
    arr = a if isinstance(a, np.ndarray) else np.asarray(a)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{fn}: {name} must be a numeric array; got dtype {arr.dtype}")
    if arr.ndim == 0:
        raise ValueError(f"{fn}: {name} must have a batch axis; got a scalar")
    return arr


def as_strings(a: Any, name: str | None, fn: Any) -> Any:
    """Text data for a string input: str, bytes (UTF-8) or nested lists / arrays of them, as an
    object array of str with a batch axis (never cast to numbers)."""
    if a is None:
        raise ValueError(f"{fn}: {name} is required; got None")
    if isinstance(a, (str, bytes)):
        raise ValueError(f"{fn}: {name} must be a batch of strings (a list or array with a "
                         f"batch axis); got a single {type(a).__name__} (wrap it in a list)")
    arr = a if isinstance(a, np.ndarray) else np.array(a, dtype=object)
    if arr.dtype.kind == "U":
        arr = arr.astype(object)
    elif arr.dtype.kind == "S":
        arr = np.vectorize(lambda b: b.decode("utf-8"), otypes=[object])(arr)
    elif arr.dtype.kind == "O":
        flat = arr.reshape(-1)
        bad = next((v for v in flat.tolist() if not isinstance(v, str)), None)
        if bad is not None:
            if not all(isinstance(v, (str, bytes)) for v in flat.tolist()):
                raise ValueError(f"{fn}: {name} must hold strings for the model's string input; "
                                 f"got an element of type {type(bad).__name__}")
            arr = np.array([v.decode("utf-8") if isinstance(v, bytes) else v
                            for v in flat.tolist()], dtype=object).reshape(arr.shape)
    else:
        raise ValueError(f"{fn}: {name} must hold strings for the model's string input; got "
                         f"dtype {arr.dtype}")
    if arr.ndim == 0:
        raise ValueError(f"{fn}: {name} must have a batch axis; got a scalar")
    return arr


def _by_name(data, names, name, fn, what):
    """data (one array, list or dict) -> list aligned with names."""
    if isinstance(data, dict):
        unknown = [k for k in data if k not in names]
        if unknown:
            raise ValueError(f"{fn}: {name} has key(s) {unknown} that name no model {what}; the "
                             f"model's {what}s are {names}")
        missing = [k for k in names if k not in data]
        if missing:
            raise ValueError(f"{fn}: {name} is missing the model {what}(s) {missing}")
        return [data[k] for k in names]
    if len(names) == 1:
        if isinstance(data, (list, tuple)) and len(data) == 1 and \
                isinstance(data[0], np.ndarray):
            return [data[0]]
        return [data]
    if isinstance(data, (list, tuple)) and len(data) == len(names) and \
            all(isinstance(v, np.ndarray) or isinstance(v, (list, tuple)) for v in data):
        return list(data)
    raise ValueError(f"{fn}: the model has {len(names)} {what}s {names}; pass {name} as a list "
                     f"of {len(names)} arrays or a dict by name; got {type(data).__name__}")


def _check_count(arrays, names, fn, n=None, what="x"):
    for a, nm in zip(arrays, names):
        if n is None:
            n = a.shape[0]
        elif a.shape[0] != n:
            raise ValueError(f"{fn}: every array must hold the same number of samples; {what} "
                             f"{nm!r} has {a.shape[0]}, expected {n}")
    return n


def standardize_inputs(model: Any, x: Any, fn: Any, name: str | None = "x") -> Any:
    """x -> list of arrays aligned with model.inputs, cast and shape-checked."""
    specs = model.inputs
    if len(specs) == 1 and type(x) is np.ndarray and x.ndim >= 1 and x.shape[0] and \
            x.dtype.kind in "biuf" and (not specs[0].dtype_explicit or x.dtype == specs[0].dtype):
        want = specs[0].shape
        if x.ndim == len(want) and all(w is None or w == d for w, d in zip(want[1:], x.shape[1:])):
            return [x]  # the common case, checked in one pass
    return _standardize_inputs(model, x, fn, name, specs)


def _standardize_inputs(model, x, fn, name, specs):
    arrays = [(as_strings if spec.dtype == "string" else as_array)(
                  a, name if len(specs) == 1 else f"{name}[{nm!r}]", fn)
              for a, nm, spec in zip(_by_name(x, model.input_names, name, fn, "input"),
                                     model.input_names, specs)]
    n = _check_count(arrays, model.input_names, fn, what=name)
    if n == 0:
        raise ValueError(f"{fn}: {name} is empty (0 samples)")
    out = []
    for a, spec, nm in zip(arrays, specs, model.input_names):
        want = spec.shape
        if spec.dtype == "string":
            if a.ndim == len(want) - 1 and want[-1] in (1, None):
                a = a.reshape(a.shape + (1,))  # ["text", ...] for Input(shape=(1,))
            elif a.ndim == len(want) + 1 and a.shape[-1] == 1:
                a = a.reshape(a.shape[:-1])     # [["text"], ...] for Input(shape=())
        elif spec.dtype_explicit and a.dtype != spec.dtype:
            a = a.astype(spec.dtype)
        if a.ndim != len(want) or any(w is not None and w != d
                                      for w, d in zip(want[1:], a.shape[1:])):
            label = name if len(specs) == 1 else f"{name}[{nm!r}]"
            raise ValueError(f"{fn}: {label} must have shape "
                             f"{fmt_shape(('B',) + tuple(want[1:]))} to match the model input "
                             f"{fmt_shape(want)}; got {a.shape}")
        out.append(a)
    return out


def _check_target(y, out, loss, fn, name, float_dtype):
    """One output's targets checked against its shape ``out`` and loss."""
    classes = out[-1]
    if isinstance(loss, _losses.SparseCategoricalCrossentropy):
        lead = tuple(out[1:-1])
        if y.shape[1:] not in (lead, lead + (1,)):
            raise ValueError(f"{fn}: {name} must hold class ids of shape "
                             f"{fmt_shape(('B',) + lead)} for loss {loss.name!r} and model "
                             f"output {fmt_shape(out)}; got {y.shape}")
        if y.dtype.kind == "f" and not np.all(y == np.round(y)):
            raise ValueError(f"{fn}: {name} must hold whole-number class ids for loss "
                             f"{loss.name!r}; got non-integer values")
        if y.size and classes is not None:
            lo, hi = int(y.min()), int(y.max())
            if lo < 0 or hi >= classes:
                raise ValueError(f"{fn}: {name} class ids must be in [0, {classes}) for the "
                                 f"model output {fmt_shape(out)}; got values in [{lo}, {hi}]")
        return y
    ok = y.ndim == len(out) and all(w is None or w == d for w, d in zip(out[1:], y.shape[1:]))
    if not ok and y.ndim == len(out) - 1 and classes == 1 and \
            all(w is None or w == d for w, d in zip(out[1:-1], y.shape[1:])):
        y = y.reshape(y.shape + (1,))
        ok = True
    if not ok:
        hint = ""
        if isinstance(loss, _losses.CategoricalCrossentropy) and y.ndim == len(out) - 1:
            hint = (" (for integer class ids use loss='sparse_categorical_crossentropy' or "
                    "one-hot encode them with nanonet.utils.to_categorical)")
        what = f" for loss {loss.name!r}" if loss is not None else ""
        raise ValueError(f"{fn}: {name} must have shape {fmt_shape(('B',) + tuple(out[1:]))} to "
                         f"match the model output {fmt_shape(out)}{what}; got {y.shape}{hint}")
    return y if y.dtype == float_dtype else y.astype(float_dtype)


def standardize_targets(model: Any, y: Any, n: int, fn: Any, name: str | None = "y") -> Any:
    """y -> list aligned with model.outputs (None for an output without a loss)."""
    names = model.output_names
    losses = model.compiled_loss.losses
    if isinstance(y, dict) and len(names) > 1:
        unknown = [k for k in y if k not in names]
        if unknown:
            raise ValueError(f"{fn}: {name} has key(s) {unknown} that name no model output; the "
                             f"model's outputs are {names}")
        raw = [y.get(k) for k in names]
    else:
        raw = _by_name(y, names, name, fn, "output")
    out = []
    for k, (a, nm, loss) in enumerate(zip(raw, names, losses)):
        label = name if len(names) == 1 else f"{name}[{nm!r}]"
        if a is None:
            if loss is not None:
                raise ValueError(f"{fn}: {label} is required for output {nm!r} (it has loss "
                                 f"{loss.name!r}); got None")
            out.append(None)
            continue
        arr = as_array(a, label, fn)
        if arr.shape[0] != n:
            raise ValueError(f"{fn}: x and {label} must have the same number of samples; got "
                             f"{n} in x and {arr.shape[0]} in {label}")
        out.append(_check_target(arr, model.outputs[k].shape, loss, fn, label,
                                 model._output_float_dtype(k)))
    return out


def standardize_weights(model: Any, sample_weight: Any, ys: Any, n: int, fn: Any,
                        class_weight: Any = None) -> Any:
    """sample_weight (one array for all outputs, or a list / dict per output) and class_weight
    (single-output models) -> list aligned with the outputs (None entries for none)."""
    k = len(model.output_names)
    if class_weight is not None and sample_weight is not None:
        raise ValueError(f"{fn}: pass class_weight or sample_weight, not both")
    if class_weight is not None:
        if k != 1:
            raise ValueError(f"{fn}: class_weight is only supported for models with one output; "
                             f"this one has {k} ({model.output_names}); use sample_weight")
        return [_class_weights(class_weight, ys[0], n, fn)]
    if sample_weight is None:
        return [None] * k
    if isinstance(sample_weight, dict) or (isinstance(sample_weight, (list, tuple)) and k > 1
                                           and len(sample_weight) == k and not
                                           np.isscalar(sample_weight[0])):
        raw = _by_name(sample_weight, model.output_names, "sample_weight", fn, "output") \
            if isinstance(sample_weight, dict) else list(sample_weight)
    else:
        raw = [sample_weight] * k
    out = []
    for w in raw:
        if w is None:
            out.append(None)
            continue
        w = as_array(w, "sample_weight", fn)
        if w.shape[0] != n:
            raise ValueError(f"{fn}: sample_weight must have one entry per sample ({n}); got "
                             f"shape {w.shape}")
        out.append(w.astype(np.float64, copy=False))
    return out


def _class_weights(class_weight, y, n, fn):
    if not isinstance(class_weight, dict):
        raise ValueError(f"{fn}: class_weight must be a dict {{class id: weight}}; got "
                         f"{type(class_weight).__name__}")
    if y.ndim > 2:
        raise ValueError(f"{fn}: class_weight needs targets of shape (B,) or (B, C); got "
                         f"{y.shape}")
    if y.ndim == 2 and y.shape[1] > 1:
        labels = np.argmax(y, axis=1)
    else:
        labels = np.round(y.reshape(n)).astype(np.int64)
    try:
        table = {int(k): float(v) for k, v in class_weight.items()}
    except (TypeError, ValueError):
        raise ValueError(f"{fn}: class_weight must map int class ids to numbers; got "
                         f"{class_weight!r}") from None
    lut = np.ones(max([int(labels.max()) + 1] + [k + 1 for k in table]))
    for k, v in table.items():
        if k >= 0:
            lut[k] = v
    return lut[labels]


def take(arrays: Any, index: int | None) -> Any:
    """Each array (None kept) indexed by ``index`` (a slice or an index array)."""
    return [None if a is None else a[index] for a in arrays]


def gather(arrays: Any, index: int | None) -> Any:
    """Each array's rows at the int array ``index`` (None kept): np.take, which copies the
    rows of a batch faster than fancy indexing."""
    return [None if a is None else np.take(a, index, axis=0) for a in arrays]


def batch_slices(n: int, batch_size: int | None, max_steps: Any = None) -> Any:
    """slice objects covering [0, n) in batch_size pieces (at most max_steps of them)."""
    steps = math.ceil(n / batch_size)
    if max_steps is not None:
        steps = min(steps, max_steps)
    return [slice(i * batch_size, min(n, (i + 1) * batch_size)) for i in range(steps)]


def split_validation(n: int, validation_split: float, fn: Any) -> Any:
    """The sample index where the last ``validation_split`` fraction starts (Keras: before
    shuffling)."""
    split = int(math.floor(n * (1.0 - validation_split)))
    if split == 0:
        raise ValueError(f"{fn}: validation_split={validation_split} of {n} samples leaves "
                         f"{split} for training and {n - split} for validation; both must be "
                         ">= 1")
    return split


# -- batches from Python code: generators, iterables, PyDataset ---------------------------------
# Arrays stay the fast path (sliced above); anything else that yields batches goes through a
# BatchSource, and each batch is then checked like arrays are.
__all__ += ["is_batch_source", "BatchSource", "unpack_batch"]


def is_batch_source(data: Any) -> Any:
    """Whether data is batches (a PyDataset, a generator, an iterator or another iterable that
    is not an array, list, tuple or dict)."""
    from ..utils import PyDataset
    if isinstance(data, PyDataset):
        return True
    if data is None or isinstance(data, (np.ndarray, list, tuple, dict, str, bytes)) or \
            hasattr(data, "__array__") or hasattr(data, "__array_interface__"):
        return False
    return hasattr(data, "__next__") or hasattr(data, "__iter__")


def unpack_batch(batch: int, fn: Any, name: str | None = "x") -> Any:
    """A batch -> (x, y, sample_weight): a tuple or list of 1-3 items, or x alone (Keras)."""
    if isinstance(batch, list):
        batch = tuple(batch)
    if not isinstance(batch, tuple):
        return batch, None, None
    if not 1 <= len(batch) <= 3:
        raise ValueError(f"{fn}: every batch of {name} must be x, (x,), (x, y) or "
                         f"(x, y, sample_weight); got a tuple of {len(batch)} items")
    return batch + (None,) * (3 - len(batch))


class BatchSource:
    """The batches of a generator, iterator, iterable or PyDataset, one epoch at a time.

    steps: the batches per epoch (None: until the data runs out). A PyDataset gives
    ``len(dataset)`` batches per epoch (at most ``steps``), in an order shuffled by ``epoch(rng)``
    when shuffle is set; with ``workers > 1`` they are prepared ahead in a thread (or process)
    pool. An iterator (a generator) is consumed across epochs: each epoch takes ``steps``
    batches from where the last one stopped (all that is left when steps is None). Another
    iterable is iterated afresh every epoch.
    """

    def __init__(self, data: Any, steps: int | None, fn: Any, name: str | None = "x",
                 shuffle: bool = False) -> None:
        from ..utils import PyDataset
        self.data = data
        self.fn = fn
        self.name = name
        self.shuffle = bool(shuffle)
        self.dataset = isinstance(data, PyDataset)
        self._pool = None
        if self.dataset:
            n = len(data)
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ValueError(f"{fn}: len({name}) must be a positive number of batches; "
                                 f"got {n!r}")
            self.steps = n if steps is None else min(steps, n)
        else:
            self.steps = steps
        self._iterator = data if hasattr(data, "__next__") else None
        self.exhausted = False  # an iterator ran out before an epoch had all its steps

    def epoch(self, rng: Any = None) -> Any:
        """The raw batches of one epoch (shuffled with rng for a PyDataset when asked)."""
        if self.dataset:
            return self._dataset_epoch(rng)
        return self._iterator_epoch()

    def _iterator_epoch(self):
        it = self._iterator if self._iterator is not None else iter(self.data)
        k = 0
        while self.steps is None or k < self.steps:
            try:
                batch = next(it)
            except StopIteration:
                if self._iterator is not None and (self.steps is not None or k == 0):
                    self.exhausted = True
                return
            yield batch
            k += 1

    def _dataset_epoch(self, rng):
        ds = self.data
        ds.on_epoch_begin()
        order = np.arange(len(ds))
        if self.shuffle and rng is not None:
            order = rng.permutation(len(ds))
        order = [int(i) for i in order[:self.steps]]
        if ds.workers <= 1:
            for i in order:
                yield ds[i]
        else:
            yield from self._prefetched(order)
        ds.on_epoch_end()

    def _prefetched(self, order):
        import collections
        import concurrent.futures as cf
        ds = self.data
        if ds.use_multiprocessing:
            # A fresh pool every epoch: the workers get the dataset as on_epoch_end left it.
            self.close()
            self._pool = cf.ProcessPoolExecutor(max_workers=ds.workers,
                                                initializer=_set_worker_dataset,
                                                initargs=(ds,))
            get = _worker_item
        else:
            if self._pool is None:
                self._pool = cf.ThreadPoolExecutor(max_workers=ds.workers)
            get = ds.__getitem__
        ahead = max(ds.max_queue_size, ds.workers)
        pending = collections.deque()
        todo = iter(order)
        try:
            for i in todo:
                pending.append(self._pool.submit(get, i))
                if len(pending) >= ahead:
                    break
            while pending:
                batch = pending.popleft().result()
                if ds.use_multiprocessing:
                    batch = _canonical_dtypes(batch)
                nxt = next(todo, None)
                if nxt is not None:
                    pending.append(self._pool.submit(get, nxt))
                yield batch
        finally:
            for f in pending:
                f.cancel()

    def close(self) -> Any:
        """Shut the worker pool down (fit, evaluate and predict call it when they end)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


_WORKER_DATASET = None


def _set_worker_dataset(dataset):
    """A worker process's initializer: keep its copy of the PyDataset."""
    global _WORKER_DATASET
    _WORKER_DATASET = dataset


def _worker_item(index):
    return _WORKER_DATASET[index]


def _canonical_dtypes(data):
    """Arrays unpickled from a worker process carry dtype objects equal to, but not the same
    as, NumPy's own (float32 ...), which the compiled kernels check by identity: view them with
    NumPy's. Recurses into tuples, lists and dicts."""
    if isinstance(data, np.ndarray):
        if data.dtype.isnative and data.dtype.kind in "biuf" and \
                data.dtype is not np.dtype(data.dtype.type):
            return data.view(data.dtype.type)
        return data
    if isinstance(data, (tuple, list)):
        return type(data)(_canonical_dtypes(v) for v in data)
    if isinstance(data, dict):
        return {k: _canonical_dtypes(v) for k, v in data.items()}
    return data
