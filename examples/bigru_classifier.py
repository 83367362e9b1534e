"""A bidirectional GRU text classifier, written as a Keras user writes it.

Data: WordNet noun glosses labelled with their lexicographer category (ships with nanonet).
Embedding(mask_zero=True) marks the padding, so the backward GRU of each Bidirectional layer
starts at each text's last word. Run: python examples/bigru_classifier.py
"""
import numpy as np

import nanonet as nn
from nanonet.datasets import load_wordnet_categories
from nanonet.layers import GRU, Bidirectional, Dense, Embedding
from nanonet.models import Sequential
from nanonet.preprocessing import Tokenizer, pad_sequences, to_categorical, train_test_split

nn.set_seed(0)
texts, labels, class_names = load_wordnet_categories(seed=0)
num_classes = len(class_names)

texts_train, texts_test, y_train_ids, y_test_ids = train_test_split(
    np.array(texts, dtype=object), labels, test_size=0.15, stratify=labels, seed=0)
texts_train, texts_val, y_train_ids, y_val_ids = train_test_split(
    texts_train, y_train_ids, test_size=0.1, stratify=y_train_ids, seed=0)

tokenizer = Tokenizer(num_words=20000, oov_token="<unk>")
tokenizer.fit_on_texts(list(texts_train))
vocab_size = min(20000, len(tokenizer.word_index) + 1)


def encode(t):
    return pad_sequences(tokenizer.texts_to_sequences(list(t)), maxlen=24)


x_train, x_val, x_test = encode(texts_train), encode(texts_val), encode(texts_test)
y_train, y_val, y_test = (to_categorical(y, num_classes) for y in (y_train_ids, y_val_ids, y_test_ids))

model = Sequential([
    Embedding(vocab_size, 128, mask_zero=True),
    Bidirectional(GRU(64, return_sequences=True)),
    Bidirectional(GRU(64)),
    Dense(num_classes, activation="softmax"),
])
model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
model.fit(x_train, y_train, epochs=3, batch_size=32, validation_data=(x_val, y_val),
          callbacks=[nn.callbacks.EarlyStopping(monitor="val_loss", patience=1,
                                                restore_best_weights=True)])
loss, accuracy = model.evaluate(x_test, y_test)
print(f"test accuracy: {accuracy:.4f}")
