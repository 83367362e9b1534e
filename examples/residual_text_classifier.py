"""The showcase with a residual LSTM block, written with the Functional API.

    tokens -> Embedding(mask_zero) -> LSTM -> Add([h, LSTM(h)]) -> LayerNormalization
           -> GlobalAveragePooling1D (mask-aware) -> Dense(softmax)

Data: WordNet noun glosses labelled with their lexicographer category (ships with nanonet).
Run: python examples/residual_text_classifier.py [max_samples]   (all 81,476 by default)
"""
import sys

import numpy as np

import nanonet as nn
from nanonet import layers
from nanonet.datasets import load_wordnet_categories
from nanonet.preprocessing import Tokenizer, pad_sequences, train_test_split

nn.set_seed(0)
max_samples = int(sys.argv[1]) if len(sys.argv) > 1 else None
texts, labels, class_names = load_wordnet_categories(max_samples=max_samples, seed=0)
texts_train, texts_test, y_train, y_test = train_test_split(
    np.array(texts, dtype=object), labels, test_size=0.15, stratify=labels, seed=0)

tokenizer = Tokenizer(num_words=20000, oov_token="<unk>")
tokenizer.fit_on_texts(list(texts_train))
vocab_size = min(20000, len(tokenizer.word_index) + 1)


def encode(t):
    return pad_sequences(tokenizer.texts_to_sequences(list(t)), maxlen=24)


x_train, x_test = encode(texts_train), encode(texts_test)

tokens = nn.Input(shape=(24,), dtype="int32", name="tokens")
x = layers.Embedding(vocab_size, 128, mask_zero=True)(tokens)
h = layers.LSTM(128, return_sequences=True)(x)
h = layers.Add()([h, layers.LSTM(128, return_sequences=True)(h)])    # the residual connection
h = layers.LayerNormalization()(h)
v = layers.GlobalAveragePooling1D()(h)                                 # over the unmasked steps
out = layers.Dense(len(class_names), activation="softmax", name="category")(v)
model = nn.Model(tokens, out, name="residual_lstm")
model.summary()

model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(x_train, y_train, epochs=3, batch_size=32, validation_split=0.1)
loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
majority = np.bincount(y_test).max() / len(y_test)
print(f"test accuracy: {accuracy:.4f} (majority class {majority:.4f})")
