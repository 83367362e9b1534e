"""The showcase task with a small Transformer encoder, written with the Functional API.

    tokens -> TokenAndPositionEmbedding(mask_zero) -> 2 x [MultiHeadAttention(4 heads, key_dim 32)
           + residual -> LayerNormalization -> Dense(relu) -> Dense + residual
           -> LayerNormalization] -> GlobalAveragePooling1D (mask-aware) -> Dense(softmax)

The padding mask (id 0) of the embedding reaches each attention layer as its key mask and the
pooling as its step mask. `python -m nanonet demo --model transformer` trains the same model.
Data: WordNet noun glosses labelled with their lexicographer category (ships with nanonet).
Run: python examples/transformer_classifier.py [max_samples]   (all 81,476 by default)
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
maxlen = 24


def encode(t):
    return pad_sequences(tokenizer.texts_to_sequences(list(t)), maxlen=maxlen)


x_train, x_test = encode(texts_train), encode(texts_test)


def encoder_block(x, num_heads=4, key_dim=32, ff_dim=128):
    d = x.shape[-1]
    h = layers.MultiHeadAttention(num_heads, key_dim)(x, x)            # self-attention
    x = layers.LayerNormalization(epsilon=1e-6)(layers.Add()([x, h]))  # residual + norm
    h = layers.Dense(d)(layers.Dense(ff_dim, activation="relu")(x))    # feed-forward
    return layers.LayerNormalization(epsilon=1e-6)(layers.Add()([x, h]))


tokens = nn.Input(shape=(maxlen,), dtype="int32", name="tokens")
x = layers.TokenAndPositionEmbedding(vocab_size, maxlen, 128, mask_zero=True)(tokens)
for _ in range(2):
    x = encoder_block(x)
v = layers.GlobalAveragePooling1D()(x)                                 # over the unmasked steps
out = layers.Dense(len(class_names), activation="softmax", name="category")(v)
model = nn.Model(tokens, out, name="transformer")
model.summary()

model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
stop = nn.callbacks.EarlyStopping(monitor="val_loss", patience=1, restore_best_weights=True)
model.fit(x_train, y_train, epochs=3, batch_size=32, validation_split=0.1, callbacks=[stop])
loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
majority = np.bincount(y_test).max() / len(y_test)
print(f"test accuracy: {accuracy:.4f} (majority class {majority:.4f})")
