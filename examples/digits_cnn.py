"""A small CNN on the 8x8 handwritten digits: random shifts of up to 0.8 pixel, two 3x3
convolutions with "same" padding, max pooling, dropout and a softmax output, trained for 30
epochs with Adam whose rate decays on a cosine (2e-3 to 1e-4), watching a validation split.

    python examples/digits_cnn.py

Images are (8, 8, 1) with pixels scaled to [0, 1]; 20% of the images (stratified, seeded) are
held out and the held-out accuracy is printed at the end (target >= 0.985). Runs in well under a
minute. Measured (2026-12-03, seeds 0-3 and three other splits): 0.9917-1.0; the same net
without the shifts, at a constant rate with early stopping, scattered 0.9806-0.9917.
"""
import time

import nanonet as nn
from nanonet.datasets import load_digits
from nanonet.preprocessing import train_test_split

SEED = 0


def main():
    nn.set_seed(SEED)
    x, y = load_digits()
    x = (x / 16.0).reshape(-1, 8, 8, 1)            # pixel counts 0..16 -> [0, 1] images
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, stratify=y,
                                                        seed=SEED)
    L = nn.layers
    model = nn.Sequential([
        L.Input((8, 8, 1)),
        L.RandomTranslation(0.1, 0.1),                # training only
        L.Conv2D(32, 3, padding="same", activation="relu"),
        L.Conv2D(64, 3, padding="same", activation="relu"),
        L.MaxPooling2D(),
        L.Dropout(0.25),
        L.Flatten(),
        L.Dense(128, activation="relu"),
        L.Dropout(0.3),
        L.Dense(10, activation="softmax"),
    ])
    epochs, batch_size = 30, 32
    steps = epochs * -(-int(len(x_train) * 0.9) // batch_size)  # updates of the whole fit
    rate = nn.schedules.CosineDecay(0.002, steps, alpha=0.05)
    model.compile(optimizer=nn.optimizers.Adam(learning_rate=rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.summary()
    start = time.perf_counter()
    model.fit(x_train, y_train, epochs=epochs, batch_size=batch_size, validation_split=0.1,
              verbose=2)
    seconds = time.perf_counter() - start
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(f"training took {seconds:.1f}s")
    print(f"held-out loss {loss:.4f}, held-out accuracy {accuracy:.4f} "
          f"({len(x_test)} images)")


if __name__ == "__main__":
    main()
