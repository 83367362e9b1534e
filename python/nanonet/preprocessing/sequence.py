"""Sequence preprocessing: ``pad_sequences`` with Keras semantics (pure NumPy)."""
from __future__ import annotations

import numbers
from typing import Any

import numpy as np

__all__ = ["pad_sequences"]

_SIDES = ("pre", "post")


def _resolve_dtype(dtype):
    try:
        return np.dtype(dtype)
    except TypeError as e:
        raise TypeError(f"pad_sequences: dtype must be a NumPy dtype; got {dtype!r}") from e


def pad_sequences(sequences: Any, maxlen: int | None = None, dtype: Any = "int32",
                  padding: str = "pre", truncating: str = "pre", value: Any = 0.0) -> Any:
    """Pad (and truncate) a list of sequences to one length, as ``keras.utils.pad_sequences``.

    Args:
        sequences: list (or other sized iterable) of sequences: lists, tuples, 1-D arrays, or
            arrays of shape ``(T_i, ...)`` whose trailing shape is the same for every sequence.
            Sequences may have different lengths, including 0.
        maxlen: length of the output rows, an int >= 0. ``None`` means the longest sequence.
        dtype: dtype of the result (``"int32"`` by default). String dtypes (``str``, ``"U"``,
            ``bytes``) are allowed; an unsized ``str`` is sized to the longest item. Use
            ``object`` for arbitrary Python objects.
        padding: ``"pre"`` puts the padding before each sequence, ``"post"`` after it.
        truncating: ``"pre"`` drops values from the start of sequences longer than ``maxlen``
            (keeps the last ``maxlen``), ``"post"`` drops them from the end.
        value: the padding value, cast to ``dtype`` (``0.0`` becomes ``0`` for ints). A str
            value needs a str or object dtype.

    Returns:
        ``np.ndarray`` of shape ``(len(sequences), maxlen) + sample_shape`` where sample_shape
        is the trailing shape of the first non-empty sequence (``()`` for flat sequences).

    Raises:
        ValueError: ``padding`` or ``truncating`` not "pre"/"post", negative ``maxlen``, an
            element that is not a sequence, sequences whose trailing shapes differ, values or
            ``value`` that cannot be converted to ``dtype``.
        TypeError: ``maxlen`` that is not an int, ``dtype`` that is not a dtype.

    Differences from Keras (where Keras fails): no sequences gives shape ``(0, maxlen or 0)``
    instead of an error; ``maxlen=0`` gives shape ``(N, 0)``; bad ``padding`` / ``truncating``
    strings are rejected before any work, even when every sequence is empty.

    >>> nn.preprocessing.pad_sequences([[1, 2, 3], [4]], maxlen=2)
    array([[2, 3],
           [0, 4]], dtype=int32)
    >>> nn.preprocessing.pad_sequences([[1, 2, 3], [4]], padding="post", truncating="post",
    ...                               maxlen=2)
    array([[1, 2],
           [4, 0]], dtype=int32)
    """
    if padding not in _SIDES:
        raise ValueError(f'pad_sequences: padding must be "pre" or "post"; got {padding!r}')
    if truncating not in _SIDES:
        raise ValueError(
            f'pad_sequences: truncating must be "pre" or "post"; got {truncating!r}')
    if maxlen is not None:
        if isinstance(maxlen, (bool, np.bool_)) or not isinstance(maxlen, numbers.Integral):
            raise TypeError(f"pad_sequences: maxlen must be an int or None; got {maxlen!r}")
        if maxlen < 0:
            raise ValueError(f"pad_sequences: maxlen must be >= 0; got {maxlen}")
        maxlen = int(maxlen)
    out_dtype = _resolve_dtype(dtype)
    is_text = out_dtype.kind in "US"
    if isinstance(value, str) and not (is_text or out_dtype == object):
        raise ValueError(
            f"pad_sequences: value {value!r} is a str but dtype is {out_dtype}; "
            "use dtype=object (or a str dtype) to pad with strings")
    if isinstance(sequences, (str, bytes)) or not hasattr(sequences, "__len__"):
        raise ValueError(
            "pad_sequences: sequences must be a list of sequences; "
            f"got {type(sequences).__name__}")

    # Convert each (truncated) sequence once; remember the sample shape of the first
    # non-empty one and check the others against it.
    lengths = []
    for i, s in enumerate(sequences):
        if isinstance(s, (str, bytes)) or not hasattr(s, "__len__"):
            raise ValueError(
                "pad_sequences: sequences must be a list of sequences; "
                f"sequences[{i}] is {type(s).__name__} {s!r}")
        lengths.append(len(s))
    if maxlen is None:
        maxlen = max(lengths, default=0)

    # An unsized str/bytes dtype would truncate every item to '': size it to the data.
    unsized = is_text and out_dtype.itemsize == 0
    convert_dtype = out_dtype
    if unsized:
        convert_dtype = str if out_dtype.kind == "U" else bytes
    rows = []
    sample_shape = None
    for i, s in enumerate(sequences):
        if lengths[i] == 0:
            rows.append(None)
            continue
        try:
            arr = np.asarray(s if isinstance(s, np.ndarray) else list(s), dtype=convert_dtype)
        except (ValueError, TypeError, OverflowError) as e:
            raise ValueError(
                f"pad_sequences: sequences[{i}] cannot be converted to dtype {out_dtype}: {e}"
            ) from e
        if sample_shape is None:
            sample_shape = arr.shape[1:]
        elif arr.shape[1:] != sample_shape:
            raise ValueError(
                f"pad_sequences: every sequence must have sample shape {sample_shape} (that of "
                f"the first non-empty one); sequences[{i}] has {arr.shape[1:]}")
        if maxlen == 0:
            arr = arr[:0]
        elif truncating == "pre":
            arr = arr[-maxlen:]
        else:
            arr = arr[:maxlen]
        rows.append(arr)
    if sample_shape is None:
        sample_shape = ()

    if unsized:
        char_bytes = 4 if out_dtype.kind == "U" else 1
        sizes = [np.asarray(value, dtype=convert_dtype).dtype.itemsize]
        sizes += [r.dtype.itemsize for r in rows if r is not None]
        out_dtype = np.dtype(f"{out_dtype.kind}{max(sizes) // char_bytes}")
    try:
        x = np.full((len(rows), maxlen) + tuple(sample_shape), value, dtype=out_dtype)
    except (ValueError, TypeError, OverflowError) as e:
        raise ValueError(
            f"pad_sequences: value {value!r} cannot be converted to dtype {out_dtype}: {e}"
        ) from e
    for i, r in enumerate(rows):
        if r is None or len(r) == 0:
            continue
        if padding == "post":
            x[i, :len(r)] = r
        else:
            x[i, maxlen - len(r):] = r
    return x
