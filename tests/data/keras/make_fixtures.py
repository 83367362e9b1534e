"""Write the Keras 3 fixture files of tests/test_keras_files.py (run with Keras 3 installed):

    KERAS_BACKEND=torch python tests/data/keras/make_fixtures.py [round ...]

For each model: <name>.keras (the whole model), <name>.weights.h5 (weights only) and
<name>_expected.npz (inputs "x" and Keras's predictions "y"). Every weight is random (biases and
normalisation statistics included) so a weight loaded into the wrong place shows.
"""
import os
import sys

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


def models_2(rng):
    """The layers added in the second round (recurrent, convolutional, image preprocessing,
    attention with call options); a separate rng so the first round's files stay as they are."""
    out = {}
    i = keras.Input((7, 4))
    g = layers.GRU(5, return_sequences=True)(i)
    g = layers.GRU(3, reset_after=False, return_sequences=True)(g)
    s = layers.SimpleRNN(4, return_sequences=True, activation="relu")(i)
    b = layers.Bidirectional(layers.GRU(3, return_sequences=True))(i)
    h = layers.Concatenate()([g, s, b])
    h = layers.Bidirectional(layers.LSTM(2), merge_mode="sum")(h)
    o = layers.Dense(3)(h)
    out["recurrent"] = (keras.Model(i, o, name="recurrent"),
                        rng.normal(size=(4, 7, 4)).astype("float32"))
    out["recurrent_masked"] = (keras.Sequential([
        keras.Input((None,), dtype="int32"), layers.Embedding(30, 6, mask_zero=True),
        layers.Bidirectional(layers.GRU(4, return_sequences=True)),
        layers.Bidirectional(layers.SimpleRNN(3)), layers.Dense(2)], name="recurrent_masked"),
        tokens(rng))
    out["conv1d"] = (keras.Sequential([
        keras.Input((12, 3)), layers.Conv1D(4, 3, padding="same", activation="relu"),
        layers.MaxPooling1D(2), layers.Conv1D(5, 2, strides=2, dilation_rate=1),
        layers.AveragePooling1D(2, padding="same"), layers.GlobalMaxPooling1D(),
        layers.Dense(2)], name="conv1d"), rng.normal(size=(3, 12, 3)).astype("float32"))
    i = keras.Input((9, 9, 3))
    h = layers.Rescaling(0.5, offset=-0.25)(i)
    h = layers.RandomFlip()(h)
    h = layers.RandomRotation(0.1)(h)
    h = layers.RandomTranslation(0.1, 0.2)(h)
    h = layers.RandomZoom(0.1)(h)
    h = layers.RandomContrast(0.2)(h)
    h = layers.ZeroPadding2D(((1, 0), (0, 1)))(h)
    h = layers.Conv2D(4, 3, activation="relu")(h)
    h = layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same")(h)
    h = layers.SeparableConv2D(5, 3, padding="same", activation="tanh")(h)
    h = layers.MaxPooling2D(2)(h)
    h = layers.UpSampling2D(2)(h)
    h = layers.Cropping2D(((1, 0), (0, 1)))(h)
    h = layers.AveragePooling2D(2, strides=1)(h)
    c = layers.Concatenate()([layers.GlobalAveragePooling2D()(h),
                              layers.GlobalMaxPooling2D()(h)])
    o = layers.Dense(3)(c)
    out["conv2d"] = (keras.Model(i, o, name="conv2d"),
                     rng.normal(size=(2, 9, 9, 3)).astype("float32"))
    out["resizing"] = (keras.Sequential([
        keras.Input((6, 8, 2)), layers.Resizing(4, 5), layers.Flatten(), layers.Dense(2)],
        name="resizing"), rng.normal(size=(2, 6, 8, 2)).astype("float32"))
    i = keras.Input((5, 6))
    a = layers.Attention(use_scale=True)([i, i], use_causal_mask=True)
    b = layers.AdditiveAttention()([i, i, i])
    c = layers.Attention(score_mode="concat")([i, i])
    d = layers.MultiHeadAttention(2, 3)(i, i, use_causal_mask=True)
    h = layers.Concatenate()([a, b, c, d])
    o = layers.Dense(2)(layers.GlobalAveragePooling1D()(h))
    out["attention"] = (keras.Model(i, o, name="attention"),
                        rng.normal(size=(3, 5, 6)).astype("float32"))
    return out


def write(models):
    rng = np.random.default_rng(0)
    for name, (model, x) in models(rng).items():
        randomize(model, rng)
        model.save(os.path.join(HERE, f"{name}.keras"))
        model.save_weights(os.path.join(HERE, f"{name}.weights.h5"))
        y = np.asarray(model.predict(x, verbose=0))
        np.savez(os.path.join(HERE, f"{name}_expected.npz"), x=x, y=y)


def main(rounds):
    keras.utils.set_random_seed(0)
    if 1 in rounds:
        write(models)
        # Refused: a Lambda layer (its file holds Python bytecode, which nanonet never runs).
        lam = keras.Sequential([keras.Input((3,)), layers.Lambda(lambda t: t * 2.0)])
        lam.save(os.path.join(HERE, "lambda.keras"), zipped=True)
    if 2 in rounds:
        keras.utils.set_random_seed(1)
        write(models_2)


if __name__ == "__main__":
    # "python make_fixtures.py 2" rewrites only the second round's files
    main({int(a) for a in sys.argv[1:]} or {1, 2})
