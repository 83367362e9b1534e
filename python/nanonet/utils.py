"""Small NumPy helpers with Keras names: ``to_categorical``.

Pure NumPy; nothing here touches the compiled core.
"""

import numbers

import numpy as np

__all__ = ["to_categorical"]


def to_categorical(y, num_classes=None, dtype="float32"):
    """One-hot encode integer class labels, as ``keras.utils.to_categorical``.

    Args:
        y: array-like of integer labels in ``[0, num_classes)``, any shape. Floats are accepted
            when they hold whole numbers (``2.0``). A trailing axis of length 1 is dropped first,
            as in Keras: ``(N, 1)`` gives ``(N, num_classes)``.
        num_classes: number of classes; ``None`` (or 0, as in Keras) means ``max(y) + 1``.
        dtype: dtype of the result, ``"float32"`` by default.

    Returns:
        ``np.ndarray`` of shape ``y.shape + (num_classes,)`` (after dropping a trailing 1) with a
        single 1 per row, zeros elsewhere.

    Raises:
        ValueError: labels that are negative, not whole numbers, or ``>= num_classes``;
            ``num_classes`` that is negative; empty ``y`` without ``num_classes``.
        TypeError: non-numeric ``y``, a non-integer ``num_classes`` or an unknown ``dtype``.

    Unlike Keras, a negative label raises instead of silently wrapping to the last class.

    >>> nn.utils.to_categorical([0, 2, 1], num_classes=3)
    array([[1., 0., 0.],
           [0., 0., 1.],
           [0., 1., 0.]], dtype=float32)
    """
    try:
        out_dtype = np.dtype(dtype)
    except TypeError as e:
        raise TypeError(f"to_categorical: dtype must be a NumPy dtype; got {dtype!r}") from e
    y = np.asarray(y)
    if y.dtype == object or not (np.issubdtype(y.dtype, np.number) or y.dtype == np.bool_):
        raise TypeError(f"to_categorical: y must hold integer class labels; got dtype {y.dtype}")
    if np.issubdtype(y.dtype, np.complexfloating):
        raise TypeError(f"to_categorical: y must hold integer class labels; got dtype {y.dtype}")
    if np.issubdtype(y.dtype, np.floating):
        if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            bad = y[~np.isfinite(y) | (y != np.round(y))].ravel()[0].item()
            raise ValueError(
                f"to_categorical: y must hold whole-number class labels; got {bad!r}")
    labels = y.astype(np.int64)

    shape = labels.shape
    if len(shape) > 1 and shape[-1] == 1:
        shape = shape[:-1]
    flat = labels.reshape(-1)

    if num_classes is not None and (isinstance(num_classes, (bool, np.bool_))
                                    or not isinstance(num_classes, numbers.Integral)):
        raise TypeError(
            f"to_categorical: num_classes must be an int or None; got {num_classes!r}")
    if num_classes is not None and num_classes < 0:
        raise ValueError(f"to_categorical: num_classes must be >= 1; got {num_classes}")
    if not num_classes:
        if flat.size == 0:
            raise ValueError(
                "to_categorical: y is empty, so num_classes must be given; got num_classes=None")
        num_classes = int(flat.max()) + 1
    num_classes = int(num_classes)

    if flat.size:
        lo, hi = int(flat.min()), int(flat.max())
        if lo < 0:
            raise ValueError(f"to_categorical: labels must be >= 0; got {lo}")
        if hi >= num_classes:
            raise ValueError(
                f"to_categorical: labels must be < num_classes = {num_classes}; got {hi}")

    out = np.zeros((flat.size, num_classes), dtype=out_dtype)
    out[np.arange(flat.size), flat] = 1
    return out.reshape(shape + (num_classes,))
