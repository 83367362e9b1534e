"""Preprocessing layers (layers/preprocessing.py): TextVectorization, StringLookup and
IntegerLookup against Keras 3's documented behaviour, inside models (predict / fit / evaluate on
strings), saved and reloaded exactly, and their errors."""
import collections
import json
import math
import zipfile

import numpy as np
import pytest

import nanonet as nn
from nanonet.layers import IntegerLookup, StringLookup, TextVectorization

TEXTS = ["The cat sat on the mat.", "The dog ate my homework!", "A cat, a dog: friends?",
         "the end"]


def _keras_order(counts):
    """Keras's adapt order, written out: count descending, ties by token descending."""
    return [t for t, _ in sorted(counts.items(), key=lambda tc: (-tc[1], tuple(
        -b for b in tc[0].encode())))]


def _standardized_tokens(text):
    punct = "!\"#$%&()*+,-./:;<=>?@[\\]^_`{|}~'"
    return "".join(c for c in text.lower() if c not in punct).split()


# -- TextVectorization ----------------------------------------------------------------------------
def test_adapt_orders_the_vocabulary_as_keras():
    tv = TextVectorization()
    tv.adapt(TEXTS)
    counts = collections.Counter(t for text in TEXTS for t in _standardized_tokens(text))
    assert tv.get_vocabulary() == ["", "[UNK]"] + _keras_order(counts)
    assert tv.get_vocabulary(include_special_tokens=False) == _keras_order(counts)
    assert tv.vocabulary_size() == len(counts) + 2


def test_int_output_pads_truncates_and_maps_oov_to_one():
    tv = TextVectorization(output_sequence_length=5)
    tv.adapt(TEXTS)
    vocab = tv.get_vocabulary()
    out = tv(np.array(["The CAT sat, unseen!", "a b c d e f g"], dtype=object))
    assert out.dtype == np.int64 and out.shape == (2, 5)
    want0 = [vocab.index("the"), vocab.index("cat"), vocab.index("sat"), 1, 0]
    assert out[0].tolist() == want0
    assert out[1].tolist() == [vocab.index("a"), 1, 1, 1, 1]  # cut at 5, unknowns are 1
    # without output_sequence_length a batch is padded to its longest text
    free = TextVectorization(vocabulary=tv.get_vocabulary())
    ragged = free(["the cat", "the"])
    assert ragged.shape == (2, 2) and ragged[1, 1] == 0 and ragged[1, 0] == vocab.index("the")


def test_max_tokens_counts_the_special_tokens():
    tv = TextVectorization(max_tokens=4)
    tv.adapt(TEXTS)
    counts = collections.Counter(t for text in TEXTS for t in _standardized_tokens(text))
    assert tv.get_vocabulary() == ["", "[UNK]"] + _keras_order(counts)[:2]


@pytest.mark.parametrize("standardize,split,text,tokens", [
    ("lower", "whitespace", "Hi, There", ["hi,", "there"]),
    ("strip_punctuation", "whitespace", "Hi, There", ["Hi", "There"]),
    (None, "whitespace", "Hi, There", ["Hi,", "There"]),
    ("lower_and_strip_punctuation", "character", "A b!", ["a", " ", "b"]),
    ("lower", None, "One Text", ["one text"]),
])
def test_standardize_and_split_modes(standardize, split, text, tokens):
    tv = TextVectorization(standardize=standardize, split=split)
    tv.adapt([text])
    got = [tv.get_vocabulary()[i] for i in tv([text])[0] if i]
    assert got == tokens


def test_ngrams_add_joined_grams():
    tv = TextVectorization(ngrams=2)
    tv.adapt(["a b c"])
    assert set(tv.get_vocabulary()[2:]) == {"a", "b", "c", "a b", "b c"}
    tv3 = TextVectorization(ngrams=(3,))
    tv3.adapt(["a b c d"])
    assert set(tv3.get_vocabulary()[2:]) == {"a b c", "b c d"}


def test_multi_hot_count_and_tf_idf():
    docs = ["a a b", "b c", "c c c d"]
    count = TextVectorization(output_mode="count")
    count.adapt(docs)
    vocab = count.get_vocabulary()
    assert vocab[0] == "[UNK]"  # no mask token outside int mode
    got = count(["a a b zz"])
    want = np.zeros((1, len(vocab)), np.float32)
    for t in ["a", "a", "b"]:
        want[0, vocab.index(t)] += 1
    want[0, 0] = 1  # zz is OOV
    np.testing.assert_array_equal(got, want)
    multi = TextVectorization(output_mode="multi_hot", vocabulary=vocab)
    np.testing.assert_array_equal(multi(["a a b zz"]), np.minimum(want, 1))
    tfidf = TextVectorization(output_mode="tf_idf")
    tfidf.adapt(docs)
    tv_vocab = tfidf.get_vocabulary()
    df = {t: sum(t in d.split() for d in docs) for t in "abcd"}
    idf = {t: math.log(1 + len(docs) / (1 + df[t])) for t in "abcd"}
    got = tfidf(["c c a"])[0]
    assert got[tv_vocab.index("c")] == pytest.approx(2 * idf["c"], rel=1e-6)
    assert got[tv_vocab.index("a")] == pytest.approx(idf["a"], rel=1e-6)
    assert got[tv_vocab.index("b")] == 0
    # tf_idf needs idf weights with a given vocabulary
    with pytest.raises(ValueError, match="idf_weights"):
        TextVectorization(output_mode="tf_idf", vocabulary=["a"])


def test_vocabulary_argument_and_set_vocabulary():
    tv = TextVectorization(vocabulary=["", "[UNK]", "x", "y"])  # leading specials skipped
    assert tv.get_vocabulary() == ["", "[UNK]", "x", "y"]
    assert tv(["y x z"])[0].tolist() == [3, 2, 1]
    tv.set_vocabulary(["q"])
    assert tv(["q x"])[0].tolist() == [2, 1]
    with pytest.raises(ValueError, match="cannot adapt"):
        tv.adapt(["more"])
    with pytest.raises(ValueError, match="twice"):
        TextVectorization(vocabulary=["a", "a"])


@pytest.mark.parametrize("kwargs,err,msg", [
    ({"output_mode": "binary"}, ValueError, "output_mode must be one of"),
    ({"max_tokens": 0}, ValueError, "max_tokens must be >= 1"),
    ({"max_tokens": 2.5}, TypeError, "max_tokens must be an int"),
    ({"standardize": "upper"}, ValueError, "standardize must be"),
    ({"split": "comma"}, ValueError, "split must be"),
    ({"ngrams": 0}, ValueError, "ngrams must be"),
    ({"output_sequence_length": 0}, ValueError, "output_sequence_length must be"),
    ({"output_mode": "count", "output_sequence_length": 3}, ValueError, "only used with"),
    ({"sparse": True}, ValueError, "sparse=True is not supported"),
    ({"ragged": True}, ValueError, "ragged=True is not supported"),
])
def test_bad_arguments_name_the_argument(kwargs, err, msg):
    with pytest.raises(err, match=msg):
        TextVectorization(**kwargs)


def test_bad_inputs_raise_value_errors():
    tv = TextVectorization(vocabulary=["a"])
    with pytest.raises(ValueError, match="expects strings"):
        tv(np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"\(batch,\) or \(batch, 1\)"):
        tv(np.array([["a", "b"]], dtype=object))
    with pytest.raises(ValueError, match="vocabulary is empty"):
        TextVectorization(output_mode="count")(["a"])


def test_callable_standardize_works_but_is_not_saved(tmp_path):
    tv = TextVectorization(standardize=lambda s: s.upper())
    tv.adapt(["ab cd"])
    assert tv.get_vocabulary()[2:] == ["CD", "AB"]
    with pytest.raises(ValueError, match="cannot be saved"):
        tv.get_config()


# -- StringLookup / IntegerLookup -----------------------------------------------------------------
def test_string_lookup_layouts():
    lookup = StringLookup(vocabulary=["a", "b", "c"])
    assert lookup(np.array([["a", "c", "d"]], dtype=object)).tolist() == [[1, 3, 0]]
    assert lookup.get_vocabulary() == ["[UNK]", "a", "b", "c"]
    masked = StringLookup(vocabulary=["a", "b"], mask_token="")
    assert masked.get_vocabulary() == ["", "[UNK]", "a", "b"]
    assert masked(["", "b", "zz"]).tolist() == [0, 3, 1]
    strict = StringLookup(vocabulary=["a"], num_oov_indices=0)
    assert strict(["a"]).tolist() == [0]
    with pytest.raises(ValueError, match="not in the vocabulary"):
        strict(["b"])
    buckets = StringLookup(vocabulary=["a"], num_oov_indices=3)
    ids = buckets([f"w{i}" for i in range(50)] + ["a"])
    assert set(ids[:-1].tolist()) <= {0, 1, 2} and len(set(ids[:-1].tolist())) > 1
    assert ids[-1] == 3
    np.testing.assert_array_equal(buckets(["w7"]), buckets(["w7"]))  # deterministic


def test_string_lookup_adapt_invert_and_one_hot():
    lookup = StringLookup()
    lookup.adapt(np.array([["b", "a", "b"], ["c", "b", "a"]], dtype=object))
    assert lookup.get_vocabulary() == ["[UNK]", "b", "a", "c"]  # counts 3, 2, 1
    inv = StringLookup(vocabulary=lookup.get_vocabulary(), invert=True)
    assert inv(np.array([[1, 3, 0, 9]])).tolist() == [["b", "c", "[UNK]", "[UNK]"]]
    onehot = StringLookup(vocabulary=["b", "a"], output_mode="one_hot")
    np.testing.assert_array_equal(onehot(["a", "q"]), np.array([[0, 0, 1], [1, 0, 0]], np.float32))
    multi = StringLookup(vocabulary=["b", "a"], output_mode="multi_hot")
    np.testing.assert_array_equal(multi([["a", "b", "a"]]), np.array([[0, 1, 1]], np.float32))


def test_integer_lookup():
    lookup = IntegerLookup(vocabulary=[12, 36, 1138, 42])
    assert lookup(np.array([[12, 1138, 42], [42, 1000, 36]])).tolist() == [[1, 3, 4], [4, 0, 2]]
    assert lookup.get_vocabulary() == [-1, 12, 36, 1138, 42]
    adapted = IntegerLookup(max_tokens=3)
    adapted.adapt(np.array([5, 5, 7, 7, 7, 9]))
    assert adapted.get_vocabulary() == [-1, 7, 5]
    inv = IntegerLookup(vocabulary=[12, 36], invert=True)
    assert inv(np.array([2, 0])).tolist() == [36, -1]
    with pytest.raises(ValueError, match="expects integers"):
        lookup(np.array(["a"]))
    with pytest.raises(TypeError, match="must be an int"):
        IntegerLookup(vocabulary=["a"])


# -- in models ------------------------------------------------------------------------------------
CORPUS = ["a small domesticated carnivore", "a large wild cat of africa",
          "a hand tool for cutting", "a machine that cuts wood", "a feline pet that purrs",
          "a power tool with a blade"]
LABELS = np.array([0, 0, 1, 1, 0, 1])


def _text_model(shape=(1,), seed=0):
    nn.set_seed(seed)
    tv = TextVectorization(max_tokens=40, output_sequence_length=6)
    tv.adapt(CORPUS)
    text = nn.Input(shape=shape, dtype="string")
    h = nn.layers.Embedding(40, 8)(tv(text))
    h = nn.layers.LSTM(8)(h)
    model = nn.Model(text, nn.layers.Dense(2, activation="softmax")(h))
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model, tv


@pytest.mark.parametrize("shape", [(1,), ()])
def test_predict_fit_evaluate_on_strings(shape):
    model, tv = _text_model(shape)
    assert model.inputs[0].dtype == "string"
    before = model.get_weights()
    history = model.fit(CORPUS * 4, np.tile(LABELS, 4),
                        epochs=3, batch_size=8, verbose=0)
    assert len(history.history["loss"]) == 3
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert tv.weights == []  # nothing to train in the vectorizer
    loss, acc = model.evaluate(np.array(CORPUS), LABELS, verbose=0)
    assert np.isfinite(loss) and 0 <= acc <= 1
    p = model.predict(["a small domesticated carnivore"], verbose=0)
    assert p.shape == (1, 2) and np.allclose(p.sum(), 1, atol=1e-5)
    np.testing.assert_allclose(model.predict(np.array([["a small domesticated carnivore"]]),
                                             verbose=0), p, rtol=1e-6)
    np.testing.assert_allclose(model(np.array(CORPUS[:1], dtype=object)), p, rtol=1e-6)


def test_string_inputs_are_never_cast_to_numbers():
    model, _ = _text_model()
    with pytest.raises(ValueError, match="must hold strings"):
        model.predict(np.array([[1.0]]), verbose=0)
    with pytest.raises(ValueError, match="single str"):
        model.predict("a text", verbose=0)


def test_sequential_starting_with_text_vectorization(tmp_path):
    tv = TextVectorization(max_tokens=40, output_sequence_length=6)
    tv.adapt(CORPUS)
    model = nn.Sequential([tv, nn.layers.Embedding(40, 4), nn.layers.GlobalAveragePooling1D(),
                           nn.layers.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(CORPUS, LABELS, epochs=2, verbose=0)
    p = model.predict(["a feline pet"], verbose=0)
    path = tmp_path / "seq.nnet"
    model.save(path)
    again = nn.load_model(path)
    np.testing.assert_array_equal(again.predict(["a feline pet"], verbose=0), p)
    assert again.layers[0].get_vocabulary() == tv.get_vocabulary()


def test_vocabulary_saved_as_json_and_reloaded_exactly(tmp_path):
    model, tv = _text_model()
    tv_vocab = tv.get_vocabulary()
    path = tmp_path / "text.nnet"
    model.class_names = ["animal", "artifact"]
    model.save(path)
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        manifest = json.loads(zf.read("nanonet.json"))
    assert all(n == "nanonet.json" or n.endswith(".npy") for n in names)
    layer_configs = [lc for lc in manifest["model"]["config"]["layers"]
                     if lc["class_name"] == "TextVectorization"]
    assert layer_configs[0]["config"]["vocabulary"] == tv_vocab[2:]
    assert manifest["class_names"] == ["animal", "artifact"]
    again = nn.load_model(path)
    tv2 = next(lay for lay in again.layers if isinstance(lay, TextVectorization))
    assert tv2.get_vocabulary() == tv_vocab
    assert again.class_names == ["animal", "artifact"]
    np.testing.assert_array_equal(again.predict(CORPUS, verbose=0),
                                  model.predict(CORPUS, verbose=0))


def test_unicode_and_tf_idf_vocabularies_round_trip(tmp_path):
    texts = ["café crème", "naïve café", "日本 語 café"]
    tv = TextVectorization(output_mode="tf_idf")
    tv.adapt(texts)
    inp = nn.Input(shape=(), dtype="string")
    model = nn.Model(inp, nn.layers.Dense(3)(tv(inp)))
    path = tmp_path / "u.nnet"
    model.save(path)
    again = nn.load_model(path)
    tv2 = again.layers[1]
    assert tv2.get_vocabulary() == tv.get_vocabulary()
    np.testing.assert_array_equal(tv2(texts), tv(texts))
    np.testing.assert_array_equal(again.predict(texts, verbose=0), model.predict(texts,
                                                                                 verbose=0))


def test_lookup_layers_round_trip_in_a_model(tmp_path):
    ids = nn.Input(shape=(3,), dtype="int64")
    lookup = IntegerLookup(vocabulary=[10, 20, 30], output_mode="multi_hot")
    model = nn.Model(ids, nn.layers.Dense(2)(lookup(ids)))
    x = np.array([[10, 30, 99], [20, 20, 20]])
    path = tmp_path / "i.nnet"
    model.save(path)
    np.testing.assert_array_equal(nn.load_model(path).predict(x, verbose=0),
                                  model.predict(x, verbose=0))
    words = nn.Input(shape=(2,), dtype="string")
    slookup = StringLookup(vocabulary=["x", "y"], mask_token="")
    model2 = nn.Model(words, nn.layers.Embedding(4, 2)(slookup(words)))
    model2.save(path)
    w = np.array([["x", ""], ["y", "zz"]], dtype=object)
    np.testing.assert_array_equal(nn.load_model(path).predict(w, verbose=0),
                                  model2.predict(w, verbose=0))


# -- class names ------------------------------------------------------------------------------------
def test_class_names_validation_and_old_files():
    model, _ = _text_model()
    assert model.class_names is None
    model.class_names = ("a", "b")
    assert model.class_names == ["a", "b"]
    with pytest.raises(TypeError, match="list of strings"):
        model.class_names = "ab"
    with pytest.raises(ValueError, match=r"class_names\[1\] must be a non-empty string"):
        model.class_names = ["a", 3]
    model.class_names = None
    assert model.class_names is None
    import pathlib
    old = pathlib.Path(__file__).parent / "data" / "v0_1_sequential_mlp.nnet"
    assert nn.load_model(old).class_names is None
