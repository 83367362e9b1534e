"""NumPy twins of every op in :mod:`nanonet.ops`: same names, same arguments, written for clarity.

This module is the specification: tests compare the compiled kernels against it and benchmarks
time both. It computes in the dtype of its inputs.
"""
from __future__ import annotations

import numpy as np


# --------------------------------------------------------------------------------------------
# gemm

def matmul(a, b, transpose_a=False, transpose_b=False):
    a = np.asarray(a)
    b = np.asarray(b)
    return (a.T if transpose_a else a) @ (b.T if transpose_b else b)


def gemm(a, b, c, alpha=1.0, beta=0.0, transpose_a=False, transpose_b=False):
    prod = alpha * matmul(a, b, transpose_a, transpose_b)
    c[...] = prod if beta == 0 else prod + beta * c
    return c


# --------------------------------------------------------------------------------------------
# ---- optimizers
# In place, like nanonet.ops: param and slots are updated, nothing is returned. Arithmetic is in
# the arrays' dtype (Python floats are rounded to it), in the order the kernels use.

def _clipped_grad(grad, grad_scale, clipvalue):
    g = np.asarray(grad) * float(grad_scale)
    if clipvalue > 0:
        g = np.clip(g, -float(clipvalue), float(clipvalue))
    return g


def sgd_update(param, grad, velocity, lr, momentum=0.0, nesterov=False, grad_scale=1.0,
               clipvalue=0.0):
    g = _clipped_grad(grad, grad_scale, clipvalue)
    lr, momentum = float(lr), float(momentum)
    if momentum > 0:
        velocity[...] = momentum * velocity - lr * g
        if nesterov:
            param += momentum * velocity - lr * g
        else:
            param += velocity
    else:
        param -= lr * g


def adam_update(param, grad, m, v, lr, step, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                weight_decay=0.0, grad_scale=1.0, clipvalue=0.0):
    g = _clipped_grad(grad, grad_scale, clipvalue)
    lr, beta_1, beta_2 = float(lr), float(beta_1), float(beta_2)
    if weight_decay > 0:
        param -= param * (float(weight_decay) * lr)
    alpha = lr * np.sqrt(1.0 - beta_2 ** int(step)) / (1.0 - beta_1 ** int(step))
    m += (g - m) * (1.0 - beta_1)
    v += (np.square(g) - v) * (1.0 - beta_2)
    param -= float(alpha) * m / (np.sqrt(v) + float(epsilon))


def rmsprop_update(param, grad, velocity, lr, rho=0.9, momentum=0.0, epsilon=1e-7,
                   centered=False, momentum_buf=None, average_grad=None, grad_scale=1.0,
                   clipvalue=0.0):
    g = _clipped_grad(grad, grad_scale, clipvalue)
    lr, rho, momentum, epsilon = float(lr), float(rho), float(momentum), float(epsilon)
    velocity[...] = rho * velocity + (1.0 - rho) * np.square(g)
    if centered:
        average_grad[...] = rho * average_grad + (1.0 - rho) * g
        denominator = velocity - np.square(average_grad) + epsilon
    else:
        denominator = velocity + epsilon
    increment = lr * g / np.sqrt(denominator)
    if momentum > 0:
        momentum_buf[...] = momentum * momentum_buf + increment
        param -= momentum_buf
    else:
        param -= increment


def sum_squares(x):
    return float(np.sum(np.square(np.asarray(x, dtype=np.float64))))


def l1_l2_value(param, l1=0.0, l2=0.0):
    p = np.asarray(param, dtype=np.float64)
    value = 0.0
    if l1:
        value += float(l1) * float(np.sum(np.abs(p)))
    if l2:
        value += float(l2) * float(np.sum(np.square(p)))
    return value


def l1_l2_grad_acc(grad, param, l1=0.0, l2=0.0):
    param = np.asarray(param)
    if l1 and l2:
        grad += float(l1) * np.sign(param) + (2.0 * float(l2)) * param
    elif l1:
        grad += float(l1) * np.sign(param)
    elif l2:
        grad += (2.0 * float(l2)) * param


# --------------------------------------------------------------------------------------------
# ---- embedding

def _ids(ids, input_dim, fn):
    ids = np.asarray(ids)
    if ids.dtype.kind == "f":
        if not np.all(np.isfinite(ids) & (ids == np.floor(ids))):
            raise ValueError(f"{fn}: ids must be integers")
    elif ids.dtype.kind not in "iu":
        raise TypeError(f"{fn}: ids must be an integer array; got {ids.dtype}")
    ids = ids.astype(np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= input_dim):
        bad = ids[(ids < 0) | (ids >= input_dim)].flat[0]
        raise ValueError(f"{fn}: ids must be in [0, V) = [0, {input_dim}); got {bad}")
    return ids


def embedding_forward(ids, embeddings):
    embeddings = np.asarray(embeddings)
    return embeddings[_ids(ids, embeddings.shape[0], "embedding_forward")]


def embedding_backward(dy, ids, input_dim):
    dy = np.asarray(dy)
    ids = _ids(ids, input_dim, "embedding_backward")
    dembeddings = np.zeros((input_dim, dy.shape[-1]), dy.dtype)
    np.add.at(dembeddings, ids.reshape(-1), dy.reshape(-1, dy.shape[-1]))
    return dembeddings
