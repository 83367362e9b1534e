"""Preprocessing: pad_sequences, Tokenizer, to_categorical, train_test_split against hand-written
expected outputs (Keras / scikit-learn semantics), edge cases and errors."""
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nanonet.preprocessing import (Tokenizer, pad_sequences, text_to_word_sequence,
                                   to_categorical, tokenizer_from_json, train_test_split)
from nanonet.utils import to_categorical as utils_to_categorical

SEQS = [[1, 2, 3], [4], [], [5, 6]]


# -- pad_sequences --------------------------------------------------------------------------

@pytest.mark.parametrize("padding, truncating, maxlen, expected", [
    ("pre", "pre", None, [[1, 2, 3], [0, 0, 4], [0, 0, 0], [0, 5, 6]]),
    ("post", "pre", None, [[1, 2, 3], [4, 0, 0], [0, 0, 0], [5, 6, 0]]),
    ("pre", "pre", 2, [[2, 3], [0, 4], [0, 0], [5, 6]]),
    ("pre", "post", 2, [[1, 2], [0, 4], [0, 0], [5, 6]]),
    ("post", "post", 2, [[1, 2], [4, 0], [0, 0], [5, 6]]),
    ("post", "pre", 1, [[3], [4], [0], [6]]),
    ("pre", "pre", 5, [[0, 0, 1, 2, 3], [0, 0, 0, 0, 4], [0] * 5, [0, 0, 0, 5, 6]]),
    ("post", "post", 5, [[1, 2, 3, 0, 0], [4, 0, 0, 0, 0], [0] * 5, [5, 6, 0, 0, 0]]),
])
def test_pad_sequences_padding_truncating(padding, truncating, maxlen, expected):
    out = pad_sequences(SEQS, maxlen=maxlen, padding=padding, truncating=truncating)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, np.array(expected, dtype=np.int32))


def test_pad_sequences_value_and_dtype():
    out = pad_sequences([[1.5, 2.5], [3.5]], dtype="float64", value=-1.0)
    np.testing.assert_array_equal(out, [[1.5, 2.5], [-1.0, 3.5]])
    assert out.dtype == np.float64
    # Keras casts values and the padding value to an int dtype.
    np.testing.assert_array_equal(pad_sequences([[1.7], []], value=9.0, maxlen=2),
                                  [[9, 1], [9, 9]])
    assert pad_sequences([[1]], dtype=np.int64).dtype == np.int64


def test_pad_sequences_empty_inputs():
    assert pad_sequences([]).shape == (0, 0)
    assert pad_sequences([], maxlen=3).shape == (0, 3)
    out = pad_sequences([[], []])
    assert out.shape == (2, 0)
    np.testing.assert_array_equal(pad_sequences([[], []], maxlen=2, value=7), [[7, 7], [7, 7]])
    assert pad_sequences([[1, 2], [3]], maxlen=0).shape == (2, 0)


def test_pad_sequences_accepts_arrays_tuples_and_2d_array():
    ragged = [np.array([1, 2, 3]), (4, 5), range(6, 7)]
    np.testing.assert_array_equal(pad_sequences(ragged), [[1, 2, 3], [0, 4, 5], [0, 0, 6]])
    np.testing.assert_array_equal(pad_sequences(np.array([[1, 2], [3, 4]]), maxlen=3),
                                  [[0, 1, 2], [0, 3, 4]])


def test_pad_sequences_multidimensional_samples():
    seqs = [np.ones((3, 2)), np.full((1, 2), 2.0), np.zeros((0, 2))]
    out = pad_sequences(seqs, maxlen=2, dtype="float32", padding="post")
    assert out.shape == (3, 2, 2)
    np.testing.assert_array_equal(out[1], [[2, 2], [0, 0]])
    np.testing.assert_array_equal(out[0], np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"sequences\[1\].*\(3,\)"):
        pad_sequences([np.ones((2, 2)), np.ones((2, 3))])


def test_pad_sequences_strings():
    out = pad_sequences([["a", "bcd"], ["ef"]], dtype=str, value="-")
    np.testing.assert_array_equal(out, [["a", "bcd"], ["-", "ef"]])
    out = pad_sequences([["a", "bcd"], ["ef"]], dtype=object, value=None, padding="post")
    assert out.dtype == object and out[1, 1] is None and out[0, 1] == "bcd"
    with pytest.raises(ValueError, match="value 'x'.*dtype is int32"):
        pad_sequences([[1]], value="x")


@pytest.mark.parametrize("kwargs, err, pattern", [
    ({"padding": "mid"}, ValueError, "padding.*'mid'"),
    ({"truncating": "both"}, ValueError, "truncating.*'both'"),
    ({"maxlen": -1}, ValueError, "maxlen must be >= 0; got -1"),
    ({"maxlen": 2.5}, TypeError, "maxlen must be an int or None; got 2.5"),
    ({"maxlen": True}, TypeError, "maxlen"),
    ({"dtype": "no-such-dtype"}, TypeError, "dtype.*no-such-dtype"),
])
def test_pad_sequences_bad_arguments(kwargs, err, pattern):
    with pytest.raises(err, match=pattern):
        pad_sequences([[1, 2]], **kwargs)


def test_pad_sequences_bad_arguments_even_when_all_empty():
    with pytest.raises(ValueError, match="padding"):
        pad_sequences([[]], padding="left")


def test_pad_sequences_bad_sequences():
    with pytest.raises(ValueError, match=r"sequences\[1\] is int"):
        pad_sequences([[1], 5])
    with pytest.raises(ValueError, match="list of sequences; got int"):
        pad_sequences(5)
    with pytest.raises(ValueError, match=r"sequences\[0\] cannot be converted"):
        pad_sequences([["a"]])


def _pad_reference(seqs, maxlen, padding, truncating, value):
    """Plain-Python statement of the Keras rule, element by element."""
    if maxlen is None:
        maxlen = max((len(s) for s in seqs), default=0)
    rows = []
    for s in seqs:
        s = list(s)
        if len(s) > maxlen:
            s = s[len(s) - maxlen:] if truncating == "pre" else s[:maxlen]
        pad = [value] * (maxlen - len(s))
        rows.append(pad + s if padding == "pre" else s + pad)
    return np.array(rows, dtype=np.int64).reshape(len(seqs), maxlen)


@settings(max_examples=60, deadline=None)
@given(seqs=st.lists(st.lists(st.integers(-1000, 1000), max_size=8), max_size=6),
       maxlen=st.one_of(st.none(), st.integers(0, 10)),
       padding=st.sampled_from(["pre", "post"]), truncating=st.sampled_from(["pre", "post"]),
       value=st.integers(-5, 5))
def test_pad_sequences_matches_reference(seqs, maxlen, padding, truncating, value):
    out = pad_sequences(seqs, maxlen=maxlen, dtype="int64", padding=padding,
                        truncating=truncating, value=value)
    np.testing.assert_array_equal(out, _pad_reference(seqs, maxlen, padding, truncating, value))
    assert out.dtype == np.int64


# -- text_to_word_sequence / Tokenizer ------------------------------------------------------

def test_text_to_word_sequence():
    assert text_to_word_sequence("Hello, World!  Hello\tthere\n") == \
        ["hello", "world", "hello", "there"]
    assert text_to_word_sequence("A-B c", lower=False) == ["A", "B", "c"]
    assert text_to_word_sequence("a-b c", filters="") == ["a-b", "c"]
    assert text_to_word_sequence("a,b;c", filters=";", split=",") == ["a", "b", "c"]
    with pytest.raises(TypeError, match="input_text must be a str; got list"):
        text_to_word_sequence(["a"])
    with pytest.raises(ValueError, match="split must be a non-empty str"):
        text_to_word_sequence("a", split="")


TEXTS = ["The cat sat on the mat.", "The dog ate my homework!", "My cat, my dog."]


def test_tokenizer_fit_counts_and_index_order():
    tok = Tokenizer()
    tok.fit_on_texts(TEXTS)
    assert tok.document_count == 3
    assert tok.word_counts == {"the": 3, "cat": 2, "sat": 1, "on": 1, "mat": 1, "dog": 2,
                               "ate": 1, "my": 3, "homework": 1}
    assert list(tok.word_counts) == ["the", "cat", "sat", "on", "mat", "dog", "ate", "my",
                                     "homework"]
    assert tok.word_docs == {"the": 2, "cat": 2, "sat": 1, "on": 1, "mat": 1, "dog": 2,
                             "ate": 1, "my": 2, "homework": 1}
    # Frequency descending; ties in order of first appearance; index 0 reserved.
    assert tok.word_index == {"the": 1, "my": 2, "cat": 3, "dog": 4, "sat": 5, "on": 6,
                              "mat": 7, "ate": 8, "homework": 9}
    assert tok.index_word == {i: w for w, i in tok.word_index.items()}
    assert tok.index_docs[1] == 2 and tok.index_docs[9] == 1
    assert tok.texts_to_sequences(["the cat ate THE homework", "unknown words", ""]) == \
        [[1, 3, 8, 1, 9], [], []]


def test_tokenizer_fit_twice_accumulates():
    tok = Tokenizer()
    tok.fit_on_texts(["b a"])
    tok.fit_on_texts(["a c"])
    assert tok.word_counts == {"b": 1, "a": 2, "c": 1}
    assert tok.word_index == {"a": 1, "b": 2, "c": 3}
    assert tok.document_count == 2


def test_tokenizer_num_words_and_oov():
    tok = Tokenizer(num_words=4)
    tok.fit_on_texts(TEXTS)
    assert len(tok.word_index) == 9  # the index keeps every word
    assert tok.texts_to_sequences(["the cat ate my dog zebra"]) == [[1, 3, 2]]
    oov = Tokenizer(num_words=4, oov_token="<unk>")
    oov.fit_on_texts(TEXTS)
    assert oov.word_index["<unk>"] == 1 and oov.word_index["the"] == 2
    # "ate" (index 9) is cut by num_words, "zebra" is unknown: both become the oov index 1.
    assert oov.texts_to_sequences(["the cat ate my zebra"]) == [[2, 1, 1, 3, 1]]
    assert oov.sequences_to_texts([[2, 3, 9, 42, 0]]) == ["the my <unk> <unk> <unk>"]


def test_tokenizer_oov_token_in_texts_keeps_index_1():
    tok = Tokenizer(oov_token="unk")
    tok.fit_on_texts(["unk unk unk a b"])
    assert tok.word_index == {"unk": 1, "a": 2, "b": 3}
    assert tok.index_word == {1: "unk", 2: "a", 3: "b"}


def test_tokenizer_char_level_and_lower():
    tok = Tokenizer(char_level=True)
    tok.fit_on_texts(["abA", "b!"])
    # char_level does not apply filters (as in Keras): "!" is a token.
    assert tok.word_index == {"a": 1, "b": 2, "!": 3}
    assert tok.texts_to_sequences(["ab!z"]) == [[1, 2, 3]]
    assert tok.sequences_to_texts([[2, 1]]) == ["b a"]
    cased = Tokenizer(lower=False)
    cased.fit_on_texts(["Cat cat cat"])
    assert cased.word_index == {"cat": 1, "Cat": 2}
    assert cased.texts_to_sequences(["CAT Cat"]) == [[2]]


def test_tokenizer_filters_and_split():
    tok = Tokenizer(filters="", split=",")
    tok.fit_on_texts(["a-b,c,,a-b"])
    assert tok.word_index == {"a-b": 1, "c": 2}
    tok2 = Tokenizer(filters="x")
    tok2.fit_on_texts(["axb a"])
    assert tok2.word_index == {"a": 1, "b": 2}


def test_tokenizer_pretokenized_lists_and_analyzer():
    tok = Tokenizer()
    tok.fit_on_texts([["New York", "is", "big"], ["new york"]])
    assert tok.word_index == {"new york": 1, "is": 2, "big": 3}
    tok2 = Tokenizer(analyzer=lambda s: s.split("|"))
    tok2.fit_on_texts(["x|y|x"])
    assert tok2.word_index == {"x": 1, "y": 2}


def test_tokenizer_round_trip_sequences_to_texts():
    tok = Tokenizer()
    tok.fit_on_texts(TEXTS)
    texts = ["the dog ate my homework", "my cat sat on the mat"]
    assert tok.sequences_to_texts(tok.texts_to_sequences(texts)) == texts
    assert tok.sequences_to_texts([np.array([1, 3])]) == ["the cat"]


def test_tokenizer_texts_to_matrix_modes():
    tok = Tokenizer(num_words=5)
    tok.fit_on_texts(["a a b", "a c", "d"])  # a:1 b:2 c:3 d:4
    docs = ["a a b e", "c"]
    np.testing.assert_array_equal(tok.texts_to_matrix(docs, mode="binary"),
                                  [[0, 1, 1, 0, 0], [0, 0, 0, 1, 0]])
    np.testing.assert_array_equal(tok.texts_to_matrix(docs, mode="count"),
                                  [[0, 2, 1, 0, 0], [0, 0, 0, 1, 0]])
    np.testing.assert_allclose(tok.texts_to_matrix(docs, mode="freq"),
                               [[0, 2 / 3, 1 / 3, 0, 0], [0, 0, 0, 1, 0]])
    tfidf = tok.texts_to_matrix(docs, mode="tfidf")
    # a: count 2, in 2 of 3 documents; b: count 1, in 1 document.
    assert tfidf[0, 1] == pytest.approx((1 + np.log(2)) * np.log(1 + 3 / 3))
    assert tfidf[0, 2] == pytest.approx(np.log(1 + 3 / 2))
    assert tfidf.dtype == np.float64 and tfidf.shape == (2, 5)
    unlimited = Tokenizer()
    unlimited.fit_on_texts(["a b"])
    assert unlimited.texts_to_matrix(["b"]).shape == (1, 3)
    with pytest.raises(ValueError, match="mode must be one of.*got 'tf'"):
        tok.texts_to_matrix(docs, mode="tf")
    with pytest.raises(ValueError, match="num_words"):
        Tokenizer().texts_to_matrix(["a"])
    with pytest.raises(ValueError, match="tfidf"):
        Tokenizer(num_words=3).sequences_to_matrix([[1]], mode="tfidf")
    with pytest.raises(ValueError, match="indices must be >= 0"):
        tok.sequences_to_matrix([[-1]])


def test_tokenizer_fit_on_sequences_for_tfidf():
    tok = Tokenizer(num_words=4)
    tok.fit_on_sequences([[1, 2, 2], [2, 3]])
    assert tok.document_count == 2 and tok.index_docs == {1: 1, 2: 2, 3: 1}
    m = tok.sequences_to_matrix([[2]], mode="tfidf")
    assert m[0, 2] == pytest.approx(np.log(1 + 2 / 3))


def test_tokenizer_json_round_trip():
    tok = Tokenizer(num_words=6, oov_token="<oov>", lower=False, filters="!.")
    tok.fit_on_texts(TEXTS)
    s = tok.to_json()
    assert json.loads(s)["class_name"] == "Tokenizer"
    back = tokenizer_from_json(s)
    assert back.get_config() == tok.get_config()
    assert back.word_index == tok.word_index and back.index_word == tok.index_word
    assert all(isinstance(k, int) for k in back.index_word)
    assert all(isinstance(k, int) for k in back.index_docs)
    texts = ["The cat ate my zebra", "the dog"]
    assert back.texts_to_sequences(texts) == tok.texts_to_sequences(texts)
    assert back.texts_to_matrix(texts, "tfidf").tolist() == tok.texts_to_matrix(texts,
                                                                                 "tfidf").tolist()
    assert Tokenizer.from_config(tok.get_config()).word_counts == tok.word_counts


def test_tokenizer_reads_keras_json_layout():
    # The layout Keras's Tokenizer.to_json() writes: tables are JSON strings inside JSON.
    keras_json = json.dumps({"class_name": "Tokenizer", "config": {
        "num_words": None, "filters": "!", "lower": True, "split": " ", "char_level": False,
        "oov_token": None, "document_count": 1, "word_counts": '{"b": 2, "a": 1}',
        "word_docs": '{"b": 1, "a": 1}', "index_docs": '{"1": 1, "2": 1}',
        "index_word": '{"1": "b", "2": "a"}', "word_index": '{"b": 1, "a": 2}'}})
    tok = tokenizer_from_json(keras_json)
    assert tok.texts_to_sequences(["a b!"]) == [[2, 1]]
    assert tok.index_word == {1: "b", 2: "a"}


@pytest.mark.parametrize("kwargs, err, pattern", [
    ({"num_words": 0}, ValueError, "num_words must be >= 1 or None; got 0"),
    ({"num_words": 2.0}, TypeError, "num_words must be an int or None; got 2.0"),
    ({"split": ""}, ValueError, "split must be a non-empty str; got ''"),
    ({"oov_token": 1}, TypeError, "oov_token must be a str or None; got 1"),
    ({"filters": None}, TypeError, "filters must be a str; got None"),
    ({"analyzer": "words"}, TypeError, "analyzer must be callable"),
    ({"nb_words": 3}, TypeError, "nb_words"),
])
def test_tokenizer_bad_config(kwargs, err, pattern):
    with pytest.raises(err, match=pattern):
        Tokenizer(**kwargs)


def test_tokenizer_bad_texts():
    tok = Tokenizer()
    with pytest.raises(TypeError, match="single str"):
        tok.fit_on_texts("a single text")
    with pytest.raises(TypeError, match=r"texts\[1\] must be a str or a list of str; got int"):
        tok.fit_on_texts(["ok", 3])
    with pytest.raises(TypeError, match="texts must be a list of str; got int"):
        tok.texts_to_sequences(3)
    with pytest.raises(ValueError, match="not valid JSON"):
        tokenizer_from_json("{not json")
    with pytest.raises(ValueError, match="'config'"):
        tokenizer_from_json("[1, 2]")


# -- to_categorical -------------------------------------------------------------------------

def test_to_categorical_basic():
    out = to_categorical([0, 2, 1])
    np.testing.assert_array_equal(out, [[1, 0, 0], [0, 0, 1], [0, 1, 0]])
    assert out.dtype == np.float32
    assert to_categorical is utils_to_categorical


def test_to_categorical_shapes_and_num_classes():
    assert to_categorical(np.array([[1], [0]]), 4).shape == (2, 4)  # trailing 1 dropped
    assert to_categorical(np.zeros((2, 3), dtype=int), 5).shape == (2, 3, 5)
    np.testing.assert_array_equal(to_categorical(2, num_classes=3), [0, 0, 1])
    np.testing.assert_array_equal(to_categorical([1.0, 0.0], dtype="int64"), [[0, 1], [1, 0]])
    assert to_categorical([1, 0], dtype="int64").dtype == np.int64
    assert to_categorical([], num_classes=3).shape == (0, 3)
    assert to_categorical([True, False]).shape == (2, 2)


@pytest.mark.parametrize("y, kwargs, err, pattern", [
    ([0, 3], {"num_classes": 3}, ValueError, "labels must be < num_classes = 3; got 3"),
    ([0, -1], {}, ValueError, "labels must be >= 0; got -1"),
    ([0.5], {}, ValueError, "whole-number class labels; got 0.5"),
    ([np.nan], {}, ValueError, "whole-number"),
    (["a"], {}, TypeError, "integer class labels; got dtype <U1"),
    ([], {}, ValueError, "num_classes must be given"),
    ([1], {"num_classes": 2.0}, TypeError, "num_classes must be an int or None; got 2.0"),
    ([1], {"num_classes": -2}, ValueError, "num_classes must be >= 1; got -2"),
    ([1], {"dtype": "nope"}, TypeError, "dtype"),
])
def test_to_categorical_errors(y, kwargs, err, pattern):
    with pytest.raises(err, match=pattern):
        to_categorical(y, **kwargs)


# -- train_test_split -----------------------------------------------------------------------

def test_train_test_split_sizes_order_and_partition():
    x = np.arange(20).reshape(10, 2)
    y = list("abcdefghij")
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, seed=0)
    assert x_tr.shape == (7, 2) and x_te.shape == (3, 2)  # ceil(0.25 * 10) = 3 test
    assert isinstance(y_tr, list) and len(y_te) == 3
    # Rows stay aligned across arrays, and train + test is a partition.
    for xs, ys in ((x_tr, y_tr), (x_te, y_te)):
        assert [y[r[0] // 2] for r in xs] == ys
    assert sorted(np.concatenate([x_tr[:, 0], x_te[:, 0]]).tolist()) == list(range(0, 20, 2))


def test_train_test_split_int_size_and_no_shuffle():
    a = np.arange(6)
    a_tr, a_te = train_test_split(a, test_size=2, shuffle=False)
    np.testing.assert_array_equal(a_tr, [0, 1, 2, 3])
    np.testing.assert_array_equal(a_te, [4, 5])


def test_train_test_split_seed_repeatable():
    a = np.arange(100)
    first = train_test_split(a, seed=7)
    second = train_test_split(a, seed=7)
    other = train_test_split(a, seed=8)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert not np.array_equal(first[1], other[1])
    g1, g2 = np.random.default_rng(3), np.random.default_rng(3)
    np.testing.assert_array_equal(train_test_split(a, seed=g1)[1], train_test_split(a, seed=g2)[1])


def test_train_test_split_stratify_keeps_proportions():
    y = np.array([0] * 60 + [1] * 30 + [2] * 10)
    x = np.arange(100)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, stratify=y, seed=1)
    np.testing.assert_array_equal(np.bincount(y_te), [12, 6, 2])
    np.testing.assert_array_equal(np.bincount(y_tr), [48, 24, 8])
    np.testing.assert_array_equal(y[x_te], y_te)
    # Rounding: 7 test samples from classes of 5 and 5 -> 4 + 3 in some order.
    y2 = np.array([0] * 5 + [1] * 5)
    _, t = train_test_split(y2, test_size=7, stratify=y2, seed=0)
    assert sorted(np.bincount(t).tolist()) == [3, 4]
    # One-hot labels stratify by row.
    onehot = to_categorical(y)
    _, te = train_test_split(onehot, test_size=0.2, stratify=onehot, seed=2)
    np.testing.assert_array_equal(te.sum(axis=0), [12, 6, 2])


@pytest.mark.parametrize("args, kwargs, err, pattern", [
    ((np.arange(5), np.arange(4)), {}, ValueError, r"same length; got lengths \[5, 4\]"),
    ((), {}, ValueError, "at least one array"),
    ((np.arange(5),), {"test_size": 1.0}, ValueError, "float test_size must be in \\(0, 1\\); got 1.0"),
    ((np.arange(5),), {"test_size": 5}, ValueError, r"int test_size must be in \[1, 4\].*got 5"),
    ((np.arange(5),), {"test_size": "0.2"}, TypeError, "test_size must be a float or an int"),
    ((np.arange(5),), {"test_size": 0.99}, ValueError, "test_size=0.99 of 5 samples gives 5 test"),
    ((np.arange(1),), {}, ValueError, "at least 2 samples"),
    ((5,), {}, TypeError, r"arrays\[0\] must be an array or a list; got int"),
    ((np.arange(4),), {"stratify": [0, 0, 1, 1], "shuffle": False}, ValueError, "shuffle=True"),
    ((np.arange(4),), {"stratify": [0, 1, 1]}, ValueError, r"one label per sample \(4\)"),
    ((np.arange(4),), {"stratify": [0, 1, 1, 1]}, ValueError, "at least 2 samples; class 0 has 1"),
    ((np.arange(6),), {"stratify": [0, 0, 1, 1, 2, 2], "test_size": 2}, ValueError,
     "3 stratify classes"),
    ((np.arange(6),), {"seed": 1.5}, TypeError, "seed must be an int"),
])
def test_train_test_split_errors(args, kwargs, err, pattern):
    with pytest.raises(err, match=pattern):
        train_test_split(*args, **kwargs)
