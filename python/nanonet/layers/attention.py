"""MultiHeadAttention with Keras 3's arguments, call signature and weight layout.

    mha = MultiHeadAttention(num_heads, key_dim, value_dim=None, dropout=0.0, use_bias=True,
                             output_shape=None, kernel_initializer="glorot_uniform",
                             bias_initializer="zeros", kernel_regularizer=None,
                             bias_regularizer=None, seed=None, name=..., dtype=...)
    out = mha(query, value, key=None, attention_mask=None, return_attention_scores=False,
              training=False, use_causal_mask=False, query_mask=None, value_mask=None,
              key_mask=None)

query (B, Tq, dq), value (B, Tv, dv), key (B, Tv, dk) (default: value). Per head h:
Q = query Wq[:, h] + bq[h], K = key Wk[:, h] + bk[h], V = value Wv[:, h] + bv[h],
O_h = softmax(Q K^T / sqrt(key_dim) + mask) V, out = sum_h O_h Wo[h] + bo, (B, Tq, out_dim) with
out_dim = output_shape or dq. The core is nanonet.ops.attention_forward / attention_backward (the
flash kernel: the (Tq, Tv) scores are never stored); the four projections are Dense GEMMs.

Weights, in Keras's order and shapes (so ``set_weights(keras_mha.get_weights())`` copies a Keras
layer): query kernel (dq, H, key_dim), query bias (H, key_dim), key kernel (dk, H, key_dim), key
bias (H, key_dim), value kernel (dv, H, value_dim), value bias (H, value_dim), output kernel
(H, value_dim, out_dim), output bias (out_dim,); no biases with use_bias=False.

Masks, as Keras: the masks of query, value and key (from Embedding(mask_zero=True) in a graph, or
query_mask= / value_mask= / key_mask= eagerly) combine with attention_mask (bool, broadcastable
to (B, Tq, Tv), True = may attend) and use_causal_mask (key j visible to query i when j <= i) by
AND. A query row with no visible key gives zeros before the output projection (Keras zeroes the
masked probabilities too). The output carries the query's mask.

In a graph (nanonet.Input), query, value, key and attention_mask are node inputs, in that order
(key and attention_mask when given). The per-call options (use_causal_mask,
return_attention_scores, and has_key / has_attention_mask saying which inputs were given) are
node options (Layer.call_kwargs): recorded on each call site and saved with it, so one layer may
be called with different options at different sites. (Earlier files stored them in the layer's
config as call_options; those still load.)

Dropout (Keras's: on the attention probabilities, after the softmax, kept ones scaled by
1 / (1 - dropout)) applies only with training=True. The flash kernel has no dropout, so a training
call with dropout > 0 takes a NumPy path that stores the (B, H, Tq, Tv) probabilities and its
keep mask (memory grows with Tq * Tv; the equations and the masks are the same). Masks are drawn
from the layer's own Generator when seed= is given, else from nanonet's (nanonet.set_seed).

Limits: return_attention_scores computes the (B, H, Tq, Tv) probabilities separately in NumPy
(the flash kernel never forms them), for inspection: no gradient flows back through them (they
are the probabilities before dropout, as Keras returns). attention_axes other than None (the
sequence axis) and multi-axis output_shape are not supported.
"""
from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from .. import initializers as _initializers
from .. import ops
from .. import random as _random
from .. import regularizers as _regularizers
from .base import Layer
from .node import fmt_shape, is_symbolic

__all__ = ["MultiHeadAttention", "Attention", "AdditiveAttention"]

_DEFAULT_OPTS = {"has_key": False, "has_attention_mask": False, "use_causal_mask": False,
                 "return_attention_scores": False}
_LEGACY_OPTS = {"key": "has_key", "attention_mask": "has_attention_mask"}


def _pos_int(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"MultiHeadAttention: {name} must be a positive int; got {value!r}")
    return int(value)


def _ser(obj, module):
    return None if obj is None else module.serialize(obj)


class MultiHeadAttention(Layer):
    """Multi-head scaled dot-product attention (Keras 3's arguments and weight layout).

    Per head h: ``Q = query Wq[:, h] + bq[h]``, ``K = key Wk[:, h] + bk[h]``,
    ``V = value Wv[:, h] + bv[h]``, ``O_h = softmax(Q K^T / sqrt(key_dim) + mask) V``;
    ``output = sum_h O_h Wo[h] + bo``. The core is the flash kernel
    ``nanonet.ops.attention_forward`` (the (Tq, Tv) scores are never stored). See the module
    docstring for masks, dropout and the limits.

    Args:
        num_heads (int): number of heads H.
        key_dim (int): size of each head for query and key.
        value_dim (int or None, default None): size of each head for value (key_dim if None).
        dropout (float, default 0.0): dropout rate on the attention probabilities (training).
        use_bias (bool, default True): add biases to the four projections.
        output_shape (int or None, default None): last axis of the output (dq if None).
        attention_axes (None): only None (the sequence axis) is supported.
        kernel_initializer (default "glorot_uniform"), bias_initializer (default "zeros"):
            initializers.
        kernel_regularizer, bias_regularizer (default None): penalties.
        seed (int or None, default None): seed of the layer's dropout stream.
        **kwargs: ``name``, ``trainable``, ``dtype``.

    Call: ``layer(query, value, key=None, attention_mask=None, return_attention_scores=False,
    training=False, use_causal_mask=False)``; ``attention_mask`` is boolean, broadcastable to
    (B, Tq, Tv), True where a query may attend to a key.

    Input shape: query (B, Tq, dq), value (B, Tv, dv), key (B, Tv, dk) (value if None).
    Output shape: (B, Tq, output_shape or dq); with return_attention_scores also the
    (B, H, Tq, Tv) probabilities.

    Raises:
        ValueError: a bad argument (named), an unsupported attention_axes, or mismatched
            query / value / key shapes.

    Example:

    >>> mha = nn.layers.MultiHeadAttention(num_heads=2, key_dim=4)
    >>> q = np.zeros((2, 5, 8), np.float32)
    >>> v = np.zeros((2, 3, 8), np.float32)
    >>> out, scores = mha(q, v, return_attention_scores=True)
    >>> out.shape, scores.shape
    ((2, 5, 8), (2, 2, 5, 3))
    """
    supports_masking = True
    call_kwargs = tuple(_DEFAULT_OPTS)

    def __init__(self, num_heads: int, key_dim: int, value_dim: Any = None, dropout: float = 0.0,
                 use_bias: bool = True, output_shape: Any = None, attention_axes: Any = None,
                 kernel_initializer: Any = "glorot_uniform", bias_initializer: Any = "zeros",
                 kernel_regularizer: Any = None, bias_regularizer: Any = None,
                 activity_regularizer: Any = None, kernel_constraint: Any = None,
                 bias_constraint: Any = None, seed: int | None = None, **kwargs: Any) -> None:
        kwargs.pop("flash_attention", None)  # Keras's backend choice; ours is always flash
        call_options = kwargs.pop("call_options", None)
        super().__init__(**kwargs)
        for arg, v in (("attention_axes", attention_axes),
                       ("activity_regularizer", activity_regularizer),
                       ("kernel_constraint", kernel_constraint),
                       ("bias_constraint", bias_constraint)):
            if v is not None:
                raise ValueError(f"MultiHeadAttention: {arg} is not supported; got {v!r}")
        self.num_heads = _pos_int(num_heads, "num_heads")
        self.key_dim = _pos_int(key_dim, "key_dim")
        self.value_dim = self.key_dim if value_dim is None else _pos_int(value_dim, "value_dim")
        if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or \
                not 0.0 <= dropout < 1.0:
            raise ValueError(f"MultiHeadAttention: dropout must be a float in [0, 1); got "
                             f"{dropout!r}")
        self.dropout = float(dropout)
        if not isinstance(use_bias, (bool, np.bool_)):
            raise ValueError(f"MultiHeadAttention: use_bias must be True or False; got "
                             f"{use_bias!r}")
        self.use_bias = bool(use_bias)
        if output_shape is not None:
            shp = (output_shape,) if isinstance(output_shape, numbers.Integral) else output_shape
            if not isinstance(shp, (tuple, list)) or len(shp) != 1:
                raise ValueError(f"MultiHeadAttention: output_shape must be an int or a 1-tuple "
                                 f"(multi-axis outputs are not supported); got {output_shape!r}")
            output_shape = _pos_int(shp[0], "output_shape")
        self.output_shape_arg = output_shape
        self.kernel_initializer = _initializers.get(kernel_initializer)
        self.bias_initializer = _initializers.get(bias_initializer)
        self.kernel_regularizer = _regularizers.get(kernel_regularizer)
        self.bias_regularizer = _regularizers.get(bias_regularizer)
        self.seed = seed
        self._generator = _random.make_generator(seed, "MultiHeadAttention")
        # call_options: the node options as earlier files stored them on the layer; they apply to
        # a list-form call without options (what loading such a file makes).
        self._legacy_opts = {}
        if call_options is not None:
            if not isinstance(call_options, dict) or set(call_options) - set(_LEGACY_OPTS) - \
                    set(_DEFAULT_OPTS):
                raise ValueError(f"MultiHeadAttention: call_options must be a dict with keys "
                                 f"{sorted(set(_LEGACY_OPTS) | set(_DEFAULT_OPTS))}; got "
                                 f"{call_options!r}")
            self._legacy_opts = {_LEGACY_OPTS.get(k, k): True for k, v in call_options.items()
                                 if v}

    # -- build -------------------------------------------------------------------------------
    def build(self, query_shape: Any, value_shape: Any = None, key_shape: Any = None) -> None:
        """Keras's build(query_shape, value_shape, key_shape=None), or one list of the shapes
        [query, value(, key)]."""
        if value_shape is None:
            shapes = list(query_shape) if isinstance(query_shape, list) else None
            if not shapes or len(shapes) < 2:
                raise ValueError(f"MultiHeadAttention {self.name!r}: build needs the query and "
                                 f"value shapes; got {query_shape!r}")
            query_shape, value_shape = shapes[0], shapes[1]
            key_shape = shapes[2] if len(shapes) > 2 else None
        key_shape = value_shape if key_shape is None else key_shape
        dims = []
        for what, s in (("query", query_shape), ("value", value_shape), ("key", key_shape)):
            s = tuple(s)
            if len(s) != 3 or s[-1] is None:
                raise ValueError(f"MultiHeadAttention {self.name!r}: {what} must be (batch, "
                                 f"steps, features) with known features; got shape {s}")
            dims.append(int(s[-1]))
        dq, dv, dk = dims
        H, kd, vd = self.num_heads, self.key_dim, self.value_dim
        out = self.output_shape_arg or dq

        def w(shape, name, bias=False):
            return self.add_weight(shape=shape, name=name,
                                   initializer=self.bias_initializer if bias
                                   else self.kernel_initializer,
                                   regularizer=self.bias_regularizer if bias
                                   else self.kernel_regularizer)
        self.query_kernel = w((dq, H, kd), "query_kernel")
        self.query_bias = w((H, kd), "query_bias", True) if self.use_bias else None
        self.key_kernel = w((dk, H, kd), "key_kernel")
        self.key_bias = w((H, kd), "key_bias", True) if self.use_bias else None
        self.value_kernel = w((dv, H, vd), "value_kernel")
        self.value_bias = w((H, vd), "value_bias", True) if self.use_bias else None
        self.output_kernel = w((H, vd, out), "output_kernel")
        self.output_bias = w((out,), "output_bias", True) if self.use_bias else None
        self.built = True

    # -- calling -----------------------------------------------------------------------------
    def __call__(self, query: Any = None, value: Any = None, key: Any = None,
                 attention_mask: Any = None, return_attention_scores: Any = False,
                 training: bool = False, use_causal_mask: Any = False, query_mask: Any = None,
                 value_mask: Any = None, key_mask: Any = None, **kwargs: Any) -> Any:
        if "inputs" in kwargs:
            query = kwargs.pop("inputs")
        if query is None:
            raise TypeError(f"MultiHeadAttention {self.name!r}: missing the query")
        has = {k: bool(kwargs.pop(k, False)) for k in ("has_key", "has_attention_mask")}
        if kwargs:
            raise TypeError(f"MultiHeadAttention {self.name!r}: unexpected call arguments "
                            f"{sorted(kwargs)}")
        if value is None:
            # The node form: one list [query, value(, key)(, attention_mask)] and the node
            # options (what a graph file rebuilds).
            if not isinstance(query, (list, tuple)) or len(query) < 2:
                raise TypeError(f"MultiHeadAttention {self.name!r}: call as mha(query, value, "
                                "key=None, ...); value is missing")
            opts = {"use_causal_mask": bool(use_causal_mask),
                    "return_attention_scores": bool(return_attention_scores), **has}
            if not any(opts.values()):
                opts = dict(_DEFAULT_OPTS, **self._legacy_opts)
            query = list(query)
            n = 2 + opts["has_key"] + opts["has_attention_mask"]
            if len(query) != n:
                raise ValueError(f"MultiHeadAttention {self.name!r}: the node options {opts} "
                                 f"need {n} inputs; got {len(query)}")
            query, value = query[0], query[1:]
            key = value[1] if opts["has_key"] else None
            attention_mask = value[-1] if opts["has_attention_mask"] else None
            value = value[0]
            use_causal_mask = opts["use_causal_mask"]
            return_attention_scores = opts["return_attention_scores"]
        opts = {"has_key": key is not None, "has_attention_mask": attention_mask is not None,
                "use_causal_mask": bool(use_causal_mask),
                "return_attention_scores": bool(return_attention_scores)}
        tensors = [query, value] + ([key] if key is not None else []) + \
            ([attention_mask] if attention_mask is not None else [])
        if any(is_symbolic(t) for t in tensors):
            if any(m is not None for m in (query_mask, value_mask, key_mask)):
                raise TypeError(f"MultiHeadAttention {self.name!r}: in a graph the masks come "
                                "with the tensors (e.g. Embedding(mask_zero=True)); do not pass "
                                "query_mask / value_mask / key_mask")
            for i, t in enumerate(tensors[:3 if key is not None else 2]):
                if not is_symbolic(t):
                    raise TypeError(f"MultiHeadAttention {self.name!r}: query, value and key "
                                    f"must all be symbolic in a graph; input {i} is "
                                    f"{type(t).__name__}")
            if not self.built:
                self._maybe_build([t.shape for t in tensors[:3 if key is not None else 2]])
            return Layer.__call__(self, tensors, training=training,
                                  **{k: True for k, v in opts.items() if v})
        arrays = [t if isinstance(t, np.ndarray) else np.asarray(t) for t in tensors]
        if not self.built:
            self._maybe_build([(None,) + a.shape[1:]
                               for a in arrays[:3 if key is not None else 2]])
        masks = [query_mask, value_mask] + ([key_mask] if key is not None else []) + \
            ([None] if attention_mask is not None else [])
        if all(m is None for m in masks):
            masks = None
        y, ctx = self._forward(arrays, training, masks, opts)
        if training:
            self._ctx = ctx
        return y

    def _check_input_shapes(self, shapes):
        if not self.built or not isinstance(shapes, list) or len(shapes) < 2:
            return
        dq, dv = self.query_kernel.shape[0], self.value_kernel.shape[0]
        want = [("query", dq, shapes[0]), ("value", dv, shapes[1])]
        for what, d, s in want:
            if len(s) != 3 or (s[-1] is not None and s[-1] != d):
                raise ValueError(f"MultiHeadAttention {self.name!r} was built for {what} of shape "
                                 f"(None, None, {d}); it is called on shape {fmt_shape(s)}")

    def compute_output_shape(self, input_shape: Any, return_attention_scores: Any = False,
                             **options: Any) -> Any:
        shapes = input_shape if isinstance(input_shape, list) else [input_shape]
        q = tuple(shapes[0])
        v = tuple(shapes[1]) if len(shapes) > 1 else q
        out = (q[0], q[1], self.output_kernel.shape[-1] if self.built
               else (self.output_shape_arg or q[-1]))
        if return_attention_scores:
            return [out, (q[0], self.num_heads, q[1], v[1])]
        return out

    def compute_mask(self, inputs: Any, mask: Any = None, return_attention_scores: Any = False,
                     **options: Any) -> Any:
        qm = mask[0] if isinstance(mask, (list, tuple)) else None
        return [qm, None] if return_attention_scores else qm

    # -- forward / backward ------------------------------------------------------------------
    def forward(self, inputs: Any, training: bool = False, mask: Any = None, **options: Any) -> Any:
        """inputs: [query, value(, key)(, attention_mask)] as the node options say; mask: the
        inputs' masks (a list aligned with them) or None; options: the node options."""
        opts = dict(_DEFAULT_OPTS, **options) if options else \
            dict(_DEFAULT_OPTS, **self._legacy_opts)
        return self._forward(inputs, training, mask, opts)

    def _project(self, x, kernel, bias, heads_dim):
        """(B, T, d) -> (B, H, T, heads_dim) and the 2-D input kept for backward."""
        B, T, d = x.shape
        x2 = np.ascontiguousarray(x.reshape(B * T, d))
        y = ops.dense_forward(x2, kernel.reshape(d, -1),
                              None if bias is None else bias.reshape(-1))
        # a (B, H, T, heads_dim) view: the attention kernels read strided heads, no copy
        return y.reshape(B, T, self.num_heads, heads_dim).transpose(0, 2, 1, 3), x2

    def _qkv_kernel(self):
        """The three projection kernels side by side, (d, H * (2 key_dim + value_dim)), and
        their biases: self-attention projects once, with one GEMM."""
        d = self.query_kernel.shape[0]
        ws = (self.query_kernel, self.key_kernel, self.value_kernel)
        kernel = np.concatenate([w.reshape(d, -1) for w in ws], axis=1)
        bias = None if not self.use_bias else np.concatenate(
            [b.reshape(-1) for b in (self.query_bias, self.key_bias, self.value_bias)])
        return kernel, bias

    def _project_qkv(self, x):
        """Self-attention (query, key and value one array): (Q, K, V, x2) from one GEMM."""
        B, T, d = x.shape
        H, kd, vd = self.num_heads, self.key_dim, self.value_dim
        x2 = np.ascontiguousarray(x.reshape(B * T, d))
        kernel, bias = self._qkv_kernel()
        y = ops.dense_forward(x2, kernel, bias).reshape(B, T, H * (2 * kd + vd))

        def heads(y, width):  # a view; the attention kernels read strided heads
            return y.reshape(B, T, H, width).transpose(0, 2, 1, 3)
        return (heads(y[..., :H * kd], kd), heads(y[..., H * kd:2 * H * kd], kd),
                heads(y[..., 2 * H * kd:], vd), x2)

    def _mask_for_kernel(self, qm, vm, km, am, B, Tq, Tv):
        """None, (B, Tv) key mask or (B, Tq, Tv) full mask from Keras's masks."""
        def as_mask(m, shape, what):
            m = np.asarray(m)
            if m.shape != shape:
                raise ValueError(f"MultiHeadAttention {self.name!r}: {what} must be "
                                 f"(batch, steps) = {shape}; got {m.shape}")
            return m.astype(bool, copy=False)
        key = None
        for m, what in ((vm, "value mask"), (km, "key mask")):
            if m is not None:
                m = as_mask(m, (B, Tv), what)
                key = m if key is None else key & m
        if qm is None and am is None:
            return None if key is None else np.ascontiguousarray(key)
        full = np.ones((B, Tq, Tv), dtype=bool)
        if qm is not None:
            full &= as_mask(qm, (B, Tq), "query mask")[:, :, None]
        if key is not None:
            full &= key[:, None, :]
        if am is not None:
            am = np.asarray(am)
            try:
                full &= np.broadcast_to(am.astype(bool, copy=False), (B, Tq, Tv))
            except ValueError:
                raise ValueError(f"MultiHeadAttention {self.name!r}: attention_mask must "
                                 f"broadcast to (batch, query steps, value steps) = "
                                 f"{(B, Tq, Tv)}; got shape {am.shape}") from None
        return full

    def _forward(self, inputs, training, mask, opts):
        cls = f"MultiHeadAttention {self.name!r}"
        if not isinstance(inputs, (list, tuple)):
            raise ValueError(f"{cls}: inputs must be [query, value, ...]; got one tensor")
        n_want = 2 + opts["has_key"] + opts["has_attention_mask"]
        if len(inputs) != n_want:
            raise ValueError(f"{cls}: expected {n_want} inputs (query, value"
                             f"{', key' if opts['has_key'] else ''}"
                             f"{', attention_mask' if opts['has_attention_mask'] else ''}); got "
                             f"{len(inputs)}")
        query = self._float_input(inputs[0])
        value = self._float_input(inputs[1])
        key = self._float_input(inputs[2]) if opts["has_key"] else value
        am = inputs[-1] if opts["has_attention_mask"] else None
        masks = list(mask) if isinstance(mask, (list, tuple)) else [None] * n_want
        masks += [None] * (n_want - len(masks))
        qm, vm = masks[0], masks[1]
        km = masks[2] if opts["has_key"] else None
        for what, x, w in (("query", query, self.query_kernel), ("value", value,
                                                                 self.value_kernel),
                           ("key", key, self.key_kernel)):
            if x.ndim != 3 or x.shape[-1] != w.shape[0]:
                raise ValueError(f"{cls}: {what} must be (batch, steps, {w.shape[0]}); got shape "
                                 f"{x.shape}")
        B, Tq = query.shape[:2]
        Tv = value.shape[1]
        if value.shape[0] != B or key.shape[0] != B or key.shape[1] != Tv:
            raise ValueError(f"{cls}: query {query.shape}, value {value.shape} and key "
                             f"{key.shape} must share the batch size, and key and value the "
                             "steps")
        kmask = self._mask_for_kernel(qm, vm, km, am, B, Tq, Tv)
        causal = opts["use_causal_mask"]
        scale = 1.0 / math.sqrt(self.key_dim)
        fused = query is value and key is value and query.shape[-1] == \
            self.key_kernel.shape[0] == self.value_kernel.shape[0]
        if fused:
            Q, K, V, q2 = self._project_qkv(query)
            k2 = v2 = q2
        else:
            Q, q2 = self._project(query, self.query_kernel, self.query_bias, self.key_dim)
            K, k2 = self._project(key, self.key_kernel, self.key_bias, self.key_dim)
            V, v2 = self._project(value, self.value_kernel, self.value_bias, self.value_dim)
        drop = None
        if training and self.dropout > 0.0:
            O, lse, drop = self._dropout_attention(Q, K, V, kmask, causal, scale)
        else:
            O, lse = ops.attention_forward(Q, K, V, kmask, causal, scale)
        H, vd = self.num_heads, self.value_dim
        o2 = np.ascontiguousarray(O.transpose(0, 2, 1, 3).reshape(B * Tq, H * vd))
        out_dim = self.output_kernel.shape[-1]
        y = ops.dense_forward(o2, self.output_kernel.reshape(H * vd, out_dim),
                              self.output_bias).reshape(B, Tq, out_dim)
        result = y
        if opts["return_attention_scores"]:
            result = [y, self._probabilities(Q, K, kmask, causal, scale)]
        ctx = None
        if training:
            ctx = (q2, k2, v2, Q, K, V, O, lse, o2, kmask, causal, scale, (B, Tq, Tv),
                   opts, fused, drop)
        return result, ctx

    def _dropout_attention(self, Q, K, V, kmask, causal, scale):
        """The training path with dropout: (O, None, (P, Z)) with P the probabilities and
        Z = keep / (1 - dropout); O = (P * Z) V."""
        P = self._probabilities(Q, K, kmask, causal, scale)
        rng = self._generator if self._generator is not None else _random.get_generator()
        keep = rng.random(P.shape) >= self.dropout
        Z = keep.astype(self.dtype) * np.dtype(self.dtype).type(1.0 / (1.0 - self.dropout))
        O = np.ascontiguousarray(np.matmul(P * Z, V))
        return O, None, (P, Z)

    @staticmethod
    def _dropout_attention_backward(dO, Q, K, V, drop, scale):
        """Gradient of O = (P * Z) V, P = softmax(scale Q K^T + mask): (dQ, dK, dV)."""
        P, Z = drop
        dV = np.matmul(np.swapaxes(P * Z, -1, -2), dO)
        dP = np.matmul(dO, np.swapaxes(V, -1, -2)) * Z
        dS = P * (dP - np.sum(dP * P, axis=-1, keepdims=True)) * Q.dtype.type(scale)
        dQ = np.matmul(dS, K)
        dK = np.matmul(np.swapaxes(dS, -1, -2), Q)
        return dQ, dK, dV

    @staticmethod
    def _probabilities(Q, K, kmask, causal, scale):
        """The (B, H, Tq, Tv) attention probabilities (inspection only; 0 where masked)."""
        s = np.einsum("bhid,bhjd->bhij", Q, K) * Q.dtype.type(scale)
        B, _, Tq, Tv = s.shape
        ok = np.ones((B, 1, Tq, Tv), dtype=bool)
        if kmask is not None:
            ok &= kmask[:, None, None, :] if kmask.ndim == 2 else kmask[:, None]
        if causal:
            ok &= np.tril(np.ones((Tq, Tv), dtype=bool))
        s = np.where(ok, s, -np.inf)
        mx = s.max(axis=-1, keepdims=True)
        e = np.where(ok, np.exp(s - np.where(np.isfinite(mx), mx, 0)), 0)
        den = e.sum(axis=-1, keepdims=True)
        return (e / np.where(den > 0, den, 1)).astype(Q.dtype)

    def backprop(self, ctx: Any, dy: Any, need_dx: Any = True) -> Any:
        """dy for the output (with return_attention_scores: [dy, dscores], dscores ignored).
        Returns [dquery, dvalue(, dkey)(, None for attention_mask)] and the weight gradients."""
        return self._backprop(ctx, dy, need_dx, None)

    def _backprop(self, ctx, dy, need_dx, rows):
        """backprop; with rows a list (DP-SGD), the four projections' (x2, dz2) row pairs are
        appended to it and no weight gradients are formed."""
        q2, k2, v2, Q, K, V, O, lse, o2, kmask, causal, scale, (B, Tq, Tv), opts, fused, \
            drop = ctx
        if opts["return_attention_scores"] and isinstance(dy, (list, tuple)):
            dy = dy[0]
        H, kd, vd = self.num_heads, self.key_dim, self.value_dim
        out_dim = self.output_kernel.shape[-1]
        dy = np.ascontiguousarray(dy, dtype=self.dtype)
        if dy.shape != (B, Tq, out_dim):
            raise ValueError(f"MultiHeadAttention {self.name!r}: dy must have the output's shape "
                             f"{(B, Tq, out_dim)}; got {dy.shape}")
        if rows is None:
            do2, dWo, dbo = ops.dense_backward(dy.reshape(B * Tq, out_dim), o2,
                                               self.output_kernel.reshape(H * vd, out_dim), None)
        else:
            dy2 = dy.reshape(B * Tq, out_dim)
            rows.append((o2, dy2))
            do2 = ops.matmul(dy2, self.output_kernel.reshape(H * vd, out_dim), transpose_b=True)
        dO = do2.reshape(B, Tq, H, vd).transpose(0, 2, 1, 3)  # a view, read strided
        if drop is not None:
            dQ, dK, dV = self._dropout_attention_backward(dO, Q, K, V, drop, scale)
        else:
            dQ, dK, dV = ops.attention_backward(dO, Q, K, V, O, lse, kmask, causal, scale)

        def unproject(dP, x2, kernel, T, width):
            d2 = np.ascontiguousarray(dP.transpose(0, 2, 1, 3).reshape(B * T, H * width))
            if rows is not None:
                rows.append((x2, d2))
                dx = ops.matmul(d2, kernel.reshape(kernel.shape[0], -1), transpose_b=True) \
                    if need_dx else None
                return (None if dx is None else dx.reshape(B, T, -1)), None, None
            dx, dW, db = ops.dense_backward(d2, x2, kernel.reshape(kernel.shape[0], -1), None,
                                            need_dx=need_dx)
            return (None if dx is None else dx.reshape(B, T, -1)), dW.reshape(kernel.shape), \
                db.reshape(H, width)
        if fused and rows is None:  # one GEMM for the three projections: dx is all of it
            def flat(dP, width):
                return dP.transpose(0, 2, 1, 3).reshape(B * Tq, H * width)
            d2 = np.concatenate([flat(dQ, kd), flat(dK, kd), flat(dV, vd)], axis=1)
            dx3, dW3, db3 = ops.dense_backward(d2, q2, self._qkv_kernel()[0], None,
                                               need_dx=need_dx)
            cuts = np.cumsum([H * kd, H * kd])
            dWq, dWk, dWv = (w.reshape(k.shape) for w, k in zip(
                np.split(dW3, cuts, axis=1),
                (self.query_kernel, self.key_kernel, self.value_kernel)))
            dbq, dbk, dbv = (b.reshape(H, -1) for b in np.split(db3, cuts))
            dq = None if dx3 is None else dx3.reshape(B, Tq, -1)
            dk = None if dq is None else np.zeros_like(dq)
            dv = dk
        else:
            dq, dWq, dbq = unproject(dQ, q2, self.query_kernel, Tq, kd)
            dk, dWk, dbk = unproject(dK, k2, self.key_kernel, Tv, kd)
            dv, dWv, dbv = unproject(dV, v2, self.value_kernel, Tv, vd)
        if rows is None:
            dWo = dWo.reshape(self.output_kernel.shape)
            if self.use_bias:
                grads = [dWq, dbq, dWk, dbk, dWv, dbv, dWo, dbo]
            else:
                grads = [dWq, dWk, dWv, dWo]
        if not need_dx:
            dx = None
        else:
            dx = [dq, dv] if not opts["has_key"] else [dq, dv, dk]
            if not opts["has_key"]:
                dx[1] = dv + dk  # key is value
            if opts["has_attention_mask"]:
                dx.append(None)
        return dx, (None if rows is not None else self._trainable_grads(grads))

    # DP-SGD (nanonet.privacy): the four projections are Dense layers on (B, T, .) rows, so each
    # example's gradient norm is the Gram trick on (x2, dz2) per projection.
    def dp_backprop(self, ctx: Any, dy: Any, need_dx: Any = True) -> Any:
        rows = []  # output, query, key, value projections
        dx, _ = self._backprop(ctx, dy, need_dx, rows)
        B = ctx[12][0]
        sq = np.zeros(B)
        for x2, d2 in rows:
            x3, d3 = x2.reshape(B, -1, x2.shape[1]), d2.reshape(B, -1, d2.shape[1])
            sq += ops.per_example_matmul_sq_norms(x3, d3)
            if self.use_bias:
                sq += np.square(d3.sum(axis=1, dtype=np.float64)).sum(axis=1)
        return dx, sq, (rows, B)

    def dp_grads(self, state: Any, scale: bool) -> Any:
        rows, B = state
        out = []
        kernels = (self.output_kernel, self.query_kernel, self.key_kernel, self.value_kernel)
        biases = (self.output_bias, self.query_bias, self.key_bias, self.value_bias) \
            if self.use_bias else (None,) * 4
        for (x2, d2), kernel, bias in zip(rows, kernels, biases):
            ds = d2 * np.repeat(scale, d2.shape[0] // B)[:, None]
            out.append((ops.matmul(x2, ds, transpose_a=True).reshape(kernel.shape),
                        None if bias is None else ds.sum(axis=0).reshape(bias.shape)))
        (dWo, dbo), (dWq, dbq), (dWk, dbk), (dWv, dbv) = out
        if self.use_bias:
            grads = [dWq, dbq, dWk, dbk, dWv, dbv, dWo, dbo]
        else:
            grads = [dWq, dWk, dWv, dWo]
        return self._trainable_grads(grads)

    def backward(self, dy: Any) -> Any:
        """Single-call API: gradients of the last call(..., training=True) -> [dquery, dvalue]
        (plus dkey when a key was given)."""
        dx = super().backward(dy)
        if isinstance(dx, list) and dx and dx[-1] is None:
            dx = dx[:-1]
        return dx

    def get_config(self) -> dict[str, Any]:
        config = {**super().get_config(), "num_heads": self.num_heads, "key_dim": self.key_dim,
                  "value_dim": self.value_dim, "dropout": self.dropout, "use_bias": self.use_bias,
                  "output_shape": self.output_shape_arg,
                  "kernel_initializer": _initializers.serialize(self.kernel_initializer),
                  "bias_initializer": _initializers.serialize(self.bias_initializer),
                  "kernel_regularizer": _ser(self.kernel_regularizer, _regularizers),
                  "bias_regularizer": _ser(self.bias_regularizer, _regularizers),
                  "seed": self.seed}
        return config

    def __repr__(self):
        return (f"<MultiHeadAttention name={self.name!r}, num_heads={self.num_heads}, "
                f"key_dim={self.key_dim}, value_dim={self.value_dim}>")


# -- Luong and Bahdanau attention ----------------------------------------------------------------
def _masked_softmax(s, ok):
    """softmax over the last axis of s where ok (broadcastable bool or None); 0 where not ok, and
    a row with no ok entry is all zeros (not NaN, not uniform)."""
    if ok is None:
        e = np.exp(s - s.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    s = np.where(ok, s, -np.inf)
    mx = s.max(axis=-1, keepdims=True)
    e = np.where(ok, np.exp(s - np.where(np.isfinite(mx), mx, 0)), 0)
    den = e.sum(axis=-1, keepdims=True)
    return e / np.where(den > 0, den, 1)


def _example_sums(x):
    """(B,): the sum of each example's entries of x (B, ...)."""
    return x.reshape(x.shape[0], -1).sum(axis=1)


class Attention(Layer):
    """Dot-product (Luong) attention with Keras 3's arguments, call and weights.

        att = Attention(use_scale=False, score_mode="dot", dropout=0.0, seed=None, ...)
        out = att([query, value(, key)], mask=[query_mask, value_mask], training=False,
                  return_attention_scores=False, use_causal_mask=False)

    query (B, Tq, d), value (B, Tv, dv), key (B, Tv, d) (default: value) -> (B, Tq, dv):
    scores (B, Tq, Tv) = s q k^T ("dot") or c sum_d tanh(s (q_i + k_j)) ("concat"), with s the
    learned scalar ``scale`` (use_scale=True, initialised to 1) or 1 and c the learned scalar
    ``concat_score_weight`` ("concat" only, initialised to 1); weights = softmax(scores) over the
    visible values (the value mask, AND j <= i with use_causal_mask), dropout on the weights when
    training, out = weights value, zeroed at masked query steps. The output carries the query's
    mask; return_attention_scores=True also returns the (B, Tq, Tv) weights (after dropout, as
    Keras; no gradient flows back through them). A query step that sees no value gets zeros
    (Keras gives the mean of the values there). The key's own mask is ignored, as in Keras.

    "dot" without dropout runs on the flash kernel (nanonet.ops.attention_forward, heads = 1:
    the scores are never stored); "concat" and dropout build the (B, Tq, Tv) weights in NumPy,
    "concat" also a (B, Tq, Tv, d) tanh tensor (memory grows with Tq * Tv * d).
    In a graph, use_causal_mask and return_attention_scores are node options (call_kwargs).

    Args:
        use_scale (bool, default False): learn the scalar ``scale`` s (initialised to 1).
        score_mode (str, default "dot"): "dot" (s q k^T) or "concat"
            (c sum_d tanh(s (q_i + k_j)), with the learned scalar ``concat_score_weight`` c).
        dropout (float, default 0.0): dropout rate on the attention weights, in training.
        seed (int or None, default None): seed of the layer's dropout stream.
        **kwargs: ``name``, ``trainable``, ``dtype``.

    Call: ``layer([query, value(, key)], mask=None, training=False,
    return_attention_scores=False, use_causal_mask=False)``; mask = [query_mask, value_mask],
    each (B, Tq) / (B, Tv) boolean or None.

    Input shape: query (B, Tq, d), value (B, Tv, dv), key (B, Tv, d) (value if omitted).
    Output shape: (B, Tq, dv); with return_attention_scores, [output, (B, Tq, Tv) weights].

    Raises:
        ValueError: a bad argument (named), inputs that are not a list of 2 or 3 tensors, or
            query and key of different features / mismatched batch and steps.

    Example:

    >>> att = nn.layers.Attention()
    >>> q = np.ones((1, 2, 4), np.float32)
    >>> out, weights = att([q, q], return_attention_scores=True, use_causal_mask=True)
    >>> out.shape
    (1, 2, 4)
    >>> weights.tolist()  # step 0 sees only itself; equal scores share the weight
    [[[1.0, 0.0], [0.5, 0.5]]]
    """
    supports_masking = True
    call_kwargs = ("use_causal_mask", "return_attention_scores")
    _SCORE_MODES = ("dot", "concat")

    def __init__(self, use_scale: Any = False, score_mode: Any = "dot", dropout: float = 0.0,
                 seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        cls = type(self).__name__
        if not isinstance(use_scale, (bool, np.bool_)):
            raise ValueError(f"{cls}: use_scale must be True or False; got {use_scale!r}")
        if score_mode not in self._SCORE_MODES:
            raise ValueError(f"{cls}: score_mode must be one of {self._SCORE_MODES}; got "
                             f"{score_mode!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or \
                not 0.0 <= dropout < 1.0:
            raise ValueError(f"{cls}: dropout must be a float in [0, 1); got {dropout!r}")
        self.use_scale = bool(use_scale)
        self.score_mode = score_mode
        self.dropout = float(dropout)
        self.seed = seed
        self._generator = _random.make_generator(seed, cls)
        self.scale = None
        self.concat_score_weight = None

    def _check_shapes(self, shapes):
        """[query, value(, key)] shapes -> (dq, dv, dk); ValueError naming what is wrong."""
        cls = f"{type(self).__name__} {self.name!r}"
        if not isinstance(shapes, (list, tuple)) or not 2 <= len(shapes) <= 3 or \
                not all(isinstance(s, (list, tuple)) for s in shapes):
            raise ValueError(f"{cls}: inputs must be a list [query, value] or [query, value, "
                             f"key]; got {shapes!r}")
        dims = []
        for what, s in zip(("query", "value", "key"), shapes):
            if len(s) != 3 or s[-1] is None:
                raise ValueError(f"{cls}: {what} must be (batch, steps, features) with known "
                                 f"features; got shape {fmt_shape(tuple(s))}")
            dims.append(int(s[-1]))
        dk = dims[2] if len(dims) > 2 else dims[1]
        if dk != dims[0]:
            raise ValueError(f"{cls}: query and key must have the same features; got query "
                             f"{dims[0]} and key {dk}")
        return dims[0], dims[1], dk

    def build(self, input_shape: Any) -> None:
        self._check_shapes(input_shape)
        if self.use_scale:
            self.scale = self.add_weight(shape=(), initializer="ones", name="scale")
        if self.score_mode == "concat":
            self.concat_score_weight = self.add_weight(shape=(), initializer="ones",
                                                       name="concat_score_weight")
        self.built = True

    def _check_input_shapes(self, shapes):
        self._check_shapes(shapes)

    def compute_output_shape(self, input_shape: Any, return_attention_scores: Any = False,
                             **options: Any) -> Any:
        dq, dv, _ = self._check_shapes(input_shape)
        q, v = tuple(input_shape[0]), tuple(input_shape[1])
        out = q[:2] + (dv,)
        return [out, q[:2] + (v[1],)] if return_attention_scores else out

    def compute_mask(self, inputs: Any, mask: Any = None, return_attention_scores: Any = False,
                     **options: Any) -> Any:
        qm = mask[0] if isinstance(mask, (list, tuple)) else None
        return [qm, None] if return_attention_scores else qm

    # -- scores: the part Attention and AdditiveAttention differ in ------------------------------
    def _concat_params(self):
        """(a, w, c) of scores = c sum_d w_d tanh(a (q_i + k_j)); a, c scalars, w (d,) or 1."""
        one = np.dtype(self.dtype).type(1.0)
        return (self.scale[()] if self.use_scale else one), one, self.concat_score_weight[()]

    def _concat_grads(self, da, dw, dc):
        return ([da] if self.use_scale else []) + [dc]

    def _dot_grads(self, da):
        return [da] if self.use_scale else []

    # -- forward / backward ---------------------------------------------------------------------
    def forward(self, inputs: Any, training: bool = False, mask: Any = None,
                use_causal_mask: Any = False, return_attention_scores: Any = False) -> Any:
        cls = f"{type(self).__name__} {self.name!r}"
        if not isinstance(inputs, (list, tuple)) or not 2 <= len(inputs) <= 3:
            got = type(inputs).__name__
            if isinstance(inputs, (list, tuple)):
                got += f" of {len(inputs)}"
            raise ValueError(f"{cls}: inputs must be a list [query, value] or [query, value, "
                             f"key]; got {got}")
        q = self._float_input(inputs[0])
        v = self._float_input(inputs[1])
        k = self._float_input(inputs[2]) if len(inputs) > 2 else v
        self._check_shapes([q.shape, v.shape, k.shape])
        B, Tq, d = q.shape
        Tv = v.shape[1]
        if v.shape[0] != B or k.shape[:2] != (B, Tv):
            raise ValueError(f"{cls}: query {q.shape}, value {v.shape} and key {k.shape} must "
                             "share the batch size, and key and value the steps")
        if mask is not None and (not isinstance(mask, (list, tuple)) or
                                 not 2 <= len(mask) <= 3):
            raise ValueError(f"{cls}: mask must be a list [query_mask, value_mask]; got "
                             f"{type(mask).__name__}")
        qm, vm = (mask[0], mask[1]) if mask is not None else (None, None)

        def as_mask(m, shape, what):
            m = np.asarray(m)
            if m.shape != shape:
                raise ValueError(f"{cls}: {what} must be (batch, steps) = {shape}; got "
                                 f"{m.shape}")
            return np.ascontiguousarray(m, dtype=bool)
        qm = None if qm is None else as_mask(qm, (B, Tq), "query mask")
        vm = None if vm is None else as_mask(vm, (B, Tv), "value mask")
        causal = bool(use_causal_mask)
        drop = training and self.dropout > 0.0
        state = None
        if self.score_mode == "dot" and not drop and type(self) is Attention:
            a = self.scale[()] if self.use_scale else np.dtype(self.dtype).type(1.0)
            Q = np.ascontiguousarray((q * a)[:, None])
            K, V = k[:, None], v[:, None]
            O, lse = ops.attention_forward(Q, K, V, vm, causal, 1.0)
            out = O[:, 0]
            P = None
            if return_attention_scores:
                P = _masked_softmax(np.matmul(Q[:, 0], np.swapaxes(k, 1, 2)),
                                    self._visible(vm, causal, Tq, Tv)).astype(self.dtype)
            if training:
                state = ("flash", Q, K, V, O, lse, a)
        else:
            scores, sctx = self._scores(q, k)
            ok = self._visible(vm, causal, Tq, Tv)
            P = _masked_softmax(scores, ok).astype(self.dtype)
            Z = None
            if drop:
                rng = self._generator if self._generator is not None \
                    else _random.get_generator()
                Z = (rng.random(P.shape) >= self.dropout).astype(self.dtype) * \
                    np.dtype(self.dtype).type(1.0 / (1.0 - self.dropout))
            W = P if Z is None else P * Z
            out = np.matmul(W, v)
            if training:
                state = ("scores", sctx, P, Z, W)
            P = W
        if qm is not None:
            out = np.where(qm[..., None], out, 0).astype(self.dtype)
        out = np.ascontiguousarray(out, dtype=self.dtype)
        result = [out, P] if return_attention_scores else out
        ctx = None
        if training:
            ctx = (state, q, v, k, len(inputs) > 2, qm, vm, causal)
        return result, ctx

    @staticmethod
    def _visible(vm, causal, Tq, Tv):
        """None or a bool array broadcastable to (B, Tq, Tv): which values each query sees."""
        ok = None if vm is None else vm[:, None, :]
        if causal:
            tri = np.tril(np.ones((Tq, Tv), dtype=bool))[None]
            ok = tri if ok is None else ok & tri
        return ok

    def _scores(self, q, k):
        """(scores (B, Tq, Tv), what _scores_backward needs)."""
        if self.score_mode == "dot":
            a = self.scale[()] if self.use_scale else np.dtype(self.dtype).type(1.0)
            raw = np.matmul(q, np.swapaxes(k, 1, 2))
            return a * raw, ("dot", raw, a)
        a, w, c = self._concat_params()
        t = np.tanh(a * (q[:, :, None, :] + k[:, None, :, :]))  # (B, Tq, Tv, d)
        return c * (t @ w if np.ndim(w) else t.sum(axis=-1)), ("concat", t, a, w, c)

    def _scores_backward(self, sctx, G, q, k):
        """(dq, dk, weight gradients) from G = d loss / d scores."""
        if sctx[0] == "dot":
            _, raw, a = sctx
            dq = a * np.matmul(G, k)
            dk = a * np.matmul(np.swapaxes(G, 1, 2), q)
            return dq, dk, self._dot_grads(_example_sums(G * raw))
        _, t, a, w, c = sctx
        # scores = c sum_d w_d t_d, t = tanh(u), u = a (q_i + k_j)
        du = (c * G)[..., None] * w * (1 - t * t)
        dq = a * du.sum(axis=2)
        dk = a * du.sum(axis=1)
        da = _example_sums(du * (q[:, :, None, :] + k[:, None, :, :]))
        dw = c * np.einsum("bij,bijd->bd", G, t)
        dc = _example_sums(G * (t @ w if np.ndim(w) else t.sum(axis=-1)))
        return dq, dk, self._concat_grads(da, dw.astype(self.dtype), dc)

    def backprop(self, ctx: Any, dy: Any, need_dx: Any = True) -> Any:
        """dy for the output (with return_attention_scores: [dy, dscores], dscores ignored).
        Returns [dquery, dvalue(, dkey)] and the weight gradients."""
        dx, grads = self._backprop_examples(ctx, dy, need_dx)
        return dx, self._trainable_grads([g.sum(axis=0).astype(self.dtype) for g in grads])

    def _backprop_examples(self, ctx, dy, need_dx):
        # backprop with each weight gradient kept per example, (B,) + the weight's shape
        state, q, v, k, has_key, qm, vm, causal = ctx
        B, Tq, _ = q.shape
        if isinstance(dy, (list, tuple)):
            dy = dy[0]
        if dy is None:  # only the returned scores were used: no gradient flows through them
            dy = np.zeros((B, Tq, v.shape[2]), dtype=self.dtype)
        dy = np.asarray(dy, dtype=self.dtype)
        if dy.shape != (B, Tq, v.shape[2]):
            raise ValueError(f"{type(self).__name__} {self.name!r}: dy must have the output's "
                             f"shape {(B, Tq, v.shape[2])}; got {dy.shape}")
        if qm is not None:
            dy = np.where(qm[..., None], dy, 0).astype(self.dtype)
        if state[0] == "flash":
            _, Q, K, V, O, lse, a = state
            dQ, dK, dV = ops.attention_backward(np.ascontiguousarray(dy[:, None]), Q, K, V, O,
                                                lse, vm, causal, 1.0)
            dq, dk, dv = a * dQ[:, 0], dK[:, 0], dV[:, 0]
            grads = self._dot_grads(_example_sums(dQ[:, 0] * q))
        else:
            _, sctx, P, Z, W = state
            # out = W v, W = P * Z, P = softmax(scores)
            dv = np.matmul(np.swapaxes(W, 1, 2), dy)
            dW = np.matmul(dy, np.swapaxes(v, 1, 2))
            if Z is not None:
                dW = dW * Z
            G = P * (dW - np.sum(dW * P, axis=-1, keepdims=True))
            dq, dk, grads = self._scores_backward(sctx, G, q, k)
        dq, dk, dv = (np.ascontiguousarray(g, dtype=self.dtype) for g in (dq, dk, dv))
        if not need_dx:
            dx = None
        elif has_key:
            dx = [dq, dv, dk]
        else:
            dx = [dq, dv + dk]
        return dx, grads

    # DP-SGD (nanonet.privacy): the weights are scalars or a (d,) vector, so each example's
    # gradient is kept whole (B numbers per scalar).
    def dp_backprop(self, ctx: Any, dy: Any, need_dx: Any = True) -> Any:
        dx, grads = self._backprop_examples(ctx, dy, need_dx)
        grads = self._trainable_grads(grads)
        sq = np.zeros(ctx[1].shape[0])
        for g in grads:
            sq += np.square(g.reshape(g.shape[0], -1), dtype=np.float64).sum(axis=1)
        return dx, sq, grads

    def dp_grads(self, state: Any, scale: bool) -> Any:
        return [np.tensordot(scale, g, axes=1).astype(self.dtype) for g in state]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "use_scale": self.use_scale,
                "score_mode": self.score_mode, "dropout": self.dropout, "seed": self.seed}

    def __repr__(self):
        return (f"<{type(self).__name__} name={self.name!r}, use_scale={self.use_scale}, "
                f"score_mode={self.score_mode!r}>")


class AdditiveAttention(Attention):
    """Additive (Bahdanau) attention with Keras 3's arguments, call and weights.

        att = AdditiveAttention(use_scale=True, dropout=0.0, seed=None, ...)
        out = att([query, value(, key)], mask=[query_mask, value_mask], ...)

    As Attention, with scores_ij = sum_d w_d tanh(q_id + k_jd): w is the learned ``scale``
    (d,) (use_scale=True, glorot_uniform as Keras) or 1. Computed in NumPy with a
    (B, Tq, Tv, d) tanh tensor kept for backward.

    Args:
        use_scale (bool, default True): learn the (d,) vector ``scale`` w.
        dropout (float, default 0.0): dropout rate on the attention weights, in training.
        seed (int or None, default None): seed of the layer's dropout stream.
        **kwargs: ``name``, ``trainable``, ``dtype``.

    Call, masks and shapes as Attention: query (B, Tq, d), value (B, Tv, dv), key (B, Tv, d)
    -> (B, Tq, dv), plus the (B, Tq, Tv) weights with return_attention_scores.

    Raises:
        ValueError: as Attention.

    Example:

    >>> att = nn.layers.AdditiveAttention()
    >>> q, v = np.ones((1, 2, 4), np.float32), np.ones((1, 3, 4), np.float32)
    >>> out, weights = att([q, v], mask=[None, np.array([[True, True, False]])],
    ...                    return_attention_scores=True)
    >>> out.shape, [w.shape for w in att.get_weights()]
    ((1, 2, 4), [(4,)])
    >>> weights.tolist()  # the masked value gets no weight
    [[[0.5, 0.5, 0.0], [0.5, 0.5, 0.0]]]
    """
    _SCORE_MODES = ("concat",)

    def __init__(self, use_scale: Any = True, dropout: float = 0.0, seed: int | None = None,
                 **kwargs: Any) -> None:
        kwargs.pop("score_mode", None)
        super().__init__(use_scale=use_scale, score_mode="concat", dropout=dropout, seed=seed,
                         **kwargs)

    def build(self, input_shape: Any) -> None:
        dq, _, _ = self._check_shapes(input_shape)
        if self.use_scale:
            self.scale = self.add_weight(shape=(dq,), initializer="glorot_uniform",
                                         name="scale")
        self.built = True

    def _concat_params(self):
        one = np.dtype(self.dtype).type(1.0)
        return one, (self.scale if self.use_scale else one), one

    def _concat_grads(self, da, dw, dc):
        return [dw] if self.use_scale else []

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        del config["score_mode"]
        return config
