"""The classic network on the 8x8 handwritten digits: one sigmoid hidden layer, sigmoid outputs,
mean squared error against one-hot targets, plain mini-batch SGD (30 hidden units, 30 epochs,
batches of 10, learning rate 3.0: the textbook settings).

    python examples/digits_classic.py

Pixels are scaled to [0, 1]; 20% of the images (stratified, seeded) are held out and the
held-out accuracy is printed at the end. Runs in a few seconds.
"""
import time

import nanonet as nn
from nanonet.datasets import load_digits
from nanonet.preprocessing import to_categorical, train_test_split

SEED = 0


def main():
    nn.set_seed(SEED)
    x, y = load_digits()
    x = x / 16.0                                   # pixel counts 0..16 -> [0, 1]
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, stratify=y,
                                                        seed=SEED)
    model = nn.Sequential([
        nn.layers.Input((64,)),
        nn.layers.Dense(30, activation="sigmoid"),
        nn.layers.Dense(10, activation="sigmoid"),
    ])
    model.compile(optimizer=nn.optimizers.SGD(learning_rate=3.0), loss="mse",
                  metrics=["accuracy"])
    model.summary()
    start = time.perf_counter()
    model.fit(x_train, to_categorical(y_train, 10), epochs=30, batch_size=10,
              verbose=2)
    seconds = time.perf_counter() - start
    loss, accuracy = model.evaluate(x_test, to_categorical(y_test, 10), verbose=0)
    print(f"training took {seconds:.1f}s")
    print(f"held-out loss {loss:.4f}, held-out accuracy {accuracy:.4f} "
          f"({len(x_test)} images)")


if __name__ == "__main__":
    main()
