"""Data preparation with Keras names: padding, tokenizing, one-hot labels, splitting.

Pure Python + NumPy; nothing here touches the compiled core.

- ``pad_sequences``: pad / truncate ragged sequences to one length (Keras semantics).
- ``Tokenizer``, ``text_to_word_sequence``, ``tokenizer_from_json``: Keras's text tokenizer,
  saved as JSON.
- ``to_categorical``: one-hot labels (also ``nanonet.utils.to_categorical``).
- ``train_test_split``: random, optionally stratified, train/test split (scikit-learn order).
"""

from ..utils import to_categorical
from .sequence import pad_sequences
from .split import train_test_split
from .text import Tokenizer, text_to_word_sequence, tokenizer_from_json

__all__ = [
    "pad_sequences",
    "Tokenizer",
    "text_to_word_sequence",
    "tokenizer_from_json",
    "to_categorical",
    "train_test_split",
]
