"""A user's script over the showcase API; tests/test_typing.py runs `mypy --strict` on it."""
from __future__ import annotations

import numpy as np

import nanonet as nn
from nanonet.layers import LSTM, Dense, Embedding, Input
from nanonet.models import Model, Sequential


def showcase(vocab_size: int, num_classes: int) -> Sequential:
    model = Sequential([Embedding(vocab_size, 128, mask_zero=True),
                        LSTM(128, return_sequences=True), LSTM(128),
                        Dense(num_classes, activation="softmax")])
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def classic() -> Model:
    inputs = Input(shape=(64,))
    hidden = Dense(32, activation="sigmoid")(inputs)
    outputs = Dense(10, activation="sigmoid")(hidden)
    model = Model(inputs=inputs, outputs=outputs)
    model.compile(optimizer=nn.optimizers.SGD(learning_rate=0.5), loss="mse")
    return model


def main() -> float:
    nn.set_seed(0)
    nn.set_num_threads(1)
    x = np.random.default_rng(0).integers(1, 50, size=(64, 12))
    y = nn.utils.to_categorical(np.arange(64) % 4, 4)
    model = showcase(50, 4)
    stop = nn.callbacks.EarlyStopping(monitor="val_loss", patience=1, restore_best_weights=True)
    history = model.fit(x, y, epochs=1, batch_size=16, validation_split=0.25, callbacks=[stop],
                        verbose=0)
    losses: list[float] = history.history["loss"]
    loss, acc = model.evaluate(x, y, verbose=0)
    probs: np.ndarray = model.predict(x[:2], verbose=0)
    model.save("/tmp/typed_user_script.nnet")
    again = nn.load_model("/tmp/typed_user_script.nnet")
    same: np.ndarray = again.predict(x[:2], verbose=0)
    step = classic().train_on_batch(np.zeros((8, 64)), np.zeros((8, 10)))
    model.summary()
    return float(loss) + float(acc) + losses[0] + float(probs.sum() - same.sum()) + float(step)


if __name__ == "__main__":
    print(main())
