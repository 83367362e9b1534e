"""NumPy twins of every op in :mod:`nanonet.ops`: same names, same arguments, written for clarity.

This module is the specification: tests compare the compiled kernels against it and benchmarks
time both. It computes in the dtype of its inputs.
"""
from __future__ import annotations

import math

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


def adagrad_update(param, grad, accumulator, lr, epsilon=1e-7, grad_scale=1.0, clipvalue=0.0):
    g = _clipped_grad(grad, grad_scale, clipvalue)
    accumulator += np.square(g)
    param -= float(lr) * g / np.sqrt(accumulator + float(epsilon))


def adamax_update(param, grad, m, u, lr, step, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                  grad_scale=1.0, clipvalue=0.0):
    g = _clipped_grad(grad, grad_scale, clipvalue)
    beta_1, beta_2 = float(beta_1), float(beta_2)
    m += (g - m) * (1.0 - beta_1)
    u[...] = np.maximum(beta_2 * u, np.abs(g))
    param -= (float(lr) * m) / ((1.0 - beta_1 ** int(step)) * (u + float(epsilon)))


def nadam_update(param, grad, m, v, lr, step, u_product, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 grad_scale=1.0, clipvalue=0.0):
    """Keras 3 Nadam; u_product = prod_{i <= step} u_i, u_i = beta_1 (1 - 0.5 * 0.96**i)."""
    g = _clipped_grad(grad, grad_scale, clipvalue)
    beta_1, beta_2, t = float(beta_1), float(beta_2), int(step)
    u_t = beta_1 * (1.0 - 0.5 * 0.96 ** t)
    u_t1 = beta_1 * (1.0 - 0.5 * 0.96 ** (t + 1))
    u_product_1 = float(u_product) * u_t1
    m += (g - m) * (1.0 - beta_1)
    v += (np.square(g) - v) * (1.0 - beta_2)
    m_hat = u_t1 * m / (1.0 - u_product_1) + (1.0 - u_t) * g / (1.0 - float(u_product))
    v_hat = v / (1.0 - beta_2 ** t)
    param -= (m_hat * float(lr)) / (np.sqrt(v_hat) + float(epsilon))


def lion_update(param, grad, m, lr, beta_1=0.9, beta_2=0.99, grad_scale=1.0, clipvalue=0.0):
    g = _clipped_grad(grad, grad_scale, clipvalue)
    beta_1, beta_2 = float(beta_1), float(beta_2)
    param -= float(lr) * np.sign(m * beta_1 + g * (1.0 - beta_1))
    m[...] = m * beta_2 + g * (1.0 - beta_2)


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


# --------------------------------------------------------------------------------------------
# ---- normalization

def batch_norm_forward(x, gamma, beta, moving_mean, moving_var, training=False, momentum=0.99,
                       epsilon=1e-3, mask=None):
    x = np.asarray(x)
    F = x.shape[-1]
    rows = x.reshape(-1, F)
    if training:
        w = np.ones(rows.shape[0], bool) if mask is None else np.asarray(mask, bool).reshape(-1)
        if w.any():
            mean = rows[w].mean(axis=0)
            var = ((rows[w] - mean) ** 2).mean(axis=0)  # biased
            if moving_mean is not None:
                moving_mean[...] = moving_mean * momentum + mean * (1 - momentum)
            if moving_var is not None:
                moving_var[...] = moving_var * momentum + var * (1 - momentum)
        else:  # no row counts: zero statistics, moving statistics unchanged
            mean = np.zeros(F, x.dtype)
            var = np.zeros(F, x.dtype)
    else:
        mean = np.asarray(moving_mean, x.dtype)
        var = np.asarray(moving_var, x.dtype)
    inv_std = (1 / np.sqrt(var + epsilon)).astype(x.dtype)
    y = (rows - mean) * inv_std
    if gamma is not None:
        y = y * gamma
    if beta is not None:
        y = y + beta
    return y.reshape(x.shape).astype(x.dtype), mean.astype(x.dtype), inv_std


def batch_norm_backward(dy, x, mean, inv_std, gamma, training=True, mask=None):
    x = np.asarray(x)
    F = x.shape[-1]
    rows = x.reshape(-1, F)
    g = np.asarray(dy).reshape(-1, F)
    x_hat = (rows - mean) * inv_std
    dbeta = g.sum(axis=0)
    dgamma = (g * x_hat).sum(axis=0)
    scale = inv_std if gamma is None else gamma * inv_std
    w = np.ones(rows.shape[0], bool) if mask is None else np.asarray(mask, bool).reshape(-1)
    if training and w.any():
        # mean and var are taken over the W unmasked rows; every row's y depends on them
        W = w.sum()
        dx = scale * (g - w[:, None] * (dbeta + x_hat * dgamma) / W)
    else:
        dx = scale * g
    return dx.reshape(x.shape).astype(x.dtype), dgamma.astype(x.dtype), dbeta.astype(x.dtype)


def layer_norm_forward(x, gamma, beta, epsilon=1e-3):
    x = np.asarray(x)
    mean = x.mean(axis=-1)
    var = ((x - mean[..., None]) ** 2).mean(axis=-1)
    inv_std = (1 / np.sqrt(var + epsilon)).astype(x.dtype)
    y = (x - mean[..., None]) * inv_std[..., None]
    if gamma is not None:
        y = y * gamma
    if beta is not None:
        y = y + beta
    return y.astype(x.dtype), mean.astype(x.dtype), inv_std


def layer_norm_backward(dy, x, mean, inv_std, gamma):
    x = np.asarray(x)
    dy = np.asarray(dy)
    x_hat = (x - mean[..., None]) * inv_std[..., None]
    g = dy if gamma is None else dy * gamma
    dx = inv_std[..., None] * (g - g.mean(axis=-1, keepdims=True)
                               - x_hat * (g * x_hat).mean(axis=-1, keepdims=True))
    F = x.shape[-1]
    dgamma = (dy * x_hat).reshape(-1, F).sum(axis=0)
    dbeta = dy.reshape(-1, F).sum(axis=0)
    return dx.astype(x.dtype), dgamma.astype(x.dtype), dbeta.astype(x.dtype)


# --------------------------------------------------------------------------------------------
# ---- pooling

def _steps_mask(mask, B, T):
    return np.ones((B, T), bool) if mask is None else np.asarray(mask, bool)


def global_avg_pool1d_forward(x, mask=None):
    x = np.asarray(x)
    m = _steps_mask(mask, x.shape[0], x.shape[1])
    count = m.sum(axis=1)[:, None]
    total = np.where(m[:, :, None], x, 0).sum(axis=1)
    return np.where(count > 0, total / np.maximum(count, 1), 0).astype(x.dtype)


def global_avg_pool1d_backward(dy, steps, mask=None):
    dy = np.asarray(dy)
    m = _steps_mask(mask, dy.shape[0], steps)
    count = m.sum(axis=1)[:, None, None]
    dx = np.where(m[:, :, None], dy[:, None, :] / np.maximum(count, 1), 0)
    return dx.astype(dy.dtype)


def global_max_pool1d_forward(x, mask=None):
    x = np.asarray(x)
    B, T, F = x.shape
    m = _steps_mask(mask, B, T)
    y = np.zeros((B, F), x.dtype)
    argmax = np.full((B, F), -1, np.int64)
    for t in range(T):
        v = x[:, t, :]
        # the first unmasked step, a larger value, or the first NaN takes over
        take = m[:, t, None] & ((argmax < 0) | (v > y) | (np.isnan(v) & ~np.isnan(y)))
        y = np.where(take, v, y)
        argmax = np.where(take, t, argmax)
    return y, argmax


def global_max_pool1d_backward(dy, argmax, steps):
    dy = np.asarray(dy)
    argmax = np.asarray(argmax)
    t = np.arange(steps)[None, :, None]
    return np.where(argmax[:, None, :] == t, dy[:, None, :], 0).astype(dy.dtype)


# --------------------------------------------------------------------------------------------
# ---- activations

_ACTIVATIONS = ("linear", "sigmoid", "tanh", "relu", "softmax", "log_softmax", "gelu",
                "gelu_approximate", "silu", "swish", "elu", "selu", "leaky_relu", "softplus",
                "softsign", "hard_sigmoid", "exponential")
_INPUT_ACTIVATIONS = ("gelu", "gelu_approximate", "silu", "swish")
_SELU_SCALE, _SELU_ALPHA = 1.05070098, 1.67326324  # Keras's constants
_LEAKY_SLOPE = 0.2                                   # Keras 3 leaky_relu negative_slope
_GELU_K0, _GELU_K1 = math.sqrt(2 / math.pi), 0.044715


def _act_name(activation, fn):
    a = "linear" if activation is None else activation
    if a not in _ACTIVATIONS:
        raise ValueError(f"{fn}: activation must be one of {', '.join(_ACTIVATIONS)}; got {a!r}")
    return "silu" if a == "swish" else a


def _erfc(x):
    """erfc elementwise (NumPy has none): math.erfc per element, in float64, cast back."""
    return np.vectorize(math.erfc, otypes=[np.float64])(x).astype(x.dtype)


def _sigmoid(x):
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-x))


def activation_forward(x, activation):
    x = np.asarray(x)
    a = _act_name(activation, "activation_forward")
    zero = np.zeros((), x.dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        if a == "sigmoid":
            return 1 / (1 + np.exp(-x))
        if a == "tanh":
            return np.tanh(x)
        if a == "relu":
            return np.maximum(x, zero)  # NaN stays NaN
        if a in ("softmax", "log_softmax") and x.size:
            z = x - x.max(axis=-1, keepdims=True)
            s = np.exp(z).sum(axis=-1, keepdims=True)
            return np.exp(z) / s if a == "softmax" else z - np.log(s)
        # x < -100: 0 exactly (the true value underflows; -inf gives 0, not nan)
        if a == "gelu":  # x Phi(x), Phi(x) = erfc(-x / sqrt 2) / 2 (no 1 + erf cancellation)
            return np.where(x < -100, zero, 0.5 * x * _erfc(-x / np.sqrt(2)))
        if a == "gelu_approximate":  # x (1 + tanh(u)) / 2 = x sigmoid(2u)
            u = _GELU_K0 * (x + _GELU_K1 * x ** 3)
            return np.where(x < -100, zero, x * _sigmoid(2 * u))
        if a == "silu":
            return np.where(x < -100, zero, x * _sigmoid(x))
        if a == "elu":
            return np.where(x > 0, x, np.expm1(x))
        if a == "selu":
            return _SELU_SCALE * np.where(x > 0, x, _SELU_ALPHA * np.expm1(x))
        if a == "leaky_relu":
            return np.where(x < 0, _LEAKY_SLOPE * x, x)
        if a == "softplus":
            return np.maximum(x, zero) + np.log1p(np.exp(-np.abs(x)))
        if a == "softsign":
            return x / (1 + np.abs(x))
        if a == "hard_sigmoid":  # Keras 3: relu6(x + 3) / 6
            return np.clip(x + 3, 0, 6) / 6
        if a == "exponential":
            return np.exp(x)
    return x.copy()


def activation_backward(dy, y, activation, x=None):
    """dx from the upstream gradient and the forward OUTPUT y; gelu, gelu_approximate and silu
    read the forward INPUT x instead (required for them)."""
    dy, y = np.asarray(dy), np.asarray(y)
    a = _act_name(activation, "activation_backward")
    if a in _INPUT_ACTIVATIONS:
        if x is None:
            raise ValueError(f"activation_backward: activation {a!r} needs the forward input x")
        x = np.asarray(x)
    zero = np.zeros((), dy.dtype)
    if a == "sigmoid":
        return dy * y * (1 - y)
    if a == "tanh":
        return dy * (1 - y * y)
    if a == "relu":
        return np.where(y > 0, dy, zero)
    if a == "softmax":
        return y * (dy - (dy * y).sum(axis=-1, keepdims=True))
    if a == "log_softmax":
        return dy - np.exp(y) * dy.sum(axis=-1, keepdims=True)
    with np.errstate(over="ignore", invalid="ignore"):
        if a == "gelu":  # Phi(x) + x phi(x)
            d = 0.5 * _erfc(-x / np.sqrt(2)) + x * np.exp(-0.5 * x * x) / np.sqrt(2 * np.pi)
            return dy * np.where(np.abs(x) > 100, (x > 0).astype(dy.dtype), d)
        if a == "gelu_approximate":  # y = x (1 + tanh(u)) / 2
            t = np.tanh(_GELU_K0 * (x + _GELU_K1 * x ** 3))
            du = _GELU_K0 * (1 + 3 * _GELU_K1 * x * x)
            d = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du
            return dy * np.where(np.abs(x) > 100, (x > 0).astype(dy.dtype), d)
        if a == "silu":
            s = _sigmoid(x)
            return dy * np.where(np.abs(x) > 100, (x > 0).astype(dy.dtype), s * (1 + x * (1 - s)))
    if a == "elu":  # exp(x) = y + 1 for x <= 0
        return dy * np.where(y > 0, 1, y + 1)
    if a == "selu":
        return dy * np.where(y > 0, _SELU_SCALE, y + _SELU_SCALE * _SELU_ALPHA)
    if a == "leaky_relu":
        return dy * np.where(y < 0, _LEAKY_SLOPE, 1).astype(dy.dtype)
    if a == "softplus":  # sigmoid(x) = 1 - exp(-y)
        return dy * -np.expm1(-y)
    if a == "softsign":  # 1 / (1 + |x|)^2 = (1 - |y|)^2
        return dy * (1 - np.abs(y)) ** 2
    if a == "hard_sigmoid":
        return np.where((y > 0) & (y < 1), dy / 6, zero)
    if a == "exponential":
        return dy * y
    return dy.copy()


# --------------------------------------------------------------------------------------------
# ---- dense

def dense_forward(x, kernel, bias=None, activation="linear"):
    z = np.asarray(x) @ np.asarray(kernel)
    if bias is not None:
        z = z + bias
    return activation_forward(z, activation)


def dense_backward(dy, x, kernel, y, activation="linear", need_dx=True, z=None):
    """(dx or None, dkernel, dbias); z = x @ kernel + bias is needed for gelu, gelu_approximate
    and silu."""
    a = _act_name(activation, "dense_backward")
    dz = np.asarray(dy) if a == "linear" else activation_backward(dy, y, a, z)
    dx = dz @ np.asarray(kernel).T if need_dx else None
    return dx, np.asarray(x).T @ dz, dz.sum(axis=0)


# --------------------------------------------------------------------------------------------
# ---- lstm
# A plain LSTM with a Python loop over time, Keras layout and gate order (i, f, c, o). The cache
# is a dict of per-step lists; only this module's lstm_backward reads it.

def _lstm_act(name):
    return {"tanh": np.tanh, "sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)),
            "relu": lambda z: np.maximum(z, 0), "linear": lambda z: z}[name or "linear"]


def _lstm_act_grad(name):
    """f'(z) written with y = f(z)."""
    return {"tanh": lambda y: 1.0 - y * y, "sigmoid": lambda y: y * (1.0 - y),
            "relu": lambda y: (y > 0).astype(y.dtype),
            "linear": lambda y: np.ones_like(y)}[name or "linear"]


def lstm_forward(x, kernel, recurrent_kernel, bias=None, h0=None, c0=None, mask=None,
                 go_backwards=False, activation="tanh", recurrent_activation="sigmoid",
                 input_dropout_mask=None, recurrent_dropout_mask=None, return_sequences=True,
                 training=True):
    x = np.asarray(x)
    B, T, _ = x.shape
    H = recurrent_kernel.shape[0]
    a, ra = _lstm_act(activation), _lstm_act(recurrent_activation)
    h = np.zeros((B, H), x.dtype) if h0 is None else np.array(h0, x.dtype)
    c = np.zeros((B, H), x.dtype) if c0 is None else np.array(c0, x.dtype)
    xd = x if input_dropout_mask is None else x * input_dropout_mask[:, None, :]
    steps = []
    ys = []
    for t in (range(T - 1, -1, -1) if go_backwards else range(T)):
        hd = h if recurrent_dropout_mask is None else h * recurrent_dropout_mask
        z = xd[:, t] @ kernel + hd @ recurrent_kernel
        if bias is not None:
            z = z + bias
        i, f, g, o = ra(z[:, :H]), ra(z[:, H:2 * H]), a(z[:, 2 * H:3 * H]), ra(z[:, 3 * H:])
        c_new = f * c + i * g
        ac = a(c_new)
        h_new = o * ac
        m = np.ones((B, 1), bool) if mask is None else np.asarray(mask, bool)[:, t][:, None]
        steps.append(dict(t=t, x=xd[:, t], hd=hd, c_prev=c, i=i, f=f, g=g, o=o, ac=ac, m=m))
        c = np.where(m, c_new, c)  # a masked step carries the state ...
        h = np.where(m, h_new, h)
        ys.append(h)               # ... and outputs it
    y = np.stack(ys, axis=1) if return_sequences else h.copy()
    if T == 0 and return_sequences:
        y = np.zeros((B, 0, H), x.dtype)
    cache = None
    if training:
        cache = dict(steps=steps, kernel=kernel, recurrent_kernel=recurrent_kernel,
                     has_bias=bias is not None, shape=x.shape, units=H,
                     input_dropout_mask=input_dropout_mask,
                     recurrent_dropout_mask=recurrent_dropout_mask, activation=activation,
                     recurrent_activation=recurrent_activation, return_sequences=return_sequences)
    return y, h, c, cache


def lstm_backward(dy, cache, dh_n=None, dc_n=None, need_dx=True):
    return _lstm_backward(dy, cache, dh_n, dc_n, need_dx)[:6]


def _lstm_backward(dy, cache, dh_n, dc_n, need_dx):
    """lstm_backward's results and the gate gradients dz of every step, in processing order."""
    B, T, I = cache["shape"]
    H = cache["units"]
    kernel, recurrent_kernel = cache["kernel"], cache["recurrent_kernel"]
    dt = kernel.dtype
    da, dra = _lstm_act_grad(cache["activation"]), _lstm_act_grad(cache["recurrent_activation"])
    idm, rdm = cache["input_dropout_mask"], cache["recurrent_dropout_mask"]
    dh = np.zeros((B, H), dt) if dh_n is None else np.array(dh_n, dt)
    dc = np.zeros((B, H), dt) if dc_n is None else np.array(dc_n, dt)
    if dy is not None and not cache["return_sequences"]:
        dh, dy = dh + dy, None
    dx = np.zeros((B, T, I), dt)
    dkernel = np.zeros_like(kernel)
    drecurrent_kernel = np.zeros_like(recurrent_kernel)
    dbias = np.zeros(4 * H, dt)
    dzs = [None] * T
    for k in range(T - 1, -1, -1):
        s = cache["steps"][k]
        if dy is not None:
            dh = dh + dy[:, k]
        # h = o * a(c):  c = f * c_prev + i * g
        dc_k = dc + dh * s["o"] * da(s["ac"])
        dz = np.concatenate([dc_k * s["g"] * dra(s["i"]), dc_k * s["c_prev"] * dra(s["f"]),
                             dc_k * s["i"] * da(s["g"]), dh * s["ac"] * dra(s["o"])], axis=1)
        dz = np.where(s["m"], dz, 0)
        dzs[k] = dz
        dkernel += s["x"].T @ dz
        drecurrent_kernel += s["hd"].T @ dz
        dbias += dz.sum(axis=0)
        dx[:, s["t"]] = dz @ kernel.T * (1 if idm is None else idm)
        dh_prev = dz @ recurrent_kernel.T * (1 if rdm is None else rdm)
        # a masked step passed its state through unchanged
        dh = np.where(s["m"], dh_prev, dh)
        dc = np.where(s["m"], dc_k * s["f"], dc)
    return ((dx if need_dx else None), dkernel, drecurrent_kernel,
            (dbias if cache["has_bias"] else None), dh, dc, dzs)


# --------------------------------------------------------------------------------------------
# ---- gru, simple_rnn (Keras 3 GRUCell / SimpleRNNCell; see cpp/nanonet/gru.hpp)

def _rnn_steps(x, h0, H, mask, go_backwards, input_dropout_mask):
    x = np.asarray(x)
    B, T, _ = x.shape
    h = np.zeros((B, H), x.dtype) if h0 is None else np.array(h0, x.dtype)
    xd = x if input_dropout_mask is None else x * input_dropout_mask[:, None, :]
    order = range(T - 1, -1, -1) if go_backwards else range(T)
    full = np.ones((B, T), bool) if mask is None else np.asarray(mask, bool)
    return x, h, xd, order, full


def _rnn_finish(ys, h, x, H, return_sequences):
    if not return_sequences:
        return h.copy()
    if not ys:
        return np.zeros((x.shape[0], 0, H), x.dtype)
    return np.stack(ys, axis=1)


def gru_forward(x, kernel, recurrent_kernel, bias=None, h0=None, mask=None, go_backwards=False,
                reset_after=True, activation="tanh", recurrent_activation="sigmoid",
                input_dropout_mask=None, recurrent_dropout_mask=None, return_sequences=True,
                training=True):
    H = recurrent_kernel.shape[0]
    a, ra = _lstm_act(activation), _lstm_act(recurrent_activation)
    x, h, xd, order, full = _rnn_steps(x, h0, H, mask, go_backwards, input_dropout_mask)
    rdm = recurrent_dropout_mask
    bi = br = 0
    if bias is not None:
        bi, br = (bias[0], bias[1]) if reset_after else (bias, 0)
    steps, ys = [], []
    for t in order:
        hd = h if rdm is None else h * rdm
        gx = xd[:, t] @ kernel + bi
        if reset_after:
            gr = hd @ recurrent_kernel + br
            z = ra(gx[:, :H] + gr[:, :H])
            r = ra(gx[:, H:2 * H] + gr[:, H:2 * H])
            aux = gr[:, 2 * H:]
            hh = a(gx[:, 2 * H:] + r * aux)
        else:
            gr = hd @ recurrent_kernel[:, :2 * H]
            z = ra(gx[:, :H] + gr[:, :H])
            r = ra(gx[:, H:2 * H] + gr[:, H:])
            aux = r * hd
            hh = a(gx[:, 2 * H:] + aux @ recurrent_kernel[:, 2 * H:])
        m = full[:, t][:, None]
        steps.append(dict(t=t, x=xd[:, t], hd=hd, h=h, z=z, r=r, hh=hh, aux=aux, m=m))
        h = np.where(m, z * h + (1 - z) * hh, h)  # a masked step carries the state and outputs it
        ys.append(h)
    y = _rnn_finish(ys, h, x, H, return_sequences)
    cache = None
    if training:
        cache = dict(cell="gru", steps=steps, kernel=kernel, recurrent_kernel=recurrent_kernel,
                     bias_shape=None if bias is None else np.shape(bias), shape=x.shape, units=H,
                     reset_after=reset_after, input_dropout_mask=input_dropout_mask,
                     recurrent_dropout_mask=rdm, activation=activation,
                     recurrent_activation=recurrent_activation, return_sequences=return_sequences)
    return y, h, cache


def gru_backward(dy, cache, dh_n=None, need_dx=True):
    B, T, I = cache["shape"]
    H = cache["units"]
    kernel, rk = cache["kernel"], cache["recurrent_kernel"]
    dt = kernel.dtype
    da, dra = _lstm_act_grad(cache["activation"]), _lstm_act_grad(cache["recurrent_activation"])
    idm, rdm = cache["input_dropout_mask"], cache["recurrent_dropout_mask"]
    reset_after = cache["reset_after"]
    dh = np.zeros((B, H), dt) if dh_n is None else np.array(dh_n, dt)
    if dy is not None and not cache["return_sequences"]:
        dh, dy = dh + dy, None
    dx = np.zeros((B, T, I), dt)
    dkernel, drk = np.zeros_like(kernel), np.zeros_like(rk)
    dbi, dbr = np.zeros(3 * H, dt), np.zeros(3 * H, dt)
    for k in range(T - 1, -1, -1):
        s = cache["steps"][k]
        if dy is not None:
            dh = dh + dy[:, k]
        m = s["m"]
        # h' = z h + (1 - z) hh
        dz = np.where(m, dh * (s["h"] - s["hh"]) * dra(s["z"]), 0)
        dhh = np.where(m, dh * (1 - s["z"]) * da(s["hh"]), 0)
        if reset_after:  # hh = a(gx_h + r * aux)
            dr = dhh * s["aux"] * dra(s["r"])
            dR = np.concatenate([dz, dr, dhh * s["r"]], axis=1)
            drk += s["hd"].T @ dR
            dbr += dR.sum(axis=0)
            dhd = dR @ rk.T
        else:  # hh = a(gx_h + (r * hd) @ rk_h)
            drh = dhh @ rk[:, 2 * H:].T
            dr = drh * s["hd"] * dra(s["r"])
            dzr = np.concatenate([dz, dr], axis=1)
            drk[:, :2 * H] += s["hd"].T @ dzr
            drk[:, 2 * H:] += s["aux"].T @ dhh
            dhd = dzr @ rk[:, :2 * H].T + drh * s["r"]
        dgx = np.concatenate([dz, dr, dhh], axis=1)
        dkernel += s["x"].T @ dgx
        dbi += dgx.sum(axis=0)
        dx[:, s["t"]] = dgx @ kernel.T * (1 if idm is None else idm)
        dh = np.where(m, dh * s["z"] + dhd * (1 if rdm is None else rdm), dh)
    dbias = None
    if cache["bias_shape"] is not None:
        dbias = np.stack([dbi, dbr]) if reset_after else dbi
    return (dx if need_dx else None), dkernel, drk, dbias, dh


def simple_rnn_forward(x, kernel, recurrent_kernel, bias=None, h0=None, mask=None,
                       go_backwards=False, activation="tanh", input_dropout_mask=None,
                       recurrent_dropout_mask=None, return_sequences=True, training=True):
    H = recurrent_kernel.shape[0]
    a = _lstm_act(activation)
    x, h, xd, order, full = _rnn_steps(x, h0, H, mask, go_backwards, input_dropout_mask)
    rdm = recurrent_dropout_mask
    steps, ys = [], []
    for t in order:
        hd = h if rdm is None else h * rdm
        out = a(xd[:, t] @ kernel + (0 if bias is None else bias) + hd @ recurrent_kernel)
        m = full[:, t][:, None]
        steps.append(dict(t=t, x=xd[:, t], hd=hd, out=out, m=m))
        h = np.where(m, out, h)
        ys.append(h)
    y = _rnn_finish(ys, h, x, H, return_sequences)
    cache = None
    if training:
        cache = dict(cell="simple_rnn", steps=steps, kernel=kernel,
                     recurrent_kernel=recurrent_kernel, has_bias=bias is not None, shape=x.shape,
                     units=H, input_dropout_mask=input_dropout_mask, recurrent_dropout_mask=rdm,
                     activation=activation, return_sequences=return_sequences)
    return y, h, cache


def simple_rnn_backward(dy, cache, dh_n=None, need_dx=True):
    B, T, I = cache["shape"]
    H = cache["units"]
    kernel, rk = cache["kernel"], cache["recurrent_kernel"]
    dt = kernel.dtype
    da = _lstm_act_grad(cache["activation"])
    idm, rdm = cache["input_dropout_mask"], cache["recurrent_dropout_mask"]
    dh = np.zeros((B, H), dt) if dh_n is None else np.array(dh_n, dt)
    if dy is not None and not cache["return_sequences"]:
        dh, dy = dh + dy, None
    dx = np.zeros((B, T, I), dt)
    dkernel, drk, dbias = np.zeros_like(kernel), np.zeros_like(rk), np.zeros(H, dt)
    for k in range(T - 1, -1, -1):
        s = cache["steps"][k]
        if dy is not None:
            dh = dh + dy[:, k]
        dp = np.where(s["m"], dh * da(s["out"]), 0)
        dkernel += s["x"].T @ dp
        drk += s["hd"].T @ dp
        dbias += dp.sum(axis=0)
        dx[:, s["t"]] = dp @ kernel.T * (1 if idm is None else idm)
        dh = np.where(s["m"], dp @ rk.T * (1 if rdm is None else rdm), dh)
    return (dx if need_dx else None), dkernel, drk, (dbias if cache["has_bias"] else None), dh


# --------------------------------------------------------------------------------------------
# ---- losses

_LOSSES = ("mse", "mae", "binary_crossentropy", "categorical_crossentropy",
           "sparse_categorical_crossentropy")
_EPS = 1e-7  # Keras's backend.epsilon()


def _weights(sample_weight, lead, dtype):
    if sample_weight is None:
        return np.ones(lead, dtype)
    w = np.asarray(sample_weight, dtype)
    if w.shape == lead + (1,):
        w = w.reshape(lead)
    return np.broadcast_to(w.reshape(w.shape + (1,) * (len(lead) - w.ndim)), lead)


def loss(name, y_true, y_pred, from_logits=False, sample_weight=None, compute_grad=True):
    """Keras 3 losses, reduction "sum_over_batch_size", and d value / d y_pred written out."""
    if name not in _LOSSES:
        raise ValueError(f"loss: loss must be one of {', '.join(_LOSSES)}; got {name!r}")
    yp = np.asarray(y_pred)
    dt, lead, C = yp.dtype, yp.shape[:-1], yp.shape[-1]
    if name == "sparse_categorical_crossentropy":
        ids = np.asarray(y_true).reshape(lead).astype(np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= C):
            raise ValueError(f"sparse_categorical_crossentropy: class ids must be in [0, {C})")
        y = (ids[..., None] == np.arange(C)).astype(dt)  # one-hot
        name = "categorical_crossentropy"
    else:
        y = np.asarray(y_true, dt).reshape(yp.shape)
    with np.errstate(over="ignore"):
        if name == "mse":
            d = yp - y
            per, g = np.mean(d * d, axis=-1), 2 * d / C
        elif name == "mae":
            d = yp - y
            per, g = np.mean(np.abs(d), axis=-1), np.sign(d) / C
        elif name == "binary_crossentropy":
            if from_logits:  # stable: max(z, 0) - z y + log(1 + exp(-|z|))
                z = yp
                per = np.mean(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z))), axis=-1)
                g = (1 / (1 + np.exp(-z)) - y) / C
            else:
                p = np.clip(yp, _EPS, 1 - _EPS)
                per = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p), axis=-1)
                inside = (yp >= p) & (yp <= p)  # the clip passes the gradient
                g = np.where(inside, (p - y) / (p * (1 - p)), 0) / C
        elif from_logits:  # categorical from logits
            lsm = activation_forward(yp, "log_softmax")
            per = -np.sum(y * lsm, axis=-1)
            g = np.exp(lsm) * y.sum(axis=-1, keepdims=True) - y
        else:  # categorical from probabilities: normalise, clip, -sum y log q
            s = yp.sum(axis=-1, keepdims=True)
            q = yp / s
            qc = np.clip(q, _EPS, 1 - _EPS)
            per = -np.sum(y * np.log(qc), axis=-1)
            G = np.where((q >= qc) & (q <= qc), -y / qc, 0)
            g = (G - np.sum(G * q, axis=-1, keepdims=True)) / s
    w = _weights(sample_weight, lead, dt)
    count = max(per.size, 1)
    value = float(np.sum(w * per) / count) if per.size else 0.0
    grad = (g * (w / count)[..., None]).astype(dt) if compute_grad else None
    return value, grad


def softmax_cross_entropy(y_true, logits, sparse=False, sample_weight=None):
    name = "sparse_categorical_crossentropy" if sparse else "categorical_crossentropy"
    return loss(name, y_true, logits, from_logits=True, sample_weight=sample_weight)


# --------------------------------------------------------------------------------------------
# ---- attention
# Scaled dot-product attention with the whole (B, H, Tq, Tk) score array (the kernel never
# stores it). Shapes and masks as in nanonet.ops.attention_forward.

def _attn_valid(mask, causal, B, Tq, Tk):
    """Bool (B, 1, Tq, Tk): where query i may attend to key j."""
    ok = np.ones((B, 1, Tq, Tk), dtype=bool)
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        ok &= m[:, None, None, :] if m.ndim == 2 else m[:, None, :, :]
    if causal:
        ok &= np.tril(np.ones((Tq, Tk), dtype=bool))
    return ok


def _attn_probs(q, k, valid, scale):
    """(p, lse): softmax over the valid keys (0 elsewhere), lse -inf for a fully masked row."""
    s = np.einsum("bhid,bhjd->bhij", q, k) * q.dtype.type(scale)
    s = np.where(valid, s, -np.inf)
    mx = s.max(axis=-1, keepdims=True)
    live = np.isfinite(mx)
    e = np.where(valid, np.exp(s - np.where(live, mx, 0)), 0)
    l = e.sum(axis=-1, keepdims=True)
    p = np.where(live, e / np.where(live, l, 1), 0).astype(q.dtype)
    with np.errstate(divide="ignore"):
        lse = np.where(live, mx + np.log(np.where(live, l, 1)), -np.inf)[..., 0]
    return p, lse.astype(q.dtype)


def attention_forward(q, k, v, mask=None, causal=False, scale=None):
    q, k, v = np.asarray(q), np.asarray(k), np.asarray(v)
    B, _, Tq, D = q.shape
    scale = 1.0 / np.sqrt(D) if scale is None else scale
    p, lse = _attn_probs(q, k, _attn_valid(mask, causal, B, Tq, k.shape[2]), scale)
    return np.einsum("bhij,bhje->bhie", p, v), lse


def attention_backward(dout, q, k, v, out, lse, mask=None, causal=False, scale=None):
    q, k, v, dout = np.asarray(q), np.asarray(k), np.asarray(v), np.asarray(dout)
    B, _, Tq, D = q.shape
    scale = 1.0 / np.sqrt(D) if scale is None else scale
    p, _ = _attn_probs(q, k, _attn_valid(mask, causal, B, Tq, k.shape[2]), scale)
    dv = np.einsum("bhij,bhie->bhje", p, dout)
    dp = np.einsum("bhie,bhje->bhij", dout, v)
    Di = np.sum(dout * np.asarray(out), axis=-1, keepdims=True)
    ds = p * (dp - Di) * q.dtype.type(scale)
    dq = np.einsum("bhij,bhjd->bhid", ds, k)
    dk = np.einsum("bhij,bhid->bhjd", ds, q)
    return dq.astype(q.dtype), dk.astype(q.dtype), dv.astype(q.dtype)


# ---- per-example gradient norms (DP-SGD)

def per_example_matmul_sq_norms(a, d, time_major=False, bias=False):
    a = np.asarray(a, dtype=np.float64)
    d = np.asarray(d, dtype=np.float64)
    if time_major:
        a, d = a.transpose(1, 0, 2), d.transpose(1, 0, 2)
    g = np.einsum("btk,btn->bkn", a, d)  # every example's gradient, materialised
    out = (g * g).sum(axis=(1, 2))
    if bias:
        out += np.square(d.sum(axis=1)).sum(axis=1)  # the bias's gradient sum_t d[b, t]
    return out


def embedding_per_example_sq_norms(ids, dy):
    ids = np.asarray(ids)
    dy = np.asarray(dy, dtype=np.float64)
    out = np.zeros(ids.shape[0])
    for b in range(ids.shape[0]):
        g = {}
        for t, v in enumerate(ids[b]):
            g[int(v)] = g.get(int(v), 0.0) + dy[b, t]
        out[b] = sum(float(np.dot(r, r)) for r in g.values())
    return out


def lstm_backward_dz(dy, cache, dh_n=None, dc_n=None, need_dx=True):
    dx, _, _, _, dh, dc, dzs = _lstm_backward(dy, cache, dh_n, dc_n, need_dx)
    return dx, np.stack(dzs), dh, dc


# ---- random: Philox4x32-10 and the Box-Muller noise (twins of ops.philox4x32,
# ops.gaussian_noise, ops.gaussian_noise_acc; the element layout of cpp/nanonet/random.hpp)

_PHILOX_M = (0xD2511F53, 0xCD9E8D57)
_PHILOX_W = (0x9E3779B9, 0xBB67AE85)
_MASK32 = np.uint64(0xFFFFFFFF)


def philox4x32(counters, key):
    x = [c.copy() for c in np.asarray(counters, dtype=np.uint64).reshape(-1, 4).T]
    k = [int(key) & 0xFFFFFFFF, int(key) >> 32]
    for _ in range(10):
        p0 = x[0] * np.uint64(_PHILOX_M[0])  # < 2**64: no wrap
        p1 = x[2] * np.uint64(_PHILOX_M[1])
        x = [(p1 >> np.uint64(32)) ^ x[1] ^ np.uint64(k[0]), p1 & _MASK32,
             (p0 >> np.uint64(32)) ^ x[3] ^ np.uint64(k[1]), p0 & _MASK32]
        k = [(k[0] + _PHILOX_W[0]) & 0xFFFFFFFF, (k[1] + _PHILOX_W[1]) & 0xFFFFFFFF]
    return np.stack(x, axis=1).astype(np.uint32)


def _standard_normals(n, key, counter):
    """n standard normals (float64) in the kernel's layout: chunk q of 64 elements from the
    blocks counter + 16 q + l; element 64 q + 16 m + l from block 16 q + l."""
    nq = (int(n) + 63) // 64
    blocks = [int(counter) + j for j in range(16 * nq)]
    ctr = np.array([[(c >> s) & 0xFFFFFFFF for s in (0, 32, 64, 96)] for c in blocks],
                   dtype=np.uint64).reshape(-1, 4).astype(np.uint32)
    w = philox4x32(ctr, key).reshape(nq, 16, 4)
    # u1 in float32 arithmetic, as the kernel (both products exact, one rounding in the sum)
    u1 = (w[:, :, 0::2] >> 1).astype(np.float32) * np.float32(2.0 ** -31) + np.float32(2.0 ** -32)
    u2 = (w[:, :, 1::2] >> 8).astype(np.float64) * 2.0 ** -24
    r = np.sqrt(-2.0 * np.log(u1.astype(np.float64)))
    theta = 2.0 * np.pi * u2
    z = np.empty((nq, 4, 16))
    z[:, 0], z[:, 1] = r[:, :, 0] * np.cos(theta[:, :, 0]), r[:, :, 0] * np.sin(theta[:, :, 0])
    z[:, 2], z[:, 3] = r[:, :, 1] * np.cos(theta[:, :, 1]), r[:, :, 1] * np.sin(theta[:, :, 1])
    return z.reshape(-1)[:n]


def gaussian_noise(shape, key, counter=0, std=1.0, dtype=np.float32):
    n = int(np.prod(shape, dtype=np.int64))
    return (std * _standard_normals(n, key, counter)).reshape(shape).astype(dtype)


def gaussian_noise_acc(out, key, counter, std, scale=1.0):
    z = _standard_normals(out.size, key, counter).reshape(out.shape)
    out[...] = scale * (out.astype(np.float64) + std * z)
    return out


# --------------------------------------------------------------------------------------------
# ---- conv
# Explicit zero padding, then one einsum per kernel tap and group.

def _pair(v):
    return (int(v), int(v)) if np.ndim(v) == 0 else (int(v[0]), int(v[1]))


def _axis_geometry(size, window, stride, dilation, padding):
    """(out, pad_before, pad_after) along one axis (Keras's rules)."""
    span = dilation * (window - 1) + 1
    if padding == "valid":
        if size < span:
            raise ValueError(f"window {span} larger than input {size} with padding='valid'")
        return (size - span) // stride + 1, 0, 0
    if padding == "causal":
        return (size + span - 1 - span) // stride + 1, span - 1, 0
    out = -(-size // stride)
    total = max((out - 1) * stride + span - size, 0)
    return out, total // 2, total - total // 2


def _conv_setup(x, kernel, strides, padding, dilation_rate):
    x, kernel = np.asarray(x), np.asarray(kernel)
    s, d = _pair(strides), _pair(dilation_rate)
    KH, KW = kernel.shape[:2]
    oh, pt, pb = _axis_geometry(x.shape[1], KH, s[0], d[0],
                                "valid" if padding == "causal" else padding)
    ow, pl, pr = _axis_geometry(x.shape[2], KW, s[1], d[1], padding)
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    return x, kernel, s, d, xp, (oh, ow), (pt, pl)


def _tap(a, kh, kw, s, d, out):
    """The (B, OH, OW, C) slice of padded input a that kernel tap (kh, kw) multiplies."""
    h0, w0 = kh * d[0], kw * d[1]
    return a[:, h0:h0 + s[0] * (out[0] - 1) + 1:s[0], w0:w0 + s[1] * (out[1] - 1) + 1:s[1], :]


def conv2d_forward(x, kernel, bias=None, strides=1, padding="valid", dilation_rate=1, groups=1,
                   activation="linear"):
    x, kernel, s, d, xp, out, _ = _conv_setup(x, kernel, strides, padding, dilation_rate)
    KH, KW, Cg, F = kernel.shape
    Fg = F // groups
    z = np.zeros((x.shape[0],) + out + (F,), np.result_type(x, kernel))
    for kh in range(KH):
        for kw in range(KW):
            t = _tap(xp, kh, kw, s, d, out)
            for g in range(groups):
                z[..., g * Fg:(g + 1) * Fg] += t[..., g * Cg:(g + 1) * Cg] @ \
                    kernel[kh, kw, :, g * Fg:(g + 1) * Fg]
    if bias is not None:
        z = z + bias
    return activation_forward(z, activation)


def conv2d_backward(dy, x, kernel, y, strides=1, padding="valid", dilation_rate=1, groups=1,
                    activation="linear", need_dx=True, z=None):
    """(dx or None, dkernel, dbias) of conv2d_forward."""
    x, kernel, s, d, xp, out, (pt, pl) = _conv_setup(x, kernel, strides, padding, dilation_rate)
    a = _act_name(activation, "conv2d_backward")
    dz = np.asarray(dy) if a == "linear" else activation_backward(dy, y, a, z)
    KH, KW, Cg, F = kernel.shape
    Fg = F // groups
    dk = np.zeros_like(kernel)
    dxp = np.zeros_like(xp)
    for kh in range(KH):
        for kw in range(KW):
            t = _tap(xp, kh, kw, s, d, out)
            dt = _tap(dxp, kh, kw, s, d, out)  # a view: += writes into dxp
            for g in range(groups):
                cs, fs = slice(g * Cg, (g + 1) * Cg), slice(g * Fg, (g + 1) * Fg)
                dk[kh, kw, :, fs] = np.einsum("bhwc,bhwf->cf", t[..., cs], dz[..., fs])
                dt[..., cs] += dz[..., fs] @ kernel[kh, kw, :, fs].T
    H, W = x.shape[1:3]
    dx = dxp[:, pt:pt + H, pl:pl + W, :] if need_dx else None
    return dx, dk, dz.sum(axis=(0, 1, 2))


# --------------------------------------------------------------------------------------------
# ---- windowed pooling

def _pool_windows(x, pool_size, strides, padding):
    """(windows (B, OH, OW, PH*PW, C), valid (OH, OW, PH*PW), flat index ih*W+iw of each
    window position (OH, OW, PH*PW))."""
    x = np.asarray(x)
    p = _pair(pool_size)
    s = p if strides is None else _pair(strides)
    B, H, W, C = x.shape
    oh, pt, _ = _axis_geometry(H, p[0], s[0], 1, padding)
    ow, pl, _ = _axis_geometry(W, p[1], s[1], 1, padding)
    ih = (np.arange(oh) * s[0] - pt)[:, None] + np.arange(p[0])[None, :]      # (OH, PH)
    iw = (np.arange(ow) * s[1] - pl)[:, None] + np.arange(p[1])[None, :]      # (OW, PW)
    IH = np.broadcast_to(ih[:, None, :, None], (oh, ow, p[0], p[1])).reshape(oh, ow, -1)
    IW = np.broadcast_to(iw[None, :, None, :], (oh, ow, p[0], p[1])).reshape(oh, ow, -1)
    valid = (IH >= 0) & (IH < H) & (IW >= 0) & (IW < W)
    win = x[:, np.clip(IH, 0, H - 1), np.clip(IW, 0, W - 1), :]               # (B,OH,OW,P,C)
    return win, valid, IH * W + IW


def max_pool2d_forward(x, pool_size, strides=None, padding="valid", return_argmax=False):
    win, valid, flat = _pool_windows(x, pool_size, strides, padding)
    w = np.where(valid[None, :, :, :, None], win, -np.inf)
    k = np.argmax(w, axis=3)                                                  # first max
    y = np.take_along_axis(win, k[:, :, :, None, :], axis=3)[:, :, :, 0, :]
    if not return_argmax:
        return y
    am = np.take_along_axis(np.broadcast_to(flat[None, :, :, :, None], win.shape),
                            k[:, :, :, None, :], axis=3)[:, :, :, 0, :]
    return y, am.astype(np.int64)


def max_pool2d_backward(dy, argmax, input_hw, pool_size, strides=None, padding="valid"):
    dy, argmax = np.asarray(dy), np.asarray(argmax)
    B, _, _, C = dy.shape
    H, W = input_hw
    dx = np.zeros((B, H * W, C), dy.dtype)
    b = np.arange(B)[:, None, None, None]
    c = np.arange(C)[None, None, None, :]
    np.add.at(dx, (np.broadcast_to(b, dy.shape), argmax, np.broadcast_to(c, dy.shape)), dy)
    return dx.reshape(B, H, W, C)


def avg_pool2d_forward(x, pool_size, strides=None, padding="valid"):
    win, valid, _ = _pool_windows(x, pool_size, strides, padding)
    v = valid[None, :, :, :, None]
    return (np.where(v, win, 0).sum(axis=3) / valid.sum(axis=2)[None, :, :, None]).astype(
        win.dtype)


def avg_pool2d_backward(dy, input_hw, pool_size, strides=None, padding="valid"):
    dy = np.asarray(dy)
    B, _, _, C = dy.shape
    H, W = input_hw
    x0 = np.zeros((B, H, W, C), dy.dtype)
    _, valid, flat = _pool_windows(x0, pool_size, strides, padding)
    share = dy[:, :, :, None, :] / valid.sum(axis=2)[None, :, :, None, None]   # (B,OH,OW,1,C)
    share = np.where(valid[None, :, :, :, None], share, 0)
    dx = np.zeros((B, H * W, C), dy.dtype)
    idx = np.broadcast_to(np.where(valid, flat, 0)[None, :, :, :, None], share.shape)
    b = np.broadcast_to(np.arange(B)[:, None, None, None, None], share.shape)
    c = np.broadcast_to(np.arange(C)[None, None, None, None, :], share.shape)
    np.add.at(dx, (b, idx, c), share)
    return dx.reshape(B, H, W, C)


# ---- per-example gradients of GRU / SimpleRNN (twins of ops.gru_backward_dz and
# ops.simple_rnn_backward_dz): the gate gradients of every step, from the step loops above.

def gru_backward_dz(dy, cache, dh_n=None, need_dx=True):
    B, T, I = cache["shape"]
    H = cache["units"]
    kernel, rk = cache["kernel"], cache["recurrent_kernel"]
    dt = kernel.dtype
    da, dra = _lstm_act_grad(cache["activation"]), _lstm_act_grad(cache["recurrent_activation"])
    idm, rdm = cache["input_dropout_mask"], cache["recurrent_dropout_mask"]
    reset_after = cache["reset_after"]
    dh = np.zeros((B, H), dt) if dh_n is None else np.array(dh_n, dt)
    if dy is not None and not cache["return_sequences"]:
        dh, dy = dh + dy, None
    dx = np.zeros((B, T, I), dt)
    dgxs, dgrs = [None] * T, [None] * T
    for k in range(T - 1, -1, -1):
        s = cache["steps"][k]
        if dy is not None:
            dh = dh + dy[:, k]
        m = s["m"]
        dz = np.where(m, dh * (s["h"] - s["hh"]) * dra(s["z"]), 0)
        dhh = np.where(m, dh * (1 - s["z"]) * da(s["hh"]), 0)
        if reset_after:
            dr = dhh * s["aux"] * dra(s["r"])
            dgrs[k] = np.concatenate([dz, dr, dhh * s["r"]], axis=1)
            dhd = dgrs[k] @ rk.T
        else:
            drh = dhh @ rk[:, 2 * H:].T
            dr = drh * s["hd"] * dra(s["r"])
            dhd = np.concatenate([dz, dr], axis=1) @ rk[:, :2 * H].T + drh * s["r"]
        dgxs[k] = np.concatenate([dz, dr, dhh], axis=1)
        dx[:, s["t"]] = dgxs[k] @ kernel.T * (1 if idm is None else idm)
        dh = np.where(m, dh * s["z"] + dhd * (1 if rdm is None else rdm), dh)
    dgx = np.stack(dgxs) if T else np.zeros((0, B, 3 * H), dt)
    dgr = (np.stack(dgrs) if T else np.zeros((0, B, 3 * H), dt)) if reset_after else None
    return (dx if need_dx else None), dgx, dgr, dh


def simple_rnn_backward_dz(dy, cache, dh_n=None, need_dx=True):
    B, T, I = cache["shape"]
    H = cache["units"]
    kernel, rk = cache["kernel"], cache["recurrent_kernel"]
    dt = kernel.dtype
    da = _lstm_act_grad(cache["activation"])
    idm, rdm = cache["input_dropout_mask"], cache["recurrent_dropout_mask"]
    dh = np.zeros((B, H), dt) if dh_n is None else np.array(dh_n, dt)
    if dy is not None and not cache["return_sequences"]:
        dh, dy = dh + dy, None
    dx = np.zeros((B, T, I), dt)
    dps = [None] * T
    for k in range(T - 1, -1, -1):
        s = cache["steps"][k]
        if dy is not None:
            dh = dh + dy[:, k]
        dps[k] = np.where(s["m"], dh * da(s["out"]), 0)
        dx[:, s["t"]] = dps[k] @ kernel.T * (1 if idm is None else idm)
        dh = np.where(s["m"], dps[k] @ rk.T * (1 if rdm is None else rdm), dh)
    dp = np.stack(dps) if T else np.zeros((0, B, H), dt)
    return (dx if need_dx else None), dp, None, dh
