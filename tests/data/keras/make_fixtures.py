"""Write the Keras 3 fixture files of tests/test_keras_files.py (run with Keras 3 installed):

    KERAS_BACKEND=torch python tests/data/keras/make_fixtures.py

For each model: <name>.keras (the whole model), <name>.weights.h5 (weights only) and
<name>_expected.npz (inputs "x" and Keras's predictions "y"). Every weight is random (biases and
normalisation statistics included) so a weight loaded into the wrong place shows.
"""
import os

import keras
import numpy as np
from keras import layers

HERE = os.path.dirname(os.path.abspath(__file__))


def randomize(model, rng):
    model.set_weights([rng.uniform(0.2, 1.0, w.shape).astype("float32")
                       if "variance" in v.path else
                       rng.normal(0, 0.5, w.shape).astype("float32")
                       for w, v in zip(model.get_weights(), model.weights)])


def tokens(rng, b=6, t=7, vocab=30):
    x = rng.integers(1, vocab, size=(b, t)).astype("int32")
    x[1, 4:] = 0          # post-padded
    x[2, :3] = 0          # pre-padded
    x[3, 1:] = 0          # one real token
    return x


def models(rng):
    out = {}
    out["mlp"] = (keras.Sequential([keras.Input((6,)), layers.Dense(8, activation="relu"),
                                    layers.Dense(5, activation="tanh"),
                                    layers.Dense(3, activation="softmax")], name="mlp"),
                  rng.normal(size=(5, 6)).astype("float32"))
    for mask in (False, True):
        m = keras.Sequential([keras.Input((None,), dtype="int32"),
                              layers.Embedding(30, 8, mask_zero=mask),
                              layers.LSTM(6, return_sequences=True), layers.LSTM(5),
                              layers.Dense(4, activation="softmax")], name="showcase")
        out["showcase_masked" if mask else "showcase"] = (m, tokens(rng))
    i = keras.Input((4,), name="x")
    a = layers.Dense(5, name="left")(i)
    b = layers.Dense(5, activation="relu", name="right")(i)
    s = layers.Add()([a, b])
    c = layers.Concatenate()([s, layers.Multiply()([a, b])])
    o = layers.Dense(2, activation="sigmoid")(c)
    out["functional_merge"] = (keras.Model(i, o, name="merge"),
                               rng.normal(size=(5, 4)).astype("float32"))
    i = keras.Input((6,))
    h = layers.Dense(7)(i)
    h = layers.BatchNormalization()(h)
    h = layers.Activation("relu")(h)
    h = layers.LayerNormalization()(h)
    o = layers.Dense(3)(h)
    out["norm"] = (keras.Model(i, o, name="norm"), rng.normal(size=(5, 6)).astype("float32"))
    i = keras.Input((5, 8))
    h = layers.MultiHeadAttention(2, 4)(i, i)
    h = layers.GlobalAveragePooling1D()(h)
    o = layers.Dense(3)(h)
    out["mha"] = (keras.Model(i, o, name="mha"), rng.normal(size=(3, 5, 8)).astype("float32"))
    return out


def main():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    for name, (model, x) in models(rng).items():
        randomize(model, rng)
        model.save(os.path.join(HERE, f"{name}.keras"))
        model.save_weights(os.path.join(HERE, f"{name}.weights.h5"))
        y = np.asarray(model.predict(x, verbose=0))
        np.savez(os.path.join(HERE, f"{name}_expected.npz"), x=x, y=y)
    # Refused: a Lambda layer (its file holds Python bytecode, which nanonet never runs).
    lam = keras.Sequential([keras.Input((3,)), layers.Lambda(lambda t: t * 2.0)])
    lam.save(os.path.join(HERE, "lambda.keras"), zipped=True)


if __name__ == "__main__":
    main()
