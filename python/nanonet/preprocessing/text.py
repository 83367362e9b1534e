"""Text preprocessing with Keras semantics: ``text_to_word_sequence``, ``Tokenizer``.

A nanonet ``Tokenizer`` behaves like Keras's legacy ``keras.preprocessing.text.Tokenizer``
(same arguments, attributes and indices) and reads and writes the same JSON, so a tokenizer
saved by one loads in the other. Pure Python + NumPy; JSON only, never pickle.
"""
from __future__ import annotations

import json
import numbers
from typing import Any

import numpy as np

__all__ = ["text_to_word_sequence", "Tokenizer", "tokenizer_from_json"]

DEFAULT_FILTERS = '!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n'
MATRIX_MODES = ("binary", "count", "tfidf", "freq")


def text_to_word_sequence(input_text: Any, filters: int = DEFAULT_FILTERS, lower: bool = True,
                          split: Any = " ") -> Any:
    """Split a text into a list of words, as ``keras.preprocessing.text.text_to_word_sequence``.

    Lower-cases (if ``lower``), replaces every character of ``filters`` with ``split``, splits on
    ``split`` and drops empty strings.

    >>> nn.preprocessing.text_to_word_sequence("Hello, World!  hello")
    ['hello', 'world', 'hello']
    """
    if not isinstance(input_text, str):
        raise TypeError(
            f"text_to_word_sequence: input_text must be a str; got {type(input_text).__name__}")
    _check_split("text_to_word_sequence", split)
    if lower:
        input_text = input_text.lower()
    input_text = input_text.translate(str.maketrans({c: split for c in filters}))
    return [w for w in input_text.split(split) if w]


def _check_split(where, split):
    if not isinstance(split, str) or not split:
        raise ValueError(f"{where}: split must be a non-empty str; got {split!r}")


class Tokenizer:
    """Turn texts into sequences of word indices (or into matrices), as Keras's ``Tokenizer``.

    Args:
        num_words: keep only the ``num_words - 1`` most frequent words: an index ``i`` is kept
            by ``texts_to_sequences`` / ``texts_to_matrix`` only when ``i < num_words``.
            ``None`` keeps every word. ``word_index`` always holds every word.
        filters: characters removed from texts (each becomes a separator). Not applied when
            ``char_level`` is true, as in Keras.
        lower: lower-case texts first.
        split: the word separator.
        char_level: every character is a token.
        oov_token: if given, it gets index 1 and replaces out-of-vocabulary words (and words cut
            by ``num_words``) in ``texts_to_sequences``; otherwise such words are dropped.
        analyzer: optional callable ``str -> list of tokens`` used instead of
            ``text_to_word_sequence`` (not saved by ``to_json``, as in Keras).
        document_count: starting value of ``document_count`` (used when loading).

    Attributes (filled by ``fit_on_texts``): ``word_counts`` (word -> count, in order of first
    appearance), ``word_docs`` (word -> number of texts containing it), ``word_index``
    (word -> index, 1-based; index 0 is reserved for padding), ``index_word`` (the inverse),
    ``index_docs`` (index -> number of texts) and ``document_count``.

    Word indices are ordered by count, most frequent first; words with equal counts keep the
    order in which they were first seen (Keras sorts stably).

    A text may also be a list of tokens (already split): it is lower-cased if ``lower`` but not
    filtered or split, as in Keras.

    Difference from Keras: if ``oov_token`` itself occurs in the fitted texts, Keras gives it a
    second index and loses index 1; nanonet keeps it at index 1.

    >>> tok = nn.preprocessing.Tokenizer(oov_token="<unk>")
    >>> tok.fit_on_texts(["the cat sat", "the dog"])
    >>> tok.word_index
    {'<unk>': 1, 'the': 2, 'cat': 3, 'sat': 4, 'dog': 5}
    >>> tok.texts_to_sequences(["the bird sat"])
    [[2, 1, 4]]
    """

    def __init__(self, num_words: int | None = None, filters: int = DEFAULT_FILTERS,
                 lower: bool = True, split: Any = " ", char_level: Any = False,
                 oov_token: str | None = None, analyzer: Any = None,
                 document_count: Any = 0) -> None:
        if num_words is not None:
            if isinstance(num_words, (bool, np.bool_)) or not isinstance(num_words,
                                                                         numbers.Integral):
                raise TypeError(f"Tokenizer: num_words must be an int or None; got {num_words!r}")
            if num_words < 1:
                raise ValueError(f"Tokenizer: num_words must be >= 1 or None; got {num_words}")
            num_words = int(num_words)
        if not isinstance(filters, str):
            raise TypeError(f"Tokenizer: filters must be a str; got {filters!r}")
        _check_split("Tokenizer", split)
        if oov_token is not None and not isinstance(oov_token, str):
            raise TypeError(f"Tokenizer: oov_token must be a str or None; got {oov_token!r}")
        if analyzer is not None and not callable(analyzer):
            raise TypeError(f"Tokenizer: analyzer must be callable or None; got {analyzer!r}")
        if isinstance(document_count, bool) or not isinstance(document_count, numbers.Integral) \
                or document_count < 0:
            raise ValueError(
                f"Tokenizer: document_count must be an int >= 0; got {document_count!r}")
        self.num_words = num_words
        self.filters = filters
        self.lower = bool(lower)
        self.split = split
        self.char_level = bool(char_level)
        self.oov_token = oov_token
        self.analyzer = analyzer
        self.document_count = int(document_count)
        self.word_counts = {}
        self.word_docs = {}
        self.word_index = {}
        self.index_word = {}
        self.index_docs = {}

    def __repr__(self):
        return (f"Tokenizer(num_words={self.num_words!r}, lower={self.lower!r}, "
                f"split={self.split!r}, char_level={self.char_level!r}, "
                f"oov_token={self.oov_token!r}, vocabulary={len(self.word_index)}, "
                f"document_count={self.document_count})")

    # -- text -> tokens ---------------------------------------------------------------------

    def _tokens(self, text, where, i):
        if isinstance(text, list):
            if not all(isinstance(t, str) for t in text):
                raise TypeError(f"Tokenizer.{where}: texts[{i}] must be a str or a list of str")
            return [t.lower() for t in text] if self.lower else text
        if not isinstance(text, str):
            raise TypeError(
                f"Tokenizer.{where}: texts[{i}] must be a str or a list of str; "
                f"got {type(text).__name__}")
        if self.char_level:
            return list(text.lower() if self.lower else text)
        if self.analyzer is not None:
            return self.analyzer(text)
        return text_to_word_sequence(text, self.filters, self.lower, self.split)

    @staticmethod
    def _check_texts(texts, where):
        if isinstance(texts, (str, bytes)):
            raise TypeError(
                f"Tokenizer.{where}: texts must be a list of str; got a single "
                f"{type(texts).__name__} (wrap it in a list)")
        try:
            iter(texts)
        except TypeError:
            raise TypeError(
                f"Tokenizer.{where}: texts must be a list of str; got {type(texts).__name__}"
            ) from None

    # -- fitting ----------------------------------------------------------------------------

    def fit_on_texts(self, texts: Any) -> None:
        """Update the vocabulary from a list of texts (str, or lists of tokens)."""
        self._check_texts(texts, "fit_on_texts")
        for i, text in enumerate(texts):
            seq = self._tokens(text, "fit_on_texts", i)
            self.document_count += 1
            for w in seq:
                self.word_counts[w] = self.word_counts.get(w, 0) + 1
            for w in dict.fromkeys(seq):
                self.word_docs[w] = self.word_docs.get(w, 0) + 1

        # Stable sort: ties keep first-appearance order. The oov token is forced to index 1.
        ranked = sorted(self.word_counts.items(), key=lambda wc: wc[1], reverse=True)
        vocab = [] if self.oov_token is None else [self.oov_token]
        vocab.extend(w for w, _ in ranked if w != self.oov_token)
        self.word_index = {w: i for i, w in enumerate(vocab, start=1)}
        self.index_word = {i: w for w, i in self.word_index.items()}
        self.index_docs = {self.word_index[w]: c for w, c in self.word_docs.items()}

    def fit_on_sequences(self, sequences: Any) -> Any:
        """Update ``document_count`` and ``index_docs`` from index sequences (for tfidf)."""
        self._check_texts(sequences, "fit_on_sequences")
        for seq in sequences:
            self.document_count += 1
            for i in set(seq):
                self.index_docs[i] = self.index_docs.get(i, 0) + 1

    # -- encoding ---------------------------------------------------------------------------

    def texts_to_sequences(self, texts: Any) -> Any:
        """Map each text to a list of word indices (see ``num_words`` and ``oov_token``)."""
        return list(self.texts_to_sequences_generator(texts))

    def texts_to_sequences_generator(self, texts: Any) -> Any:
        """Generator form of ``texts_to_sequences``: yields one list of ints per text."""
        self._check_texts(texts, "texts_to_sequences")
        num_words = self.num_words
        oov_index = self.word_index.get(self.oov_token) if self.oov_token is not None else None
        for n, text in enumerate(texts):
            vect = []
            for w in self._tokens(text, "texts_to_sequences", n):
                i = self.word_index.get(w)
                if i is not None and (num_words is None or i < num_words):
                    vect.append(i)
                elif oov_index is not None:
                    vect.append(oov_index)
            yield vect

    def sequences_to_texts(self, sequences: Any) -> Any:
        """Map index sequences back to space-joined texts (unknown indices dropped, or
        replaced by ``oov_token`` when it is set)."""
        return list(self.sequences_to_texts_generator(sequences))

    def sequences_to_texts_generator(self, sequences: Any) -> Any:
        """Generator form of ``sequences_to_texts``."""
        self._check_texts(sequences, "sequences_to_texts")
        num_words = self.num_words
        oov_index = self.word_index.get(self.oov_token) if self.oov_token is not None else None
        for seq in sequences:
            words = []
            for num in seq:
                word = self.index_word.get(int(num))
                if word is not None and (num_words is None or num < num_words):
                    words.append(word)
                elif oov_index is not None:
                    words.append(self.index_word[oov_index])
            yield " ".join(words)

    def texts_to_matrix(self, texts: Any, mode: str = "binary") -> Any:
        """Encode texts as a ``(len(texts), num_words)`` float64 matrix; see
        ``sequences_to_matrix``."""
        if mode not in MATRIX_MODES:
            raise ValueError(
                f"Tokenizer.texts_to_matrix: mode must be one of {MATRIX_MODES}; got {mode!r}")
        return self.sequences_to_matrix(self.texts_to_sequences(texts), mode=mode)

    def sequences_to_matrix(self, sequences: Any, mode: str = "binary") -> Any:
        """Encode index sequences as a float64 matrix of shape ``(len(sequences), V)``.

        ``V`` is ``num_words``, or ``len(word_index) + 1`` when ``num_words`` is None; indices
        ``>= V`` are ignored. Modes, for index j in sequence i with count c:
        "binary": 1; "count": c; "freq": c / len(sequence i);
        "tfidf": (1 + log c) * log(1 + document_count / (1 + index_docs[j])).
        """
        if mode not in MATRIX_MODES:
            raise ValueError(
                f"Tokenizer.sequences_to_matrix: mode must be one of {MATRIX_MODES}; "
                f"got {mode!r}")
        self._check_texts(sequences, "sequences_to_matrix")
        if self.num_words is not None:
            width = self.num_words
        elif self.word_index:
            width = len(self.word_index) + 1
        else:
            raise ValueError(
                "Tokenizer.sequences_to_matrix: the width is unknown; set num_words or call "
                "fit_on_texts first (num_words=None and the vocabulary is empty)")
        if mode == "tfidf" and not self.document_count:
            raise ValueError(
                "Tokenizer.sequences_to_matrix: mode='tfidf' needs document counts; call "
                "fit_on_texts or fit_on_sequences first (document_count=0)")
        sequences = list(sequences)
        x = np.zeros((len(sequences), width), dtype=np.float64)
        for i, seq in enumerate(sequences):
            if not len(seq):
                continue
            counts = {}
            for j in seq:
                j = int(j)
                if j < 0:
                    raise ValueError(
                        f"Tokenizer.sequences_to_matrix: indices must be >= 0; "
                        f"sequences[{i}] holds {j}")
                if j < width:
                    counts[j] = counts.get(j, 0) + 1
            for j, c in counts.items():
                if mode == "count":
                    x[i, j] = c
                elif mode == "freq":
                    x[i, j] = c / len(seq)
                elif mode == "binary":
                    x[i, j] = 1
                else:
                    tf = 1 + np.log(c)
                    idf = np.log(1 + self.document_count / (1 + self.index_docs.get(j, 0)))
                    x[i, j] = tf * idf
        return x

    # -- saving -----------------------------------------------------------------------------

    def get_config(self) -> dict[str, Any]:
        """The configuration and vocabulary as a dict of JSON-ready values (Keras's layout:
        the five vocabulary tables are JSON strings)."""
        return {
            "num_words": self.num_words,
            "filters": self.filters,
            "lower": self.lower,
            "split": self.split,
            "char_level": self.char_level,
            "oov_token": self.oov_token,
            "document_count": self.document_count,
            "word_counts": json.dumps(self.word_counts),
            "word_docs": json.dumps(self.word_docs),
            "index_docs": json.dumps(self.index_docs),
            "index_word": json.dumps(self.index_word),
            "word_index": json.dumps(self.word_index),
        }

    @classmethod
    def from_config(cls, config: Any) -> Any:
        """Rebuild a tokenizer from ``get_config()``'s dict."""
        if not isinstance(config, dict):
            raise TypeError(f"Tokenizer.from_config: config must be a dict; got {config!r}")
        config = dict(config)
        tables = {}
        for key in ("word_counts", "word_docs", "index_docs", "index_word", "word_index"):
            raw = config.pop(key, "{}")
            try:
                tables[key] = json.loads(raw) if isinstance(raw, str) else dict(raw)
            except (ValueError, TypeError) as e:
                raise ValueError(
                    f"Tokenizer.from_config: {key} must be a JSON object; got {raw!r:.80}"
                ) from e
        try:
            tok = cls(**config)
        except TypeError as e:
            raise TypeError(f"Tokenizer.from_config: bad config keys: {e}") from e
        # JSON turns integer keys into strings; turn them back.
        tok.word_counts = tables["word_counts"]
        tok.word_docs = tables["word_docs"]
        tok.index_docs = {int(k): v for k, v in tables["index_docs"].items()}
        tok.index_word = {int(k): v for k, v in tables["index_word"].items()}
        tok.word_index = tables["word_index"]
        return tok

    def to_json(self, **kwargs: Any) -> Any:
        """A JSON string ``{"class_name": "Tokenizer", "config": get_config()}``; kwargs go to
        ``json.dumps``. Load it with ``tokenizer_from_json``."""
        return json.dumps({"class_name": type(self).__name__, "config": self.get_config()},
                          **kwargs)


def tokenizer_from_json(json_string: Any) -> Any:
    """Rebuild a ``Tokenizer`` from ``Tokenizer.to_json()`` (nanonet's or Keras's).

    Args:
        json_string (str): what ``Tokenizer.to_json()`` returned.

    Returns:
        Tokenizer: with the same configuration and vocabulary.

    Raises:
        ValueError: json_string is not valid JSON or not a tokenizer's.

    Example:

    >>> tok = nn.preprocessing.Tokenizer()
    >>> tok.fit_on_texts(["the cat sat", "the dog"])
    >>> again = nn.preprocessing.tokenizer_from_json(tok.to_json())
    >>> again.texts_to_sequences(["the dog sat"])
    [[1, 4, 3]]
    """
    try:
        data = json.loads(json_string)
    except (TypeError, ValueError) as e:
        raise ValueError(f"tokenizer_from_json: json_string is not valid JSON: {e}") from e
    if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
        raise ValueError(
            "tokenizer_from_json: expected an object with a 'config' object; "
            f"got {str(json_string)[:80]!r}")
    return Tokenizer.from_config(data["config"])
