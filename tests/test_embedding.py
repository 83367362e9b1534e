"""Embedding: gather / scatter-add kernels against nanonet.reference, finite differences, the scalar
C++ specification, thread counts, id dtypes and bad input."""
import numpy as np
import pytest

import nanonet as nn
from nanonet import ops, reference

from .tolerances import TOL

SHAPES = [  # (ids shape, V, E)
    ((1,), 1, 1),
    ((2, 3), 4, 5),
    ((7, 13), 17, 16),
    ((3, 1), 5, 33),
    ((32, 100), 300, 24),   # many duplicates per row
    ((4, 2, 3), 9, 7),      # ids of rank 3
    ((0, 5), 3, 4),         # no ids at all
]


def _ids(rng, shape, V, dtype=np.int64):
    return rng.integers(0, V, size=shape).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("id_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("shape,V,E", SHAPES)
def test_forward_backward_match_reference(shape, V, E, id_dtype, dtype):
    rng = np.random.default_rng(V * 31 + E)
    ids = _ids(rng, shape, V, id_dtype)
    table = rng.standard_normal((V, E)).astype(dtype)
    y = ops.embedding_forward(ids, table)
    assert y.dtype == dtype and y.shape == shape + (E,)
    np.testing.assert_array_equal(y, reference.embedding_forward(ids, table))
    dy = rng.standard_normal(shape + (E,)).astype(dtype)
    got = ops.embedding_backward(dy, ids, V)
    want = reference.embedding_backward(dy.astype(np.float64), ids, V)
    assert got.dtype == dtype and got.shape == (V, E)
    tol = TOL[np.dtype(dtype).name]["elementwise"]
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.sqrt(max(ids.size, 1)))


def test_duplicate_ids_accumulate_and_unused_rows_are_zero():
    table = np.arange(12, dtype=np.float64).reshape(6, 2)
    ids = np.array([[3, 3, 1], [3, 0, 1]])
    dy = np.arange(12, dtype=np.float64).reshape(2, 3, 2) + 1.0
    de = ops.embedding_backward(dy, ids, 6)
    want = np.zeros((6, 2))
    want[3] = dy[0, 0] + dy[0, 1] + dy[1, 0]
    want[1] = dy[0, 2] + dy[1, 2]
    want[0] = dy[1, 1]
    np.testing.assert_array_equal(de, want)
    np.testing.assert_array_equal(ops.embedding_forward(ids, table)[1, 0], table[3])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fast_path_equals_scalar_specification(dtype):
    rng = np.random.default_rng(5)
    ids = _ids(rng, (64, 50), 40)  # large enough to use threads
    table = rng.standard_normal((40, 33)).astype(dtype)
    dy = rng.standard_normal((64, 50, 33)).astype(dtype)
    np.testing.assert_array_equal(ops.embedding_forward(ids, table),
                                  ops.embedding_forward(ids, table, _ref=True))
    # Both sum each row's dy in position order: identical bits.
    np.testing.assert_array_equal(ops.embedding_backward(dy, ids, 40),
                                  ops.embedding_backward(dy, ids, 40, _ref=True))


def test_one_and_two_threads_agree_bitwise():
    rng = np.random.default_rng(6)
    ids = _ids(rng, (32, 100), 500)
    table = rng.standard_normal((500, 64)).astype(np.float32)
    dy = rng.standard_normal((32, 100, 64)).astype(np.float32)
    before = nn.get_num_threads()
    try:
        nn.set_num_threads(1)
        y1, d1 = ops.embedding_forward(ids, table), ops.embedding_backward(dy, ids, 500)
        nn.set_num_threads(2)
        y2, d2 = ops.embedding_forward(ids, table), ops.embedding_backward(dy, ids, 500)
    finally:
        nn.set_num_threads(before)
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(d1, d2)


def test_backward_matches_finite_differences():
    rng = np.random.default_rng(7)
    V, E = 5, 3
    ids = np.array([[0, 4, 4], [2, 4, 0]])
    table = rng.standard_normal((V, E))
    R = rng.standard_normal(ids.shape + (E,))
    de = ops.embedding_backward(R, ids, V)
    h = 1e-6
    num = np.zeros_like(table)
    for v in range(V):
        for e in range(E):
            tp, tm = table.copy(), table.copy()
            tp[v, e] += h
            tm[v, e] -= h
            num[v, e] = (np.sum(ops.embedding_forward(ids, tp) * R)
                         - np.sum(ops.embedding_forward(ids, tm) * R)) / (2 * h)
    assert np.linalg.norm(de - num) <= TOL["float64"]["grad_fd"] * np.linalg.norm(de)


def test_other_integer_types_and_integral_floats_are_accepted():
    table = np.eye(4, dtype=np.float32)
    want = table[[1, 3]]
    for ids in (np.array([1, 3], np.uint8), np.array([1, 3], np.int16), np.array([1.0, 3.0]),
                [1, 3]):
        np.testing.assert_array_equal(ops.embedding_forward(ids, table), want)
    np.testing.assert_array_equal(ops.embedding_backward(np.ones((2, 4)), np.array([1.0, 1.0]), 4),
                                  reference.embedding_backward(np.ones((2, 4)), [1, 1], 4))


@pytest.mark.parametrize("bad", [-1, 6, 2 ** 40])
def test_out_of_range_ids_name_the_id_and_V(bad):
    table = np.zeros((6, 2), np.float32)
    ids = np.array([[0, 1], [2, bad]], np.int64)
    with pytest.raises(ValueError, match=rf"\[0, 6\); got {bad} at position \(1, 1\)"):
        ops.embedding_forward(ids, table)
    with pytest.raises(ValueError, match=rf"\[0, 6\); got {bad}"):
        ops.embedding_backward(np.zeros((2, 2, 2), np.float32), ids, 6)
    with pytest.raises(ValueError, match=r"\[0, 6\)"):
        reference.embedding_forward(ids, table)


def test_bad_input_errors_name_the_argument():
    table = np.zeros((6, 2), np.float32)
    with pytest.raises(ValueError, match="ids must be integers; got 1.5"):
        ops.embedding_forward(np.array([0.0, 1.5]), table)
    with pytest.raises(ValueError, match="ids must be integers"):
        ops.embedding_forward(np.array([np.nan]), table)
    with pytest.raises(TypeError, match="ids must be an integer array"):
        ops.embedding_forward(np.array(["a"]), table)
    with pytest.raises(TypeError, match="embeddings must be float32 or float64; got int64"):
        ops.embedding_forward([0], np.zeros((6, 2), np.int64))
    with pytest.raises(ValueError, match=r"embeddings must be 2-D; got shape \(6,\)"):
        ops.embedding_forward([0], np.zeros(6, np.float32))
    with pytest.raises(ValueError, match=r"dy must have the shape of ids plus one axis E, ids "
                                         r"\(2,\) \+ \(E,\); got \(3, 2\)"):
        ops.embedding_backward(np.zeros((3, 2), np.float32), [0, 1], 6)
    with pytest.raises(TypeError, match="dy must be float32 or float64"):
        ops.embedding_backward(np.zeros((2, 2), np.int32), [0, 1], 6)
    with pytest.raises(TypeError, match="input_dim must be an int"):
        ops.embedding_backward(np.zeros((2, 2), np.float32), [0, 1], 6.0)
    # A strided (non-contiguous) table is copied, not rejected.
    wide = np.arange(24, dtype=np.float64).reshape(6, 4)
    np.testing.assert_array_equal(ops.embedding_forward([5], wide[:, ::2]), wide[[5], ::2])


# -- position embeddings --------------------------------------------------------------------------
def test_position_embedding_forward_backward_and_finite_differences():
    rng = np.random.default_rng(40)
    L = nn.layers
    layer = L.PositionEmbedding(7, dtype="float64")
    x = rng.standard_normal((3, 5, 4))
    y = layer(x)
    table = layer.get_weights()[0]
    assert layer.weight_names == ["embeddings"] and table.shape == (7, 4)
    np.testing.assert_array_equal(y, np.broadcast_to(table[:5], x.shape))
    np.testing.assert_array_equal(layer(x, start_index=2), np.broadcast_to(table[2:7], x.shape))
    R = rng.standard_normal(x.shape)
    layer(x, training=True, start_index=1)
    dx = layer.backward(R)
    np.testing.assert_array_equal(dx, 0)
    want = np.zeros((7, 4))
    want[1:6] = R.sum(axis=0)
    np.testing.assert_allclose(layer.grads[0], want, rtol=1e-12)
    with pytest.raises(ValueError, match="start_index \\+ steps must be at most sequence_length"):
        layer(x, start_index=3)
    with pytest.raises(ValueError, match=r"inputs must be \(batch, steps, 4\)"):
        layer(x[..., :3])
    with pytest.raises(ValueError, match="sequence_length must be a positive int"):
        L.PositionEmbedding(0)


@pytest.mark.parametrize("start", [0, 2])
def test_token_and_position_embedding_matches_its_parts_and_finite_differences(start):
    rng = np.random.default_rng(41)
    L = nn.layers
    layer = L.TokenAndPositionEmbedding(6, 8, 3, mask_zero=True, dtype="float64")
    ids = rng.integers(0, 6, size=(4, 5))
    layer(ids)
    tok, pos = (rng.standard_normal(w.shape) for w in layer.get_weights())
    layer.set_weights([tok, pos])
    assert layer.weight_names == ["token_embeddings", "position_embeddings"]
    y = layer(ids, training=True, start_index=start)
    np.testing.assert_allclose(y, tok[ids] + pos[start:start + 5], rtol=1e-12)
    np.testing.assert_array_equal(layer.compute_mask(ids), ids != 0)
    R = rng.standard_normal(y.shape)
    assert layer.backward(R) is None
    h = 1e-6
    for w, g in zip(layer.trainable_weights, layer.grads):
        num = np.zeros_like(w)
        for idx in np.ndindex(w.shape):
            old = w[idx]
            w[idx] = old + h
            up = np.sum(layer(ids, start_index=start) * R)
            w[idx] = old - h
            down = np.sum(layer(ids, start_index=start) * R)
            w[idx] = old
            num[idx] = (up - down) / (2 * h)
        np.testing.assert_allclose(g, num, rtol=0, atol=1e-7 * (np.abs(num).max() + 1))
    with pytest.raises(ValueError, match="id"):
        layer(np.array([[1, 6]]))
    with pytest.raises(ValueError, match=r"inputs must be \(batch, steps\) token ids"):
        layer(ids[0])
    with pytest.raises(ValueError, match="embedding_dim must be a positive int"):
        L.TokenAndPositionEmbedding(6, 8, 0)


def test_token_and_position_mask_reaches_attention_in_a_graph(tmp_path):
    # The padding mask becomes MultiHeadAttention's key mask: padded steps change nothing.
    rng = np.random.default_rng(42)
    L = nn.layers
    ids = nn.Input((6,), dtype="int32")
    x = L.TokenAndPositionEmbedding(9, 6, 8, mask_zero=True)(ids)
    h = L.MultiHeadAttention(2, 4)(x, x)
    model = nn.Model(ids, L.GlobalAveragePooling1D()(h))
    a = rng.integers(1, 9, size=(3, 6)).astype(np.int32)
    a[:, 4:] = 0
    emb = model.get_layer(index=1)
    att = nn.Model(ids, h)
    before = att.predict(a, verbose=0)
    emb.position_embeddings[4:] += 5.0  # the padded steps' vectors move, the visible ones not
    after = att.predict(a, verbose=0)
    np.testing.assert_allclose(after[:, :4], before[:, :4], rtol=1e-6, atol=1e-6)
    # the same graph without mask_zero attends to the padded keys: the visible steps move
    x2 = L.TokenAndPositionEmbedding(9, 6, 8)(ids)
    att2 = nn.Model(ids, L.MultiHeadAttention(2, 4)(x2, x2))
    att2.set_weights(att.get_weights())
    emb2 = att2.get_layer(index=1)
    before2 = att2.predict(a, verbose=0)
    emb2.position_embeddings[4:] -= 5.0
    assert not np.allclose(att2.predict(a, verbose=0)[:, :4], before2[:, :4], atol=1e-3)
    model.save(tmp_path / "m.nnet")
    np.testing.assert_allclose(nn.load_model(tmp_path / "m.nnet").predict(a, verbose=0),
                               model.predict(a, verbose=0), rtol=1e-6, atol=1e-6)
