"""Preprocessing layers with Keras 3's names, arguments and defaults: ``TextVectorization``,
``StringLookup``, ``IntegerLookup``.

They turn raw data (strings, integer categories) into what the next layers take (token ids,
multi-hot or count vectors) inside the model, so a saved model answers ``predict(["some text"])``
and ``python -m nanonet serve`` accepts strings. A model starts with
``nanonet.Input(shape=(1,), dtype="string")`` (Keras's documented form; ``shape=()`` works too),
or a Sequential starts with the layer itself and builds from the first strings it sees.

Vocabulary layout (Keras's), for ``output_mode="int"``:

    [mask token (when mask_token is set)] + [oov token] * num_oov_indices + learned tokens

so StringLookup(mask_token=None) maps OOV to 0 and the first learned token to 1, and
TextVectorization (whose lookup has mask_token="") maps padding to 0, OOV ("[UNK]") to 1 and its
tokens from 2. In the other output modes the mask token is not part of the vocabulary and masked
inputs are dropped. ``adapt`` orders tokens by count, most frequent first, ties by the token in
descending order (Keras's ``lexsort`` rule), keeping ``max_tokens`` entries in all.

The layers have no weights and nothing to train: ``backprop`` returns no input gradient, so the
gradient stops at them (their outputs are integer ids or constants of the data). The vocabulary
(and the idf weights of ``"tf_idf"``) is part of ``get_config()``: JSON data in the model file,
reloaded exactly.

Differences from Keras: with ``num_oov_indices > 1`` an OOV token's bucket is
``crc32(token) % num_oov_indices`` (Keras uses farmhash, so the buckets differ); ``sparse`` and
``ragged`` outputs are not supported; a TextVectorization without ``output_sequence_length``
pads each batch to its longest text (at least one step, where Keras may give zero).
"""
from __future__ import annotations

import collections
import math
import numbers
import zlib
from typing import Any

import numpy as np

from .base import Layer
from .node import is_symbolic

__all__ = ["StringLookup", "IntegerLookup", "TextVectorization", "STRING"]

STRING = "string"  # the dtype name of string tensors (nanonet.Input(..., dtype="string"))
_LOOKUP_MODES = ("int", "one_hot", "multi_hot", "count", "tf_idf")
_TEXT_MODES = ("int", "multi_hot", "count", "tf_idf")
_STANDARDIZE = ("lower_and_strip_punctuation", "lower", "strip_punctuation")
_SPLIT = ("whitespace", "character")
# Keras's punctuation set for TextVectorization (deleted, not replaced by a space)
_PUNCTUATION = str.maketrans("", "", "!\"#$%&()*+,-./:;<=>?@[\\]^_`{|}~'")


def _check_max_tokens(max_tokens, cls, minimum):
    if max_tokens is None:
        return None
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, numbers.Integral):
        raise TypeError(f"{cls}: max_tokens must be an int or None; got {max_tokens!r}")
    if max_tokens < minimum:
        raise ValueError(f"{cls}: max_tokens must be >= {minimum} (the special tokens count "
                         f"towards it); got {max_tokens}")
    return int(max_tokens)


def _check_bool(value, name, cls):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{cls}: {name} must be True or False; got {value!r}")
    return bool(value)


def _strings(x, where):
    """x (str, bytes, nested lists or an array of them) as an object array of str."""
    arr = np.asarray(x, dtype=object) if not isinstance(x, np.ndarray) else x
    if arr.dtype.kind == "U":
        return arr.astype(object)
    if arr.dtype.kind == "S":
        return np.vectorize(lambda b: b.decode("utf-8"), otypes=[object])(arr)
    if arr.dtype.kind != "O":
        raise ValueError(f"{where} expects strings; got an array of dtype {arr.dtype}")
    flat = arr.reshape(-1)
    out = np.empty(flat.shape, dtype=object)
    for i, v in enumerate(flat.tolist()):
        if isinstance(v, bytes):
            v = v.decode("utf-8")
        elif not isinstance(v, str):
            raise ValueError(f"{where} expects strings; element {i} is "
                             f"{type(v).__name__} {v!r:.40}")
        out[i] = v
    return out.reshape(arr.shape)


class _DataLayer(Layer):
    """A layer that takes one array of data: a list given to ``layer(x)`` is that array (one
    batch of strings or ints), not a list of several inputs."""

    _list_dtype = object

    def __call__(self, *args, **kwargs):
        if args and isinstance(args[0], (list, tuple)) and not is_symbolic(args[0]):
            args = (np.array(args[0], dtype=self._list_dtype),) + args[1:]
        return super().__call__(*args, **kwargs)


class _IndexLookup(_DataLayer):
    """What StringLookup and IntegerLookup share: the vocabulary, adapt, the lookup and the
    output modes. Subclasses say how a token is checked and stored (``_token``)."""

    def __init__(self, max_tokens=None, num_oov_indices=1, mask_token=None, oov_token=None,
                 vocabulary=None, idf_weights=None, invert=False, output_mode="int",
                 pad_to_max_tokens=False, sparse=False, **kwargs):
        cls = type(self).__name__
        kwargs.pop("vocabulary_size", None)  # written by get_config for reading; derived here
        super().__init__(**kwargs)
        if isinstance(num_oov_indices, bool) or not isinstance(num_oov_indices,
                                                               numbers.Integral) \
                or num_oov_indices < 0:
            raise ValueError(f"{cls}: num_oov_indices must be an int >= 0; got "
                             f"{num_oov_indices!r}")
        if output_mode == "tf-idf":
            output_mode = "tf_idf"
        if output_mode not in _LOOKUP_MODES:
            raise ValueError(f"{cls}: output_mode must be one of {_LOOKUP_MODES}; got "
                             f"{output_mode!r}")
        self.invert = _check_bool(invert, "invert", cls)
        if self.invert and output_mode != "int":
            raise ValueError(f"{cls}: invert=True needs output_mode='int'; got {output_mode!r}")
        if _check_bool(sparse, "sparse", cls):
            raise ValueError(f"{cls}: sparse=True is not supported (nanonet has no sparse "
                             "tensors); use sparse=False")
        if idf_weights is not None and output_mode != "tf_idf":
            raise ValueError(f"{cls}: idf_weights are only used with output_mode='tf_idf'; got "
                             f"output_mode={output_mode!r}")
        self.num_oov_indices = int(num_oov_indices)
        self.mask_token = None if mask_token is None else self._token(mask_token, "mask_token")
        self.oov_token = None if oov_token is None else self._token(oov_token, "oov_token")
        self.output_mode = output_mode
        self.pad_to_max_tokens = _check_bool(pad_to_max_tokens, "pad_to_max_tokens", cls)
        self.max_tokens = _check_max_tokens(max_tokens, cls, 1)
        if self.pad_to_max_tokens and self.max_tokens is None and output_mode != "int":
            raise ValueError(f"{cls}: pad_to_max_tokens=True needs max_tokens")
        self._tokens = []            # the learned tokens, in index order
        self._index = {}             # token -> index in the layer's output
        self._idf = None             # float64 (vocabulary_size,) for tf_idf
        self._fixed = vocabulary is not None
        if vocabulary is not None:
            self.set_vocabulary(vocabulary, idf_weights)
        elif idf_weights is not None:
            raise ValueError(f"{cls}: idf_weights need a vocabulary")

    # -- the vocabulary ------------------------------------------------------------------------
    def _token(self, value, what):
        raise NotImplementedError

    def _start(self):
        """Index of the first learned token."""
        mask = self.mask_token is not None and self.output_mode == "int"
        return int(mask) + self.num_oov_indices

    def vocabulary_size(self):
        """Entries in the vocabulary, special tokens included (the output width of the vector
        modes without pad_to_max_tokens)."""
        return self._start() + len(self._tokens)

    def get_vocabulary(self, include_special_tokens=True):
        """The vocabulary in index order: token i is what index i stands for."""
        if not include_special_tokens:
            return list(self._tokens)
        head = []
        if self.mask_token is not None and self.output_mode == "int":
            head.append(self.mask_token)
        head += [self.oov_token] * self.num_oov_indices
        return head + list(self._tokens)

    def set_vocabulary(self, vocabulary, idf_weights=None):
        """Set the vocabulary (a list or 1-D array of tokens, or the path of a text file with
        one token per line) and, for output_mode="tf_idf", its idf weights (one per token; the
        OOV entries get their mean). Leading mask / OOV tokens are accepted and skipped, as
        Keras does; a repeated token or a special token elsewhere is a ValueError."""
        cls = type(self).__name__
        if isinstance(vocabulary, str):
            with open(vocabulary, encoding="utf-8") as f:
                vocabulary = [line.rstrip("\n") for line in f]
        if isinstance(vocabulary, np.ndarray):
            if vocabulary.ndim != 1:
                raise ValueError(f"{cls}.set_vocabulary: vocabulary must be 1-D; got shape "
                                 f"{vocabulary.shape}")
            vocabulary = vocabulary.tolist()
        if not isinstance(vocabulary, (list, tuple)):
            raise TypeError(f"{cls}.set_vocabulary: vocabulary must be a list of tokens, a 1-D "
                            f"array or a file path; got {type(vocabulary).__name__}")
        tokens = [self._token(t, f"vocabulary[{i}]") for i, t in enumerate(vocabulary)]
        if self.output_mode == "tf_idf":
            if idf_weights is None:
                raise ValueError(f"{cls}: output_mode='tf_idf' needs idf_weights with the "
                                 "vocabulary")
            idf = np.asarray(idf_weights, dtype=np.float64).reshape(-1)
            if not np.isfinite(idf).all():
                raise ValueError(f"{cls}: idf_weights must be finite numbers")
        elif idf_weights is not None:
            raise ValueError(f"{cls}: idf_weights are only used with output_mode='tf_idf'")
        skipped = 0
        if tokens and self.mask_token is not None and tokens[0] == self.mask_token:
            skipped = 1
        while skipped < len(tokens) and self.num_oov_indices and \
                tokens[skipped] == self.oov_token and skipped < 1 + self.num_oov_indices:
            skipped += 1
        tokens = tokens[skipped:]
        seen = set()
        for t in tokens:
            if t in seen:
                raise ValueError(f"{cls}: the vocabulary holds {t!r} twice")
            if t == self.mask_token or (t == self.oov_token and self.num_oov_indices):
                raise ValueError(f"{cls}: the special token {t!r} may only open the "
                                 "vocabulary")
            seen.add(t)
        if self.max_tokens is not None and self._start() + len(tokens) > self.max_tokens:
            raise ValueError(f"{cls}: the vocabulary has {self._start() + len(tokens)} entries "
                             f"with the special tokens, over max_tokens={self.max_tokens}")
        if self.output_mode == "tf_idf":
            if idf.size == len(tokens) + skipped:
                idf = idf[skipped:]
            if idf.size != len(tokens):
                raise ValueError(f"{cls}: idf_weights must have one weight per token "
                                 f"({len(tokens)}); got {idf.size}")
            self._idf = self._pad_idf(idf)
        self._set_tokens(tokens)
        self._fixed = True

    def _set_tokens(self, tokens):
        start = self._start()
        self._tokens = list(tokens)
        self._index = {t: start + i for i, t in enumerate(self._tokens)}

    def _pad_idf(self, idf):
        """idf of the learned tokens -> one per vocabulary entry (OOV: their mean)."""
        mean = float(idf.mean()) if idf.size else 0.0
        return np.concatenate([np.full(self._start(), mean), idf])

    # -- adapt ---------------------------------------------------------------------------------
    def adapt(self, data, batch_size=None, steps=None):
        """Learn the vocabulary from data (an array or list of tokens; a 2-D one is a batch of
        documents, which tf_idf counts per row), replacing any learned before. An iterable of
        such batches is read batch by batch (``steps`` of them at most)."""
        cls = type(self).__name__
        if self._fixed:
            raise ValueError(f"{cls} {self.name!r}: cannot adapt a layer whose vocabulary was "
                             "set with vocabulary= or set_vocabulary()")
        counts, docs, n_docs = collections.Counter(), collections.Counter(), 0
        for batch in _batches(data, steps):
            arr = self._as_tokens(batch, f"{cls}.adapt")
            rows = arr.reshape(1, -1) if arr.ndim < 2 else arr.reshape(arr.shape[0], -1)
            for row in rows.tolist():
                counts.update(row)
                docs.update(set(row))
                n_docs += 1
        self._finish_adapt(counts, docs, n_docs)

    def _finish_adapt(self, counts, docs, n_docs):
        for special in (self.mask_token, self.oov_token):
            counts.pop(special, None)
        ranked = sorted(counts.items(), key=lambda tc: (tc[1], _sort_key(tc[0])), reverse=True)
        if self.max_tokens is not None:
            ranked = ranked[:max(0, self.max_tokens - self._start())]
        tokens = [t for t, _ in ranked]
        if self.output_mode == "tf_idf":
            idf = np.array([math.log(1.0 + n_docs / (1.0 + docs[t])) for t in tokens])
            self._idf = self._pad_idf(idf)
        self._set_tokens(tokens)

    # -- the lookup ----------------------------------------------------------------------------
    def _as_tokens(self, x, where):
        raise NotImplementedError

    def _lookup(self, arr):
        """Token array -> int64 index array (OOV to its bucket, the mask token to 0)."""
        cls = type(self).__name__
        index = self._index
        mask = self.mask_token if self.output_mode == "int" else None
        n_oov = self.num_oov_indices
        mask_off = int(self.mask_token is not None and self.output_mode == "int")
        out = np.empty(arr.size, dtype=np.int64)
        for i, t in enumerate(arr.reshape(-1).tolist()):
            j = index.get(t)
            if j is None:
                if mask is not None and t == mask:
                    j = 0
                elif self.mask_token is not None and t == self.mask_token:
                    j = -1  # dropped by the vector modes
                elif n_oov == 1:
                    j = mask_off
                elif n_oov == 0:
                    raise ValueError(f"{cls} {self.name!r}: {t!r} is not in the vocabulary and "
                                     "num_oov_indices=0")
                else:
                    j = mask_off + zlib.crc32(str(t).encode("utf-8")) % n_oov
            out[i] = j
        return out.reshape(arr.shape)

    def _invert(self, x):
        ids = np.asarray(x)
        if ids.dtype.kind not in "iu" and not (ids.dtype.kind == "f" and
                                               np.array_equal(ids, np.round(ids))):
            raise ValueError(f"{type(self).__name__} {self.name!r} (invert=True) expects "
                             f"integer ids; got dtype {ids.dtype}")
        vocab = self.get_vocabulary()
        fallback = self.oov_token
        out = np.empty(ids.shape, dtype=object)
        flat = out.reshape(-1)
        for i, j in enumerate(ids.reshape(-1).tolist()):
            j = int(j)
            flat[i] = vocab[j] if 0 <= j < len(vocab) else fallback
        return out

    def _depth(self):
        if self.pad_to_max_tokens and self.max_tokens is not None:
            return self.max_tokens
        return self.vocabulary_size()

    def _encode(self, ids):
        """int64 ids -> the output mode's array (ids for "int")."""
        if self.output_mode == "int":
            return ids
        depth = self._depth()
        dt = np.dtype(self.dtype)
        if self.output_mode == "one_hot":
            if ids.ndim > 1 and ids.shape[-1] == 1:
                ids = ids[..., 0]
            out = np.zeros(ids.shape + (depth,), dtype=dt)
            keep = ids >= 0
            np.put_along_axis(out.reshape(-1, depth), np.where(keep, ids, 0).reshape(-1, 1),
                              keep.reshape(-1, 1).astype(dt), axis=1)
            return out
        rows = ids.reshape(ids.shape[0], -1) if ids.ndim > 1 else ids.reshape(-1, 1)
        out = np.zeros((rows.shape[0], depth), dtype=np.float64)
        r, c = np.nonzero(rows >= 0)
        np.add.at(out, (r, rows[r, c]), 1.0)
        if self.output_mode == "multi_hot":
            out = np.minimum(out, 1.0)
        elif self.output_mode == "tf_idf":
            idf = np.zeros(depth)
            idf[:min(depth, self._idf.size)] = self._idf[:depth]
            out *= idf
        return out.astype(dt)

    def _check_ready(self):
        if self.output_mode != "int" and not self._tokens and not self._fixed:
            raise ValueError(f"{type(self).__name__} {self.name!r}: the vocabulary is empty; "
                             "call adapt(data) or pass vocabulary= first")

    def forward(self, x, training=False, mask=None):
        if self.invert:
            return self._invert(x), None
        self._check_ready()
        arr = self._as_tokens(x, f"{type(self).__name__} {self.name!r}")
        if arr.ndim == 0:
            arr = arr.reshape(1)
        return self._encode(self._lookup(arr)), None

    def backprop(self, ctx, dy, need_dx=True):
        return None, []  # the inputs are tokens: nothing to differentiate

    @property
    def output_dtype(self):
        if self.invert:
            return self._vocabulary_dtype()
        return "int64" if self.output_mode == "int" else self.dtype

    def _vocabulary_dtype(self):
        raise NotImplementedError

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if self.output_mode == "int":
            return input_shape
        depth = self._depth() if (self._tokens or self._fixed or self.pad_to_max_tokens) \
            else None
        if self.output_mode == "one_hot":
            if len(input_shape) > 1 and input_shape[-1] == 1:
                return input_shape[:-1] + (depth,)
            return input_shape + (depth,)
        return (input_shape[0], depth)

    # -- config --------------------------------------------------------------------------------
    def get_config(self):
        return {**super().get_config(), "max_tokens": self.max_tokens,
                "num_oov_indices": self.num_oov_indices, "mask_token": self.mask_token,
                "oov_token": self.oov_token, "vocabulary": self.get_vocabulary(False),
                "idf_weights": (None if self._idf is None
                                else self._idf[self._start():].tolist()),
                "invert": self.invert, "output_mode": self.output_mode,
                "pad_to_max_tokens": self.pad_to_max_tokens, "sparse": False,
                "vocabulary_size": self.vocabulary_size()}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        vocab = config.get("vocabulary")
        if isinstance(vocab, list) and not vocab and config.get("idf_weights") is None:
            config["vocabulary"] = None  # never adapted: stays adaptable
        return cls(**config)

    def __repr__(self):
        return (f"<{type(self).__name__} name={self.name!r}, output_mode={self.output_mode!r}, "
                f"vocabulary_size={self.vocabulary_size()}>")


def _sort_key(token):
    return token.encode("utf-8") if isinstance(token, str) else token


def _batches(data, steps):
    """adapt's data as a sequence of batches."""
    if isinstance(data, (str, bytes, list, tuple, np.ndarray)):
        return [data]
    try:
        it = iter(data)
    except TypeError:
        return [data]
    out = []
    for i, batch in enumerate(it):
        if steps is not None and i >= steps:
            break
        out.append(batch[0] if isinstance(batch, tuple) else batch)
    return out


class StringLookup(_IndexLookup):
    """Maps strings to integer indices from a vocabulary (Keras 3's ``StringLookup``).

    Args (Keras 3 names and defaults): max_tokens=None (vocabulary size cap, special tokens
    included), num_oov_indices=1, mask_token=None, oov_token="[UNK]", vocabulary=None (a list of
    strings or a file with one per line), idf_weights=None, invert=False (indices -> strings),
    output_mode="int" ("int", "one_hot", "multi_hot", "count", "tf_idf"),
    pad_to_max_tokens=False, sparse=False, encoding="utf-8".

    Input: strings of any shape (an object or unicode array, or lists of str); output: int64
    indices of the same shape, or float vectors (batch, vocabulary_size) in the vector modes.

    Example:

    >>> lookup = nn.layers.StringLookup(vocabulary=["a", "b", "c"])
    >>> lookup(np.array([["a", "c", "d"]], dtype=object))
    array([[1, 3, 0]])
    """

    def __init__(self, max_tokens: Any = None, num_oov_indices: Any = 1, vocabulary: Any = None,
                 mask_token: Any = None, oov_token: str | None = "[UNK]", invert: Any = False,
                 output_mode: Any = "int", pad_to_max_tokens: Any = False, sparse: Any = False,
                 encoding: Any = "utf-8", idf_weights: Any = None, **kwargs: Any) -> None:
        if encoding not in ("utf-8", "UTF-8", "utf8"):
            raise ValueError(f"StringLookup: encoding must be 'utf-8'; got {encoding!r}")
        super().__init__(max_tokens=max_tokens, num_oov_indices=num_oov_indices,
                         mask_token=mask_token, oov_token=oov_token, vocabulary=vocabulary,
                         idf_weights=idf_weights, invert=invert, output_mode=output_mode,
                         pad_to_max_tokens=pad_to_max_tokens, sparse=sparse, **kwargs)
        self.encoding = "utf-8"

    input_dtype = STRING

    def _token(self, value, what):
        if isinstance(value, bytes):
            value = value.decode("utf-8")
        if not isinstance(value, str):
            raise TypeError(f"StringLookup: {what} must be a string; got {value!r}")
        return value

    def _as_tokens(self, x, where):
        return _strings(x, where)

    def _vocabulary_dtype(self):
        return STRING

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "encoding": self.encoding}


class IntegerLookup(_IndexLookup):
    """Maps integer categories to contiguous indices from a vocabulary (Keras 3's
    ``IntegerLookup``).

    Args (Keras 3 names and defaults): max_tokens=None, num_oov_indices=1, mask_token=None,
    oov_token=-1, output_mode="int", vocabulary=None (a list of ints), vocabulary_dtype="int64",
    idf_weights=None, invert=False, sparse=False, pad_to_max_tokens=False.

    Input: integers of any shape; output: int64 indices of the same shape (0 is the OOV index
    by default), or float vectors (batch, vocabulary_size) in the vector modes.

    Example:

    >>> lookup = nn.layers.IntegerLookup(vocabulary=[12, 36, 1138, 42])
    >>> lookup(np.array([[12, 1138, 42], [42, 1000, 36]]))
    array([[1, 3, 4],
           [4, 0, 2]])
    """

    _list_dtype = None

    def __init__(self, max_tokens: Any = None, num_oov_indices: Any = 1, mask_token: Any = None,
                 oov_token: str | None = -1, output_mode: Any = "int", vocabulary: Any = None,
                 vocabulary_dtype: Any = "int64", idf_weights: Any = None, invert: Any = False,
                 sparse: Any = False, pad_to_max_tokens: Any = False, **kwargs: Any) -> None:
        if vocabulary_dtype not in ("int32", "int64"):
            raise ValueError(f"IntegerLookup: vocabulary_dtype must be 'int32' or 'int64'; got "
                             f"{vocabulary_dtype!r}")
        self.vocabulary_dtype = vocabulary_dtype
        super().__init__(max_tokens=max_tokens, num_oov_indices=num_oov_indices,
                         mask_token=mask_token, oov_token=oov_token, vocabulary=vocabulary,
                         idf_weights=idf_weights, invert=invert, output_mode=output_mode,
                         pad_to_max_tokens=pad_to_max_tokens, sparse=sparse, **kwargs)

    def _token(self, value, what):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise TypeError(f"IntegerLookup: {what} must be an int; got {value!r}")
        return int(value)

    def _as_tokens(self, x, where):
        arr = np.asarray(x)
        if arr.dtype.kind == "f" and np.array_equal(arr, np.round(arr)):
            arr = arr.astype(np.int64)
        if arr.dtype.kind not in "iu":
            raise ValueError(f"{where} expects integers; got an array of dtype {arr.dtype}")
        return arr.astype(np.int64, copy=False)

    def _vocabulary_dtype(self):
        return self.vocabulary_dtype

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "vocabulary_dtype": self.vocabulary_dtype}


class TextVectorization(_DataLayer):
    """Turns strings into token ids or token vectors (Keras 3's ``TextVectorization``).

    Per text: standardize (``"lower_and_strip_punctuation"``: lower-case and delete Keras's
    punctuation characters; ``"lower"``; ``"strip_punctuation"``; None; or a callable str -> str)
    -> split (``"whitespace"``, ``"character"``, None, or a callable str -> list of str) ->
    ngrams (None; an int n: every width 1..n; a tuple of widths; joined with a space) -> a
    StringLookup whose vocabulary ``adapt(texts)`` learns (or ``vocabulary=``).

    Args (Keras 3 names and defaults): max_tokens=None (vocabulary size with the padding ""
    and "[UNK]"), standardize="lower_and_strip_punctuation", split="whitespace", ngrams=None,
    output_mode="int" ("int", "multi_hot", "count", "tf_idf"), output_sequence_length=None
    (int mode: pad with 0 or cut at the end to this length; None pads to the batch's longest),
    pad_to_max_tokens=False, vocabulary=None, idf_weights=None, sparse=False, ragged=False,
    encoding="utf-8".

    Input: a batch of strings, shape (batch,) or (batch, 1); output: int64 ids (batch,
    output_sequence_length) in int mode, float vectors (batch, vocabulary_size) otherwise.
    A callable standardize or split is not saved with the model (as in Keras, where it must be
    registered): saving such a layer raises.

    Example:

    >>> vectorize = nn.layers.TextVectorization(max_tokens=1000, output_sequence_length=4)
    >>> vectorize.adapt(["the cat sat", "the dog"])
    >>> vectorize.get_vocabulary()
    ['', '[UNK]', 'the', 'sat', 'dog', 'cat']
    >>> vectorize(np.array(["The cat ran!"]))
    array([[2, 5, 1, 0]])
    """

    input_dtype = STRING

    def __init__(self, max_tokens: Any = None, standardize: Any = "lower_and_strip_punctuation",
                 split: Any = "whitespace", ngrams: Any = None, output_mode: Any = "int",
                 output_sequence_length: Any = None, pad_to_max_tokens: Any = False,
                 vocabulary: Any = None, idf_weights: Any = None, sparse: Any = False,
                 ragged: Any = False, encoding: Any = "utf-8", **kwargs: Any) -> None:
        kwargs.pop("vocabulary_size", None)
        super().__init__(**kwargs)
        cls = "TextVectorization"
        if output_mode == "tf-idf":
            output_mode = "tf_idf"
        if output_mode not in _TEXT_MODES:
            raise ValueError(f"{cls}: output_mode must be one of {_TEXT_MODES}; got "
                             f"{output_mode!r}")
        if not (standardize is None or callable(standardize) or standardize in _STANDARDIZE):
            raise ValueError(f"{cls}: standardize must be None, a callable or one of "
                             f"{_STANDARDIZE}; got {standardize!r}")
        if not (split is None or callable(split) or split in _SPLIT):
            raise ValueError(f"{cls}: split must be None, a callable or one of {_SPLIT}; got "
                             f"{split!r}")
        if ngrams is not None:
            widths = (ngrams,) if isinstance(ngrams, numbers.Integral) else ngrams
            if not isinstance(widths, (tuple, list)) or not widths or any(
                    isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1
                    for n in widths):
                raise ValueError(f"{cls}: ngrams must be None, a positive int or a tuple of "
                                 f"positive ints; got {ngrams!r}")
            if split is None:
                raise ValueError(f"{cls}: ngrams need split (the texts must be split into "
                                 "tokens first)")
            ngrams = int(ngrams) if isinstance(ngrams, numbers.Integral) else \
                tuple(int(n) for n in ngrams)
        if output_sequence_length is not None:
            if output_mode != "int":
                raise ValueError(f"{cls}: output_sequence_length is only used with "
                                 f"output_mode='int'; got output_mode={output_mode!r}")
            if isinstance(output_sequence_length, bool) or \
                    not isinstance(output_sequence_length, numbers.Integral) or \
                    output_sequence_length < 1:
                raise ValueError(f"{cls}: output_sequence_length must be a positive int or "
                                 f"None; got {output_sequence_length!r}")
            output_sequence_length = int(output_sequence_length)
        if _check_bool(ragged, "ragged", cls):
            raise ValueError(f"{cls}: ragged=True is not supported; use output_sequence_length "
                             "or let each batch be padded to its longest text")
        self.standardize = standardize
        self.split = split
        self.ngrams = ngrams
        self.output_mode = output_mode
        self.output_sequence_length = output_sequence_length
        self.encoding = encoding
        self._lookup_layer = StringLookup(
            max_tokens=max_tokens, num_oov_indices=1,
            mask_token="" if output_mode == "int" else None, oov_token="[UNK]",
            vocabulary=vocabulary, idf_weights=idf_weights, output_mode=output_mode,
            pad_to_max_tokens=pad_to_max_tokens, sparse=sparse, encoding=encoding,
            dtype=self.dtype, name=f"{self.name}_lookup")
        # the sublayer's name is internal: do not use up the user's automatic names
        self.max_tokens = self._lookup_layer.max_tokens
        self.pad_to_max_tokens = self._lookup_layer.pad_to_max_tokens

    # -- text -> tokens ------------------------------------------------------------------------
    def _standardize(self, text):
        s = self.standardize
        if s is None:
            return text
        if callable(s):
            out = s(text)
            if not isinstance(out, str):
                raise ValueError(f"TextVectorization {self.name!r}: standardize must return a "
                                 f"str; got {type(out).__name__}")
            return out
        if s in ("lower_and_strip_punctuation", "lower"):
            text = text.lower()
        if s in ("lower_and_strip_punctuation", "strip_punctuation"):
            text = text.translate(_PUNCTUATION)
        return text

    def _split(self, text):
        s = self.split
        if s is None:
            return [text]
        if s == "whitespace":
            return text.split()
        if s == "character":
            return list(text)
        out = s(text)
        if not isinstance(out, (list, tuple)) or not all(isinstance(t, str) for t in out):
            raise ValueError(f"TextVectorization {self.name!r}: split must return a list of "
                             "str")
        return list(out)

    def _grams(self, tokens):
        if self.ngrams is None:
            return tokens
        widths = range(1, self.ngrams + 1) if isinstance(self.ngrams, int) else self.ngrams
        out = []
        for n in widths:
            out.extend(" ".join(tokens[i:i + n]) for i in range(len(tokens) - n + 1))
        return out

    def _tokenize(self, x, where):
        arr = _strings(x, where)
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        elif arr.ndim == 0:
            arr = arr.reshape(1)
        if arr.ndim != 1:
            raise ValueError(f"{where} expects a batch of strings of shape (batch,) or "
                             f"(batch, 1); got shape {arr.shape}")
        return [self._grams(self._split(self._standardize(t))) for t in arr.tolist()]

    # -- vocabulary ----------------------------------------------------------------------------
    def adapt(self, data: Any, batch_size: int | None = None, steps: int | None = None) -> Any:
        """Learn the vocabulary (and the idf weights of tf_idf) from texts: a list or array of
        strings, or an iterable of such batches (at most ``steps``)."""
        lookup = self._lookup_layer
        if lookup._fixed:
            raise ValueError(f"TextVectorization {self.name!r}: cannot adapt a layer whose "
                             "vocabulary was set with vocabulary= or set_vocabulary()")
        counts, docs, n_docs = collections.Counter(), collections.Counter(), 0
        for batch in _batches(data, steps):
            for tokens in self._tokenize(batch, "TextVectorization.adapt"):
                counts.update(tokens)
                docs.update(set(tokens))
                n_docs += 1
        lookup._finish_adapt(counts, docs, n_docs)

    def get_vocabulary(self, include_special_tokens: Any = True) -> Any:
        """The vocabulary in index order ("" and "[UNK]" first in int mode)."""
        return self._lookup_layer.get_vocabulary(include_special_tokens)

    def set_vocabulary(self, vocabulary: Any, idf_weights: Any = None) -> Any:
        """Set the vocabulary (and idf weights for tf_idf); see StringLookup.set_vocabulary."""
        self._lookup_layer.set_vocabulary(vocabulary, idf_weights)

    def vocabulary_size(self) -> Any:
        return self._lookup_layer.vocabulary_size()

    # -- layer ---------------------------------------------------------------------------------
    def forward(self, x: Any, training: bool = False, mask: Any = None) -> Any:
        where = f"TextVectorization {self.name!r}"
        lookup = self._lookup_layer
        lookup._check_ready()
        docs = self._tokenize(x, where)
        if self.output_mode != "int":
            rows = [lookup._lookup(np.array(d, dtype=object)) if d else np.zeros(0, np.int64)
                    for d in docs]
            width = max([1] + [r.size for r in rows])
            ids = np.full((len(rows), width), -1, dtype=np.int64)  # -1: dropped
            for i, r in enumerate(rows):
                ids[i, :r.size] = r
            return lookup._encode(ids), None
        length = self.output_sequence_length or max([1] + [len(d) for d in docs])
        ids = np.zeros((len(docs), length), dtype=np.int64)
        for i, d in enumerate(docs):
            d = d[:length]
            if d:
                ids[i, :len(d)] = lookup._lookup(np.array(d, dtype=object))
        return ids, None

    def backprop(self, ctx: Any, dy: Any, need_dx: Any = True) -> Any:
        return None, []  # strings in: the gradient stops here

    @property
    def output_dtype(self) -> Any:
        return "int64" if self.output_mode == "int" else self.dtype

    def compute_output_shape(self, input_shape: Any) -> Any:
        batch = tuple(input_shape)[0] if len(tuple(input_shape)) else None
        if self.output_mode == "int":
            return (batch, self.output_sequence_length)
        return self._lookup_layer.compute_output_shape((batch, None))

    def build(self, input_shape: Any) -> None:
        shape = tuple(input_shape)
        if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] not in (1, None)):
            raise ValueError(f"TextVectorization {self.name!r}: input shape must be (batch,) or "
                             f"(batch, 1); got {shape}")
        super().build(input_shape)

    def get_config(self) -> dict[str, Any]:
        for what in ("standardize", "split"):
            if callable(getattr(self, what)):
                raise ValueError(f"TextVectorization {self.name!r}: a callable {what} cannot be "
                                 "saved (nanonet files hold data, never code); pass one of the "
                                 "built-in names, or re-create the layer after loading")
        lookup = self._lookup_layer.get_config()
        return {**super().get_config(), "max_tokens": self.max_tokens,
                "standardize": self.standardize, "split": self.split,
                "ngrams": list(self.ngrams) if isinstance(self.ngrams, tuple) else self.ngrams,
                "output_mode": self.output_mode,
                "output_sequence_length": self.output_sequence_length,
                "pad_to_max_tokens": self.pad_to_max_tokens, "sparse": False, "ragged": False,
                "vocabulary": lookup["vocabulary"], "idf_weights": lookup["idf_weights"],
                "encoding": self.encoding, "vocabulary_size": self.vocabulary_size()}

    @classmethod
    def from_config(cls, config: Any) -> Any:
        config = dict(config)
        if isinstance(config.get("ngrams"), list):
            config["ngrams"] = tuple(config["ngrams"])
        vocab = config.get("vocabulary")
        if isinstance(vocab, list) and not vocab and config.get("idf_weights") is None:
            config["vocabulary"] = None
        return cls(**config)

    def __repr__(self):
        return (f"<TextVectorization name={self.name!r}, output_mode={self.output_mode!r}, "
                f"vocabulary_size={self.vocabulary_size()}, "
                f"output_sequence_length={self.output_sequence_length}>")
