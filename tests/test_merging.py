"""Merge layers: Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate, Dot.

Forward against the NumPy formula, backward against central finite differences in float64 with
the loss sum(out * R), broadcasting, Keras 3's masks and the errors."""
from __future__ import annotations

import numpy as np
import pytest

from nanonet import layers as L

from .tolerances import TOL

F64 = {"dtype": "float64"}

ELEMENTWISE = {
    "Add": (L.Add, lambda xs: sum(xs)),
    "Subtract": (L.Subtract, lambda xs: xs[0] - xs[1]),
    "Multiply": (L.Multiply, lambda xs: np.prod(np.broadcast_arrays(*xs), axis=0)),
    "Average": (L.Average, lambda xs: sum(xs) / len(xs)),
    "Maximum": (L.Maximum, lambda xs: np.max(np.broadcast_arrays(*xs), axis=0)),
    "Minimum": (L.Minimum, lambda xs: np.min(np.broadcast_arrays(*xs), axis=0)),
}


def _fd_check(layer, xs, rng, eps=1e-6):
    y, ctx = layer.forward(xs, training=True)
    r = rng.standard_normal(y.shape)
    dxs, grads = layer.backprop(ctx, r)
    assert grads == []
    for x, d in zip(xs, dxs):
        assert d.shape == x.shape
        num = np.zeros_like(x)
        for i in range(x.size):
            old = x.flat[i]
            x.flat[i] = old + eps
            up = float(np.sum(layer.forward(xs)[0] * r))
            x.flat[i] = old - eps
            down = float(np.sum(layer.forward(xs)[0] * r))
            x.flat[i] = old
            num.flat[i] = (up - down) / (2 * eps)
        err = np.max(np.abs(d - num)) / max(np.max(np.abs(num)), 1.0)
        assert err <= TOL["float64"]["grad_fd"], err


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
@pytest.mark.parametrize("shapes", [[(3, 4), (3, 4)], [(2, 5, 3), (2, 1, 3)],
                                    [(1, 4), (1, 4), (1, 4)], [(3, 1, 4), (3, 2, 1)]])
def test_elementwise_forward_and_gradients(name, shapes):
    cls, formula = ELEMENTWISE[name]
    if name == "Subtract" and len(shapes) != 2:
        pytest.skip("Subtract takes exactly two inputs")
    rng = np.random.default_rng(abs(hash((name, str(shapes)))) % 2**32)
    xs = [rng.standard_normal(s) for s in shapes]
    layer = cls(**F64)
    y = layer(xs)
    np.testing.assert_allclose(y, formula(xs), rtol=1e-14, atol=1e-14)
    assert layer.compute_output_shape([(None,) + s[1:] for s in shapes]) == \
        (None,) + np.broadcast_shapes(*shapes)[1:]
    _fd_check(layer, xs, rng)


def test_extremes_send_the_gradient_to_the_first_on_ties():
    a = np.array([[1.0, 2.0, 3.0]])
    b = np.array([[1.0, 5.0, 0.0]])
    for cls, want in ((L.Maximum, ([1, 0, 1], [0, 1, 0])), (L.Minimum, ([1, 1, 0], [0, 0, 1]))):
        layer = cls(**F64)
        _, ctx = layer.forward([a, b], training=True)
        (da, db), _ = layer.backprop(ctx, np.ones((1, 3)))
        np.testing.assert_array_equal(da[0], want[0])
        np.testing.assert_array_equal(db[0], want[1])


@pytest.mark.parametrize("axis,shapes", [(-1, [(2, 3), (2, 4)]), (1, [(2, 3, 4), (2, 5, 4)]),
                                         (2, [(2, 3, 1), (2, 3, 2), (2, 3, 3)])])
def test_concatenate_forward_and_gradients(axis, shapes):
    rng = np.random.default_rng(len(shapes) + axis)
    xs = [rng.standard_normal(s) for s in shapes]
    layer = L.Concatenate(axis=axis, **F64)
    np.testing.assert_array_equal(layer(xs), np.concatenate(xs, axis=axis))
    _fd_check(layer, xs, rng)


@pytest.mark.parametrize("axes,shapes", [(1, [(3, 4), (3, 4)]), (2, [(2, 3, 4), (2, 5, 4)]),
                                         ((1, 1), [(2, 3, 4), (2, 3, 5)]),
                                         ((2, 1), [(2, 3, 4), (2, 4, 5)])])
@pytest.mark.parametrize("normalize", [False, True])
def test_dot_forward_and_gradients(axes, shapes, normalize):
    rng = np.random.default_rng(7)
    xs = [rng.standard_normal(s) for s in shapes]
    layer = L.Dot(axes=axes, normalize=normalize, **F64)
    a0, a1 = (axes, axes) if isinstance(axes, int) else axes
    u, v = xs
    if normalize:
        u = u / np.linalg.norm(u, axis=a0, keepdims=True)
        v = v / np.linalg.norm(v, axis=a1, keepdims=True)
    if u.ndim == 2:
        want = np.sum(u * v, axis=1, keepdims=True)
    else:
        want = np.einsum("bmk,bkn->bmn", np.moveaxis(u, a0, 2), np.moveaxis(v, a1, 1))
    y = layer(xs)
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)
    assert layer.compute_output_shape([(None,) + s[1:] for s in shapes]) == \
        (None,) + want.shape[1:]
    _fd_check(layer, xs, rng)


def test_masks_follow_keras():
    x = np.zeros((2, 3, 4))
    m1 = np.array([[1, 1, 0], [1, 0, 0]], bool)
    m2 = np.array([[1, 0, 0], [1, 1, 1]], bool)
    add = L.Add()
    np.testing.assert_array_equal(add.compute_mask([x, x], [m1, m2]), m1 | m2)
    assert add.compute_mask([x, x], [m1, None]) is None       # any input unmasked -> None
    assert add.compute_mask([x, x], None) is None
    cat = L.Concatenate(axis=-1)
    np.testing.assert_array_equal(cat.compute_mask([x, x], [m1, None]), np.ones((2, 3), bool))
    np.testing.assert_array_equal(cat.compute_mask([x, x], [m1, m2]), m1 | m2)
    time_cat = L.Concatenate(axis=1)
    np.testing.assert_array_equal(time_cat.compute_mask([x, x], [m1, None]),
                                  np.concatenate([m1, np.ones((2, 3), bool)], axis=1))
    assert L.Dot(axes=2).compute_mask([x, x], [m1, m2]) is None


def test_errors_name_the_layer_and_the_shapes():
    with pytest.raises(ValueError, match="expects at least 2 inputs; got 1"):
        L.Add()([np.ones((2, 3))])
    with pytest.raises(ValueError, match="must be a list of tensors"):
        L.Add()(np.ones((2, 3)))
    with pytest.raises(ValueError, match="expects exactly 2 inputs; got 3"):
        L.Subtract()([np.ones((2, 3))] * 3)
    with pytest.raises(ValueError, match=r"Multiply 'mul'.*\(None, 3\), \(None, 4\)"):
        L.Multiply(name="mul")([np.ones((2, 3)), np.ones((2, 4))])
    with pytest.raises(ValueError, match="same batch size"):
        L.Add()([np.ones((2, 3)), np.ones((5, 3))])
    with pytest.raises(ValueError, match="same rank"):
        L.Add()([np.ones((2, 3)), np.ones((2, 3, 1))])
    with pytest.raises(ValueError, match="the dot axes must have the same size"):
        L.Dot(axes=1)([np.ones((2, 3)), np.ones((2, 4))])
    with pytest.raises(ValueError, match="axes must be an int or a pair"):
        L.Dot(axes="last")
    with pytest.raises(ValueError, match="axis must be an int"):
        L.Concatenate(axis=1.5)
    with pytest.raises(ValueError, match="is not a non-batch axis"):
        L.Concatenate(axis=0)([np.ones((2, 3)), np.ones((2, 3))])


def test_config_round_trip_and_functional_forms():
    for layer in (L.Add(name="a1"), L.Concatenate(axis=1, name="c1"),
                  L.Dot(axes=(1, 2), normalize=True, name="d1")):
        again = L.deserialize(L.serialize(layer))
        assert type(again) is type(layer) and again.get_config() == layer.get_config()
    a, b = np.ones((2, 3)), np.full((2, 3), 2.0)
    np.testing.assert_array_equal(L.add([a, b]), a + b)
    np.testing.assert_array_equal(L.concatenate([a, b], axis=1), np.concatenate([a, b], 1))
    np.testing.assert_array_equal(L.dot([a, b], axes=1), np.full((2, 1), 6.0))
