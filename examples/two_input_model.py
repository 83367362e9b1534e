"""A model with two inputs and two outputs (the Functional API): the digit image through one
tower and a few hand-made features of it through another, merged; one output classifies the
digit, the other regresses the image's ink (a second task from the same features).

Data: the 8x8 digits that ship with nanonet.
Run: python examples/two_input_model.py   (a few seconds)
"""
import numpy as np

import nanonet as nn
from nanonet import layers

nn.set_seed(0)
x, y = nn.datasets.load_digits()
x = (x / 16.0).astype(np.float32)
img = x.reshape(-1, 8, 8)
features = np.stack([img.mean(axis=(1, 2)), img[:, :4].mean(axis=(1, 2)),
                     img[:, 4:].mean(axis=(1, 2)), img[:, :, :4].mean(axis=(1, 2)),
                     img[:, :, 4:].mean(axis=(1, 2))], axis=1).astype(np.float32)
ink = img.sum(axis=(1, 2), keepdims=False)[:, None].astype(np.float32) / 64.0
idx = np.random.default_rng(0).permutation(len(x))
tr, te = idx[:1400], idx[1400:]

pixels = nn.Input(shape=(64,), name="pixels")
extra = nn.Input(shape=(5,), name="features")
a = layers.Dense(64, activation="relu")(pixels)
b = layers.Dense(16, activation="relu")(extra)
h = layers.Concatenate()([a, b])
digit = layers.Dense(10, activation="softmax", name="digit")(h)
amount = layers.Dense(1, name="ink")(h)
model = nn.Model(inputs=[pixels, extra], outputs=[digit, amount])
model.compile(optimizer="adam", loss={"digit": "sparse_categorical_crossentropy", "ink": "mse"},
              loss_weights={"digit": 1.0, "ink": 0.5}, metrics={"digit": ["accuracy"]})
model.summary()
model.fit({"pixels": x[tr], "features": features[tr]}, {"digit": y[tr], "ink": ink[tr]},
          epochs=30, batch_size=32, validation_split=0.1, verbose=0)
logs = model.evaluate({"pixels": x[te], "features": features[te]},
                      {"digit": y[te], "ink": ink[te]}, return_dict=True, verbose=0)
print(f"test digit accuracy: {logs['digit_accuracy']:.4f}, ink mse: {logs['ink_loss']:.5f}")
