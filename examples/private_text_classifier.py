"""Private text classification: the WordNet categories with DP-SGD at epsilon = 1, 3 and 8, next
to the same model trained without privacy.

Model: Embedding -> GlobalAveragePooling1D (padding masked) -> Dense(26, softmax), DPAdam with
per-example clipping; the noise multiplier for each target epsilon comes from the accountant
(nanonet.privacy.compute_noise_multiplier, RDP, delta = 1e-5) for the epochs and batch size
used, batches are Poisson-sampled as the accounting assumes, and PrivacyBudget logs the epsilon
spent per epoch. Needs dp-accounting (pip install "nanonet[privacy]").

Run: python examples/private_text_classifier.py [--subsample N] [--epochs E]
(defaults: 30,000 training examples, 10 epochs, batch 512; a few minutes on 2 cores)
"""
import argparse

import numpy as np

import nanonet as nn
from nanonet.datasets import load_wordnet_categories
from nanonet.layers import Dense, Embedding, GlobalAveragePooling1D
from nanonet.models import Sequential
from nanonet.preprocessing import Tokenizer, pad_sequences, train_test_split

ap = argparse.ArgumentParser()
ap.add_argument("--subsample", type=int, default=30000,
                help="train on this many examples (0: all 69,254)")
ap.add_argument("--epochs", type=int, default=10)
args = ap.parse_args()

texts, labels, class_names = load_wordnet_categories(seed=0)
texts_train, texts_test, y_train, y_test = train_test_split(
    np.array(texts, dtype=object), labels, test_size=0.15, stratify=labels, seed=0)
if args.subsample:
    texts_train, y_train = texts_train[:args.subsample], y_train[:args.subsample]

# A small vocabulary and embedding: DP-SGD noises every coordinate of the table at every step.
tokenizer = Tokenizer(num_words=5000, oov_token="<unk>")
tokenizer.fit_on_texts(list(texts_train))
vocab_size = min(5000, len(tokenizer.word_index) + 1)


def encode(t):
    return pad_sequences(tokenizer.texts_to_sequences(list(t)), maxlen=24)


x_train, x_test = encode(texts_train), encode(texts_test)
n, batch_size, delta = len(x_train), 512, 1e-5


def train(optimizer, sampling="uniform", callbacks=None):
    model = Sequential([Embedding(vocab_size, 32, mask_zero=True), GlobalAveragePooling1D(),
                        Dense(len(class_names), activation="softmax")])
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(x_train, y_train, batch_size=batch_size, epochs=args.epochs,
                        sampling=sampling, callbacks=callbacks, verbose=0)
    return model.evaluate(x_test, y_test, verbose=0)[1], history


print(f"{n} training examples, {len(x_test)} test examples, {args.epochs} epochs, "
      f"batch {batch_size}")
accuracy, _ = train(nn.optimizers.Adam(learning_rate=1e-2))
print(f"non-private: test accuracy {accuracy:.4f}")
for target in (8.0, 3.0, 1.0):
    sigma = nn.privacy.compute_noise_multiplier(target, n, batch_size, args.epochs, delta)
    budget = nn.callbacks.PrivacyBudget(delta=delta)
    opt = nn.optimizers.DPAdam(learning_rate=1e-2, l2_norm_clip=1.0, noise_multiplier=sigma)
    accuracy, history = train(opt, sampling="poisson", callbacks=[budget])
    print(f"epsilon {target:g} (noise multiplier {sigma:.3f}, spent "
          f"{history.history['epsilon'][-1]:.2f}): test accuracy {accuracy:.4f}")
