"""The Fashion-MNIST showcase CNN (the model of ``python -m nanonet demo --dataset
fashion_mnist``), written out as a script:

    Rescaling(1/255), RandomFlip("horizontal"),
    Conv2D(32, 3, relu, same), MaxPooling2D, Conv2D(64, 3, relu, same), MaxPooling2D,
    Flatten, Dropout(0.25), Dense(10, softmax)

trained with Adam whose learning rate decays on a cosine from 1e-3 to 5e-5 over the whole fit.

    python examples/fashion_cnn.py [epochs]

Needs Debian's dataset-fashion-mnist (``apt-get install dataset-fashion-mnist``). Prints the
progress of every epoch and the test accuracy (target >= 0.91 with the default 12 epochs).
"""
import sys
import time

import numpy as np

import nanonet as nn

SEED = 0


def main(epochs=12):
    nn.set_seed(SEED)
    (x_train, y_train), (x_test, y_test) = nn.datasets.load_fashion_mnist()
    x_train = x_train[..., None].astype(np.float32)
    x_test = x_test[..., None].astype(np.float32)
    L = nn.layers
    model = nn.Sequential([
        L.Input((28, 28, 1)),
        L.Rescaling(1 / 255),
        L.RandomFlip("horizontal"),
        L.Conv2D(32, 3, activation="relu", padding="same"),
        L.MaxPooling2D(),
        L.Conv2D(64, 3, activation="relu", padding="same"),
        L.MaxPooling2D(),
        L.Flatten(),
        L.Dropout(0.25),
        L.Dense(10, activation="softmax"),
    ])
    batch_size = 64
    steps = epochs * -(-int(len(x_train) * 0.9) // batch_size)  # updates of the whole fit
    model.compile(optimizer=nn.optimizers.Adam(nn.schedules.CosineDecay(1e-3, steps, alpha=0.05)),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.summary()
    start = time.perf_counter()
    model.fit(x_train, y_train.astype(np.int64), epochs=epochs, batch_size=batch_size,
              validation_split=0.1, verbose=1)
    loss, accuracy = model.evaluate(x_test, y_test.astype(np.int64), verbose=0)
    print(f"training took {time.perf_counter() - start:.1f}s")
    print(f"test loss {loss:.4f}, test accuracy {accuracy:.4f} ({len(x_test)} images)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 12)
