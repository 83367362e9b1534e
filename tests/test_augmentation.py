"""Image preprocessing / augmentation layers: identity outside training, repeatable under
nanonet.set_seed and seed=, exact results for transforms with a known answer, and a backward
pass that is the adjoint of the (linear) forward."""
import numpy as np
import pytest

import nanonet as nn
from nanonet import layers

RANDOM = [
    lambda **k: layers.RandomFlip(**k),
    lambda **k: layers.RandomTranslation(0.3, 0.2, **k),
    lambda **k: layers.RandomRotation(0.2, **k),
    lambda **k: layers.RandomZoom(0.3, **k),
    lambda **k: layers.RandomContrast(0.4, value_range=(-10, 10), **k),
]


def _x(shape=(4, 6, 5, 2), seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("make", RANDOM)
def test_identity_outside_training_and_repeatable(make):
    x = _x()
    layer = make()
    np.testing.assert_array_equal(layer(x), x)
    nn.set_seed(3)
    a = layer(x, training=True)
    nn.set_seed(3)
    b = make()(x, training=True)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, x)
    own = [make(seed=5)(x, training=True) for _ in range(2)]
    np.testing.assert_array_equal(own[0], own[1])


@pytest.mark.parametrize("make", RANDOM[:4] + [
    lambda **k: layers.RandomTranslation(0.3, 0.3, fill_mode="constant", fill_value=0.0, **k),
    lambda **k: layers.RandomRotation(0.3, fill_mode="wrap", interpolation="nearest", **k),
    lambda **k: layers.RandomCrop(4, 3, **k),
    lambda **k: layers.Resizing(9, 4, dtype=k["dtype"]),
    lambda **k: layers.Resizing(3, 3, crop_to_aspect_ratio=True, dtype=k["dtype"])])
def test_backward_is_the_adjoint(make):
    # each transform is linear in the image: with the same draw (same seed), A and its
    # backward A^T satisfy <A u, R> = <u, A^T R>
    x = _x().astype(np.float64)
    u = np.random.default_rng(2).standard_normal(x.shape)
    y, ctx = make(seed=7, dtype="float64").forward(x, training=True)
    yu, _ = make(seed=7, dtype="float64").forward(u, training=True)
    R = np.random.default_rng(1).standard_normal(y.shape)
    dx, grads = make(seed=7, dtype="float64").backprop(ctx, R)
    assert grads == [] and dx.shape == x.shape
    np.testing.assert_allclose(np.sum(yu * R), np.sum(u * dx), rtol=1e-10)


def test_flip_is_a_flip_of_each_sample():
    x = _x((8, 3, 4, 1))
    y = layers.RandomFlip("horizontal", seed=0)(x, training=True)
    for a, b in zip(x, y):
        assert np.array_equal(a, b) or np.array_equal(a[:, ::-1], b)
    assert not np.array_equal(x, y)


def test_translation_by_one_pixel_with_reflect_fill():
    x = _x((2, 4, 4, 1))
    y = layers.RandomTranslation((0.25, 0.25), (0, 0), seed=0)(x, training=True)
    np.testing.assert_allclose(y[:, 1:], x[:, :-1], atol=1e-6)
    np.testing.assert_allclose(y[:, 0], x[:, 0], atol=1e-6)  # reflected edge


def test_rotation_by_a_quarter_turn_and_zero_zoom():
    x = _x((2, 5, 5, 3))
    y = layers.RandomRotation((0.25, 0.25), seed=0)(x, training=True)
    assert any(np.allclose(y, np.rot90(x, k, axes=(1, 2)), atol=1e-5) for k in (1, 3))
    np.testing.assert_allclose(layers.RandomZoom((0, 0), seed=0)(x, training=True), x,
                               atol=1e-6)


def test_resizing_rescaling_crop_contrast():
    x = _x((2, 4, 6, 1))
    y = layers.Resizing(2, 3)(x)
    np.testing.assert_allclose(y, x.reshape(2, 2, 2, 3, 2, 1).mean(axis=(2, 4)), atol=1e-6)
    np.testing.assert_allclose(layers.Resizing(4, 6)(x), x, atol=1e-6)
    np.testing.assert_allclose(layers.Rescaling(0.5, offset=1)(x), x * 0.5 + 1, rtol=1e-6)
    c = layers.RandomCrop(2, 4, seed=0)
    np.testing.assert_array_equal(c(x), x[:, 1:3, 1:5])  # the centre at inference
    ct = c(x, training=True)
    assert ct.shape == (2, 2, 4, 1)
    rc = layers.RandomContrast((0.5, 0.5), value_range=(-100, 100), seed=0)(x, training=True)
    m = x.mean(axis=(1, 2), keepdims=True)
    f = (rc - m) / (x - m)
    assert np.all((f > 0.5 - 1e-4) & (f < 1.5 + 1e-4))


def test_bad_arguments():
    with pytest.raises(ValueError, match="mode must be one of"):
        layers.RandomFlip("diagonal")
    with pytest.raises(ValueError, match="fill_mode must be one of"):
        layers.RandomRotation(0.1, fill_mode="mirror")
    with pytest.raises(ValueError, match="factor must lie in"):
        layers.RandomTranslation(1.5, 0.1)
    with pytest.raises(ValueError, match="data_format must be 'channels_last'"):
        layers.RandomFlip(data_format="channels_first")
    with pytest.raises(ValueError, match="input must be 4-D"):
        layers.RandomFlip()(np.zeros((2, 3)), training=True)
    with pytest.raises(ValueError, match="height must be a positive int"):
        layers.Resizing(0, 3)


def test_augmentation_in_a_model_is_identity_in_predict(tmp_path):
    nn.set_seed(0)
    model = nn.Sequential([layers.Input((6, 6, 1)), layers.RandomFlip("horizontal"),
                           layers.RandomTranslation(0.1, 0.1), layers.Flatten(),
                           layers.Dense(2, activation="softmax")])
    plain = nn.Sequential([layers.Input((6, 6, 1)), layers.Flatten(),
                           layers.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    x = _x((16, 6, 6, 1))
    model.fit(x, np.arange(16) % 2, epochs=1, batch_size=8, verbose=0)
    plain.set_weights(model.get_weights())
    np.testing.assert_allclose(model.predict(x, verbose=0), plain.predict(x, verbose=0),
                               rtol=1e-6)
    model.save(tmp_path / "aug.nnet")
    np.testing.assert_array_equal(nn.load_model(tmp_path / "aug.nnet").predict(x, verbose=0),
                                  model.predict(x, verbose=0))
