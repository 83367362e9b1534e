"""``train_test_split``: split arrays into random train and test subsets (pure NumPy)."""
from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

__all__ = ["train_test_split"]


def _length(a, i):
    if isinstance(a, (str, bytes)) or not hasattr(a, "__len__") or not hasattr(a, "__getitem__"):
        raise TypeError(
            f"train_test_split: arrays[{i}] must be an array or a list; got {type(a).__name__}")
    if isinstance(a, np.ndarray) and a.ndim == 0:
        raise TypeError(f"train_test_split: arrays[{i}] must have a first axis; got a 0-d array")
    return len(a)


def _take(a, idx):
    if isinstance(a, np.ndarray):
        return a[idx]
    return [a[int(i)] for i in idx]


def _n_test(test_size, n):
    if isinstance(test_size, (bool, np.bool_)):
        raise TypeError(f"train_test_split: test_size must be a float or an int; got {test_size!r}")
    if isinstance(test_size, numbers.Integral):
        if not 1 <= test_size <= n - 1:
            raise ValueError(
                f"train_test_split: an int test_size must be in [1, {n - 1}] for {n} samples; "
                f"got {test_size}")
        return int(test_size)
    if isinstance(test_size, numbers.Real):
        if not 0.0 < test_size < 1.0:
            raise ValueError(
                f"train_test_split: a float test_size must be in (0, 1); got {test_size}")
        n_test = math.ceil(test_size * n)
        if not 1 <= n_test <= n - 1:
            raise ValueError(
                f"train_test_split: test_size={test_size} of {n} samples gives {n_test} test "
                f"and {n - n_test} train samples; both must be >= 1")
        return n_test
    raise TypeError(f"train_test_split: test_size must be a float or an int; got {test_size!r}")


def stratified_counts(class_sizes: Any, n_pick: Any, rng: Any) -> Any:
    """How many of each class to pick so that ``n_pick`` in all keeps the class proportions.

    Each class gets ``floor(n_pick * size / total)``; the few left over go to the classes with
    the largest fractional parts (ties broken at random by ``rng``). Never more than a class
    holds. Shared with ``nanonet.datasets`` for stratified subsampling.
    """
    sizes = np.asarray(class_sizes, dtype=np.int64)
    exact = n_pick * sizes / sizes.sum()
    counts = np.floor(exact).astype(np.int64)
    left = int(n_pick - counts.sum())
    if left:
        frac = exact - counts
        # lexsort: last key is primary -> largest fraction first, random among ties.
        order = np.lexsort((rng.permutation(len(sizes)), -frac))
        counts[order[:left]] += 1
    return counts


def train_test_split(*arrays: Any, test_size: Any = 0.2, shuffle: bool = True, stratify: Any = None,
                     seed: int | None = None) -> Any:
    """Split arrays (or lists) into train and test subsets, like scikit-learn's.

    Args:
        *arrays: one or more arrays or lists with the same length (first axis).
        test_size: float in (0, 1), the fraction of samples in the test set (rounded up, as in
            scikit-learn), or int, the number of test samples.
        shuffle: shuffle before splitting. With ``shuffle=False`` the last samples form the test
            set, in order.
        stratify: optional labels, one per sample; the split then keeps each class's proportion
            in both subsets (largest-remainder rounding). Needs ``shuffle=True``, at least 2
            samples per class and at least one train and one test slot per class.
        seed: int, ``None`` (fresh randomness) or a ``np.random.Generator``.

    Returns:
        list ``[a_train, a_test, b_train, b_test, ...]``, two entries per input: arrays for
        arrays, lists for anything else.

    >>> x, y = np.arange(10).reshape(5, 2), np.arange(5)
    >>> x_tr, x_te, y_tr, y_te = nn.preprocessing.train_test_split(x, y, test_size=2,
    ...                                                            shuffle=False)
    >>> y_tr, y_te
    (array([0, 1, 2]), array([3, 4]))
    """
    if not arrays:
        raise ValueError("train_test_split: at least one array is required; got none")
    lengths = [_length(a, i) for i, a in enumerate(arrays)]
    if len(set(lengths)) != 1:
        raise ValueError(
            f"train_test_split: all arrays must have the same length; got lengths {lengths}")
    n = lengths[0]
    if n < 2:
        raise ValueError(f"train_test_split: need at least 2 samples to split; got {n}")
    n_test = _n_test(test_size, n)
    n_train = n - n_test
    if seed is not None and not isinstance(seed, (numbers.Integral, np.random.Generator)):
        raise TypeError(
            f"train_test_split: seed must be an int, None or a numpy Generator; got {seed!r}")
    rng = np.random.default_rng(seed)

    if stratify is None:
        if shuffle:
            perm = rng.permutation(n)
        else:
            perm = np.arange(n)
        train, test = perm[:n_train], perm[n_train:]
    else:
        if not shuffle:
            raise ValueError(
                "train_test_split: stratify needs shuffle=True; got shuffle=False")
        labels = np.asarray(stratify)
        if labels.ndim == 0 or len(labels) != n:
            raise ValueError(
                f"train_test_split: stratify must hold one label per sample ({n}); "
                f"got shape {labels.shape}")
        if labels.ndim > 1:  # one-hot or multi-column labels: one class per distinct row
            labels = labels.reshape(n, -1)
        classes, codes = np.unique(labels, axis=0 if labels.ndim > 1 else None,
                                   return_inverse=True)
        codes = codes.reshape(-1)
        sizes = np.bincount(codes, minlength=len(classes))
        if sizes.min() < 2:
            raise ValueError(
                "train_test_split: every stratify class needs at least 2 samples; class "
                f"{classes[int(np.argmin(sizes))].tolist()!r} has {int(sizes.min())}")
        if n_test < len(classes) or n_train < len(classes):
            raise ValueError(
                f"train_test_split: with {len(classes)} stratify classes both subsets need at "
                f"least {len(classes)} samples; got {n_train} train and {n_test} test")
        test_counts = stratified_counts(sizes, n_test, rng)
        train_parts, test_parts = [], []
        for c, k in enumerate(test_counts):
            members = rng.permutation(np.flatnonzero(codes == c))
            test_parts.append(members[:k])
            train_parts.append(members[k:])
        train = rng.permutation(np.concatenate(train_parts))
        test = rng.permutation(np.concatenate(test_parts))

    out = []
    for a in arrays:
        out.append(_take(a, train))
        out.append(_take(a, test))
    return out
