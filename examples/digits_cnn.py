"""A small CNN on the 8x8 handwritten digits: two 3x3 convolutions with "same" padding, max
pooling, dropout and a softmax output, trained with Adam and early stopping on a validation
split.

    python examples/digits_cnn.py

Images are (8, 8, 1) with pixels scaled to [0, 1]; 20% of the images (stratified, seeded) are
held out and the held-out accuracy is printed at the end (target >= 0.985). Runs in well under a
minute.
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
        L.Conv2D(32, 3, padding="same", activation="relu"),
        L.Conv2D(64, 3, padding="same", activation="relu"),
        L.MaxPooling2D(),
        L.Dropout(0.25),
        L.Flatten(),
        L.Dense(128, activation="relu"),
        L.Dropout(0.3),
        L.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer=nn.optimizers.Adam(learning_rate=0.002),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.summary()
    stop = nn.callbacks.EarlyStopping(monitor="val_loss", patience=6, restore_best_weights=True)
    start = time.perf_counter()
    model.fit(x_train, y_train, epochs=40, batch_size=32, validation_split=0.1,
              callbacks=[stop], verbose=2)
    seconds = time.perf_counter() - start
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(f"training took {seconds:.1f}s")
    print(f"held-out loss {loss:.4f}, held-out accuracy {accuracy:.4f} "
          f"({len(x_test)} images)")


if __name__ == "__main__":
    main()
