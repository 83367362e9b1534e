"""Image preprocessing and augmentation layers with Keras 3 names and arguments, channels_last
(B, H, W, C) float images.

Rescaling and Resizing (bilinear, half-pixel centres) always apply. The random layers
(RandomFlip, RandomRotation, RandomZoom, RandomTranslation, RandomContrast, RandomCrop) change
their input only when called with training=True (inside fit) and are the identity otherwise
(RandomCrop centre-crops at inference, as Keras). Each sample gets its own draw. ``seed=`` gives a
layer its own repeatable stream; without it they draw from nanonet's Generator, so
``nanonet.set_seed`` makes them repeatable (and fit's per-epoch Generator makes a resumed run
repeat). The geometric layers resample with the fill modes "reflect" (default), "wrap",
"nearest" and "constant" (fill_value). Every transform is linear in the image, so the backward
pass scatters dy back through the same weights.
"""
from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from .. import random as _random
from .base import Layer
from .convolutional import check_data_format

__all__ = ["Rescaling", "Resizing", "RandomFlip", "RandomRotation", "RandomZoom",
           "RandomTranslation", "RandomContrast", "RandomCrop"]

_FILL_MODES = ("reflect", "wrap", "nearest", "constant")
_INTERPOLATIONS = ("bilinear", "nearest")


def _number(v, name, cls):
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
        raise ValueError(f"{cls}: {name} must be a finite number; got {v!r}")
    return float(v)


def _factor_range(factor, name, cls, lo_limit=-1.0):
    """factor f -> (-f, f); (lo, hi) as given. Each in [lo_limit, 1]."""
    if isinstance(factor, (tuple, list)):
        if len(factor) != 2:
            raise ValueError(f"{cls}: {name} must be a number or a pair (lower, upper); got "
                             f"{factor!r}")
        lo, hi = (_number(v, name, cls) for v in factor)
    else:
        f = _number(factor, name, cls)
        lo, hi = -abs(f), abs(f)
    if lo > hi or lo < lo_limit or hi > 1.0:
        raise ValueError(f"{cls}: {name} must lie in [{lo_limit}, 1] with lower <= upper; got "
                         f"{factor!r}")
    return lo, hi


def _images(layer, x):
    x = np.asarray(x)
    x = x if x.dtype == layer.dtype else layer._float_input(x)
    if x.ndim != 4:
        raise ValueError(f"{type(layer).__name__} {layer.name!r}: input must be 4-D (batch, "
                         f"height, width, channels); got shape {x.shape}")
    return x


def _fold(i, n, mode):
    """Integer indices i mapped into [0, n) by the fill mode; also the in-range mask."""
    inside = (i >= 0) & (i < n)
    if mode == "reflect":
        i = np.mod(i, 2 * n)
        i = np.where(i >= n, 2 * n - 1 - i, i)
    elif mode == "wrap":
        i = np.mod(i, n)
    else:  # nearest, constant (masked by the caller)
        i = np.clip(i, 0, n - 1)
    return i, inside


class _Sampler:
    """y[b, oy, ox] = sum_k w_k x[b, iy_k, ix_k] (+ fill_value for constant taps outside): the
    bilinear / nearest resampling of (B, H, W, C) at the input coordinates (sy, sx) (B, OH, OW)."""

    def __init__(self, sy, sx, H, W, fill_mode, interpolation):
        if interpolation == "nearest":
            taps = [(np.floor(sy + 0.5), np.floor(sx + 0.5), np.ones_like(sy))]
        else:
            y0, x0 = np.floor(sy), np.floor(sx)
            fy, fx = sy - y0, sx - x0
            taps = [(y0, x0, (1 - fy) * (1 - fx)), (y0, x0 + 1, (1 - fy) * fx),
                    (y0 + 1, x0, fy * (1 - fx)), (y0 + 1, x0 + 1, fy * fx)]
        self.B, self.H, self.W = sy.shape[0], H, W
        self.idx, self.w, self.fill_w = [], [], 0.0
        for ty, tx, w in taps:
            iy, in_y = _fold(ty.astype(np.int64), H, fill_mode)
            ix, in_x = _fold(tx.astype(np.int64), W, fill_mode)
            if fill_mode == "constant":
                self.fill_w = self.fill_w + np.where(in_y & in_x, 0.0, w)
                w = np.where(in_y & in_x, w, 0.0)
            b = np.arange(self.B).reshape(-1, 1, 1)
            self.idx.append((b * H + iy) * W + ix)
            self.w.append(w)

    def forward(self, x, fill_value=0.0):
        B, H, W, C = x.shape
        flat = x.reshape(B * H * W, C)
        y = sum(flat[i] * w[..., None].astype(x.dtype) for i, w in zip(self.idx, self.w))
        if fill_value and np.any(self.fill_w):
            y = y + (fill_value * self.fill_w)[..., None].astype(x.dtype)
        return y.astype(x.dtype)

    def backward(self, dy):
        dy = np.asarray(dy)
        C = dy.shape[-1]
        dx = np.zeros((self.B * self.H * self.W, C), dy.dtype)
        for i, w in zip(self.idx, self.w):
            np.add.at(dx, i.reshape(-1), (dy * w[..., None]).reshape(-1, C))
        return dx.reshape(self.B, self.H, self.W, C)


def _grid(B, OH, OW):
    oy, ox = np.meshgrid(np.arange(OH, dtype=np.float64), np.arange(OW, dtype=np.float64),
                         indexing="ij")
    return np.broadcast_to(oy, (B, OH, OW)), np.broadcast_to(ox, (B, OH, OW))


class _Augment(Layer):
    """A random layer: identity unless training; draws per-sample parameters from its own
    Generator (seed=) or nanonet's."""

    def __init__(self, seed=None, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = check_data_format(data_format, type(self).__name__)
        self.seed = seed
        self._generator = _random.make_generator(seed, type(self).__name__)

    def _rng(self):
        return self._generator if self._generator is not None else _random.get_generator()

    def compute_mask(self, x, mask=None):
        return None

    def get_config(self):
        return {**super().get_config(), "seed": self.seed, "data_format": self.data_format}


class _Geometric(_Augment):
    """Resampling layers: subclasses give the input coordinates of each output pixel."""

    def __init__(self, fill_mode="reflect", interpolation="bilinear", seed=None,
                 fill_value=0.0, data_format=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        cls = type(self).__name__
        if fill_mode not in _FILL_MODES:
            raise ValueError(f"{cls}: fill_mode must be one of {_FILL_MODES}; got {fill_mode!r}")
        if interpolation not in _INTERPOLATIONS:
            raise ValueError(f"{cls}: interpolation must be one of {_INTERPOLATIONS}; got "
                             f"{interpolation!r}")
        self.fill_mode = fill_mode
        self.interpolation = interpolation
        self.fill_value = _number(fill_value, "fill_value", cls)

    def forward(self, x, training=False, mask=None):
        x = _images(self, x)
        if not training:
            return x, None
        B, H, W, _ = x.shape
        sy, sx = self._coords(B, H, W, self._rng())
        s = _Sampler(sy, sx, H, W, self.fill_mode, self.interpolation)
        return s.forward(x, self.fill_value), s

    def backprop(self, ctx, dy, need_dx=True):
        if ctx is None:
            return dy, []
        return ctx.backward(dy), []

    def get_config(self):
        return {**super().get_config(), "fill_mode": self.fill_mode,
                "interpolation": self.interpolation, "fill_value": self.fill_value}


class RandomTranslation(_Geometric):
    """Shift each image by a fraction of its size drawn from height_factor / width_factor (f ->
    [-f, f], or (lower, upper)), e.g. 0.1 moves up to 10% either way.

    Only when training (inside fit); the identity otherwise.

    Args:
        height_factor (float or pair of floats): the vertical shift as a fraction of the
            height, in [-1, 1]; a positive shift moves the image down.
        width_factor (float or pair of floats): the horizontal shift as a fraction of the
            width, in [-1, 1]; a positive shift moves the image right.
        fill_mode (str, default "reflect"): how points outside the image are filled:
            "reflect", "wrap", "nearest" or "constant" (fill_value).
        interpolation (str, default "bilinear"): "bilinear" or "nearest".
        seed (int or None, default None): seed of the layer's own stream; None draws from
            nanonet's Generator (``nanonet.set_seed``).
        fill_value (float, default 0.0): the value outside the image with fill_mode="constant".
        data_format (str or None, default None): only "channels_last" is supported.
        **kwargs: ``name``, ``trainable``, ``dtype``, ``input_shape``.

    Input shape: (B, H, W, C) floats. Output shape: (B, H, W, C).

    Raises:
        ValueError: a factor outside [-1, 1] or with lower > upper, an unknown fill_mode or
            interpolation, or an input that is not 4-D.

    Example:

    >>> layer = nn.layers.RandomTranslation(0.2, 0.2, seed=0)
    >>> x = np.random.rand(2, 8, 8, 3).astype("float32")
    >>> bool(np.array_equal(layer(x), x))  # inference: unchanged
    True
    >>> layer(x, training=True).shape
    (2, 8, 8, 3)
    """

    def __init__(self, height_factor: Any, width_factor: Any, fill_mode: Any = "reflect",
                 interpolation: Any = "bilinear", seed: int | None = None, fill_value: Any = 0.0,
                 data_format: Any = None, **kwargs: Any) -> None:
        super().__init__(fill_mode, interpolation, seed, fill_value, data_format, **kwargs)
        self.height_factor = _factor_range(height_factor, "height_factor", type(self).__name__)
        self.width_factor = _factor_range(width_factor, "width_factor", type(self).__name__)

    def _coords(self, B, H, W, rng):
        ty = rng.uniform(*self.height_factor, size=B) * H
        tx = rng.uniform(*self.width_factor, size=B) * W
        oy, ox = _grid(B, H, W)
        return oy - ty[:, None, None], ox - tx[:, None, None]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "height_factor": self.height_factor,
                "width_factor": self.width_factor}


class RandomRotation(_Geometric):
    """Rotate each image about its centre by factor * 2 pi (f -> [-f, f], or (lower, upper)).

    Only when training (inside fit); the identity otherwise.

    Args:
        factor (float or pair of floats): the angle as a fraction of a full turn, in
            [-1, 1]; 0.1 rotates by up to 36 degrees either way.
        fill_mode (str, default "reflect"): how points outside the image are filled:
            "reflect", "wrap", "nearest" or "constant" (fill_value).
        interpolation (str, default "bilinear"): "bilinear" or "nearest".
        seed (int or None, default None): seed of the layer's own stream; None draws from
            nanonet's Generator (``nanonet.set_seed``).
        fill_value (float, default 0.0): the value outside the image with fill_mode="constant".
        data_format (str or None, default None): only "channels_last" is supported.
        **kwargs: ``name``, ``trainable``, ``dtype``, ``input_shape``.

    Input shape: (B, H, W, C) floats. Output shape: (B, H, W, C).

    Raises:
        ValueError: a factor outside [-1, 1] or with lower > upper, an unknown fill_mode or
            interpolation, or an input that is not 4-D.

    Example:

    >>> layer = nn.layers.RandomRotation(0.1, seed=0)
    >>> x = np.ones((2, 8, 8, 3), np.float32)
    >>> y = layer(x, training=True)
    >>> y.shape, bool(np.allclose(y, 1.0))  # "reflect" keeps a flat image flat
    ((2, 8, 8, 3), True)
    """

    def __init__(self, factor: float, fill_mode: Any = "reflect", interpolation: Any = "bilinear",
                 seed: int | None = None, fill_value: Any = 0.0, data_format: Any = None,
                 **kwargs: Any) -> None:
        super().__init__(fill_mode, interpolation, seed, fill_value, data_format, **kwargs)
        self.factor = _factor_range(factor, "factor", type(self).__name__)

    def _coords(self, B, H, W, rng):
        a = rng.uniform(*self.factor, size=B)[:, None, None] * 2 * math.pi
        cy, cx = (H - 1) / 2, (W - 1) / 2
        oy, ox = _grid(B, H, W)
        dy, dx = oy - cy, ox - cx
        # the inverse rotation: where each output pixel comes from
        return cy + np.cos(a) * dy - np.sin(a) * dx, cx + np.sin(a) * dy + np.cos(a) * dx

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "factor": self.factor}


class RandomZoom(_Geometric):
    """Zoom each image by 1 + a draw from height_factor (f -> [-f, f], or (lower, upper); a
    positive draw zooms out, as Keras); width_factor None keeps the aspect ratio.

    Only when training (inside fit); the identity otherwise.

    Args:
        height_factor (float or pair of floats): the vertical zoom, in [-1, 1]; -0.2 zooms
            in by up to 20%, 0.2 out by up to 20%.
        width_factor (float, pair of floats or None, default None): the horizontal zoom;
            None uses the vertical draw (the aspect ratio stays).
        fill_mode (str, default "reflect"): how points outside the image are filled:
            "reflect", "wrap", "nearest" or "constant" (fill_value).
        interpolation (str, default "bilinear"): "bilinear" or "nearest".
        seed (int or None, default None): seed of the layer's own stream; None draws from
            nanonet's Generator (``nanonet.set_seed``).
        fill_value (float, default 0.0): the value outside the image with fill_mode="constant".
        data_format (str or None, default None): only "channels_last" is supported.
        **kwargs: ``name``, ``trainable``, ``dtype``, ``input_shape``.

    Input shape: (B, H, W, C) floats. Output shape: (B, H, W, C).

    Raises:
        ValueError: a factor outside [-1, 1] or with lower > upper, an unknown fill_mode or
            interpolation, or an input that is not 4-D.

    Example:

    >>> layer = nn.layers.RandomZoom((-0.3, -0.1), seed=0)  # zoom in by 10% to 30%
    >>> x = np.random.rand(2, 8, 8, 3).astype("float32")
    >>> bool(np.array_equal(layer(x), x)), layer(x, training=True).shape
    (True, (2, 8, 8, 3))
    """

    def __init__(self, height_factor: Any, width_factor: Any = None, fill_mode: Any = "reflect",
                 interpolation: Any = "bilinear", seed: int | None = None, fill_value: Any = 0.0,
                 data_format: Any = None, **kwargs: Any) -> None:
        super().__init__(fill_mode, interpolation, seed, fill_value, data_format, **kwargs)
        cls = type(self).__name__
        self.height_factor = _factor_range(height_factor, "height_factor", cls)
        self.width_factor = (None if width_factor is None else
                             _factor_range(width_factor, "width_factor", cls))

    def _coords(self, B, H, W, rng):
        zy = 1 + rng.uniform(*self.height_factor, size=B)
        zx = zy if self.width_factor is None else 1 + rng.uniform(*self.width_factor, size=B)
        cy, cx = (H - 1) / 2, (W - 1) / 2
        oy, ox = _grid(B, H, W)
        return cy + (oy - cy) * zy[:, None, None], cx + (ox - cx) * zx[:, None, None]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "height_factor": self.height_factor,
                "width_factor": self.width_factor}


class RandomFlip(_Augment):
    """Flip each image left-right ("horizontal"), top-bottom ("vertical") or both
    ("horizontal_and_vertical", the default), each with probability 1/2.

    Only when training (inside fit); the identity otherwise.

    Args:
        mode (str, default "horizontal_and_vertical"): "horizontal", "vertical" or
            "horizontal_and_vertical".
        seed (int or None, default None): seed of the layer's own stream; None draws from
            nanonet's Generator (``nanonet.set_seed``).
        data_format (str or None, default None): only "channels_last" is supported.
        **kwargs: ``name``, ``trainable``, ``dtype``, ``input_shape``.

    Input shape: (B, H, W, C) floats. Output shape: (B, H, W, C).

    Raises:
        ValueError: an unknown mode, or an input that is not 4-D.

    Example:

    >>> layer = nn.layers.RandomFlip("horizontal", seed=0)
    >>> x = np.random.rand(4, 2, 3, 1).astype("float32")
    >>> y = layer(x, training=True)
    >>> [bool(np.array_equal(y[i], x[i]) or np.array_equal(y[i], x[i, :, ::-1]))
    ...  for i in range(4)]  # each image as it was or mirrored
    [True, True, True, True]
    """
    _MODES = ("horizontal", "vertical", "horizontal_and_vertical")

    def __init__(self, mode: str = "horizontal_and_vertical", seed: int | None = None,
                 data_format: Any = None, **kwargs: Any) -> None:
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        if mode not in self._MODES:
            raise ValueError(f"RandomFlip: mode must be one of {self._MODES}; got {mode!r}")
        self.mode = mode

    @staticmethod
    def _apply(x, fh, fv):
        y = x.copy()
        y[fh] = y[fh][:, :, ::-1]
        y[fv] = y[fv][:, ::-1]
        return y

    def forward(self, x: Any, training: bool = False, mask: Any = None) -> Any:
        x = _images(self, x)
        if not training:
            return x, None
        rng, B = self._rng(), x.shape[0]
        none = np.zeros(B, bool)
        fh = rng.random(B) < 0.5 if "horizontal" in self.mode else none
        fv = rng.random(B) < 0.5 if "vertical" in self.mode else none
        return self._apply(x, fh, fv), (fh, fv)

    def backprop(self, ctx: Any, dy: Any, need_dx: Any = True) -> Any:
        if ctx is None:
            return dy, []
        return self._apply(np.asarray(dy), *ctx), []

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mode": self.mode}


class RandomContrast(_Augment):
    """y = (x - mean) * f + mean per image and channel (mean over height and width), f drawn
    from [1 - lower, 1 + upper] (factor f -> lower = upper = f), clipped to value_range.

    Only when training (inside fit); the identity otherwise.

    Args:
        factor (float or pair of floats): lower in [0, 1] and upper >= 0 of the contrast
            factor's range [1 - lower, 1 + upper].
        value_range (pair of floats, default (0, 255)): the output is clipped to it (use
            (0, 1) for images scaled to [0, 1]).
        seed (int or None, default None): seed of the layer's own stream; None draws from
            nanonet's Generator (``nanonet.set_seed``).
        **kwargs: ``name``, ``trainable``, ``dtype``, ``input_shape``, ``data_format``.

    Input shape: (B, H, W, C) floats. Output shape: (B, H, W, C).

    Raises:
        ValueError: a factor or value_range out of range, or an input that is not 4-D.

    Example:

    >>> layer = nn.layers.RandomContrast(0.5, value_range=(0, 1), seed=0)
    >>> x = np.random.rand(2, 8, 8, 3).astype("float32")
    >>> y = layer(x, training=True)
    >>> y.shape, bool(y.min() >= 0.0 and y.max() <= 1.0)
    ((2, 8, 8, 3), True)
    """

    def __init__(self, factor: float, value_range: Any = (0, 255), seed: int | None = None,
                 **kwargs: Any) -> None:
        super().__init__(seed=seed, **kwargs)
        cls = type(self).__name__
        if isinstance(factor, (tuple, list)):
            lo, hi = (_number(v, "factor", cls) for v in factor) if len(factor) == 2 else (-1, -1)
        else:
            lo = hi = _number(factor, "factor", cls)
        if not (0 <= lo <= 1 and 0 <= hi):
            raise ValueError(f"{cls}: factor must be a number or a pair (lower, upper), lower in "
                             f"[0, 1] and upper >= 0; got {factor!r}")
        self.factor = (lo, hi)
        vr = tuple(value_range)
        if len(vr) != 2 or _number(vr[0], "value_range", cls) >= _number(vr[1], "value_range",
                                                                         cls):
            raise ValueError(f"{cls}: value_range must be (low, high) with low < high; got "
                             f"{value_range!r}")
        self.value_range = (float(vr[0]), float(vr[1]))

    def forward(self, x: Any, training: bool = False, mask: Any = None) -> Any:
        x = _images(self, x)
        if not training:
            return x, None
        f = self._rng().uniform(1 - self.factor[0], 1 + self.factor[1], size=x.shape[0])
        f = f.astype(x.dtype)[:, None, None, None]
        mean = x.mean(axis=(1, 2), keepdims=True)
        raw = (x - mean) * f + mean
        y = np.clip(raw, *self.value_range).astype(x.dtype)
        return y, (f, (raw >= self.value_range[0]) & (raw <= self.value_range[1]))

    def backprop(self, ctx: Any, dy: Any, need_dx: Any = True) -> Any:
        if ctx is None:
            return dy, []
        f, inside = ctx
        g = np.where(inside, dy, 0)
        # y = (x - mean(x)) f + mean(x)
        return (g * f + (1 - f) * g.mean(axis=(1, 2), keepdims=True)).astype(g.dtype), []

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "factor": self.factor, "value_range": self.value_range}


def _positive(v, name, cls):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
        raise ValueError(f"{cls}: {name} must be a positive int; got {v!r}")
    return int(v)


def _bilinear_matrix(n_out, n_in, dtype):
    """(n_out, n_in) weights of bilinear resizing with half-pixel centres."""
    s = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    s = np.clip(s, 0, n_in - 1)
    i0 = np.floor(s).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    f = s - i0
    m = np.zeros((n_out, n_in), np.float64)
    np.add.at(m, (np.arange(n_out), i0), 1 - f)
    np.add.at(m, (np.arange(n_out), i1), f)
    return m.astype(dtype)


def _nearest_matrix(n_out, n_in, dtype):
    i = np.minimum(np.floor((np.arange(n_out) + 0.5) * (n_in / n_out)).astype(np.int64), n_in - 1)
    m = np.zeros((n_out, n_in), dtype)
    m[np.arange(n_out), i] = 1
    return m


class Resizing(Layer):
    """Resize images to (height, width): interpolation "bilinear" (default, half-pixel
    centres, no antialiasing) or "nearest"; crop_to_aspect_ratio first centre-crops the largest
    window of the target aspect ratio. Always applies (training or not).

    Args:
        height (int): output height.
        width (int): output width.
        interpolation (str, default "bilinear"): "bilinear" or "nearest".
        crop_to_aspect_ratio (bool, default False): centre-crop to height / width's aspect
            ratio before resizing, so the image is not distorted.
        data_format (str or None, default None): only "channels_last" is supported.
        **kwargs: ``name``, ``trainable``, ``dtype``, ``input_shape``.

    Input shape: (B, H, W, C). Output shape: (B, height, width, C).

    Raises:
        ValueError: height or width not a positive int, an unknown interpolation, or an input
            that is not 4-D.

    Example:

    >>> x = np.arange(8, dtype=np.float32).reshape(1, 2, 4, 1)
    >>> nn.layers.Resizing(4, 8)(x).shape
    (1, 4, 8, 1)
    >>> nn.layers.Resizing(2, 2, interpolation="nearest")(x)[0, :, :, 0].tolist()
    [[1.0, 3.0], [5.0, 7.0]]
    """

    def __init__(self, height: Any, width: Any, interpolation: Any = "bilinear",
                 crop_to_aspect_ratio: Any = False, data_format: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        cls = type(self).__name__
        self.height, self.width = _positive(height, "height", cls), _positive(width, "width", cls)
        if interpolation not in _INTERPOLATIONS:
            raise ValueError(f"{cls}: interpolation must be one of {_INTERPOLATIONS}; got "
                             f"{interpolation!r}")
        self.interpolation = interpolation
        self.crop_to_aspect_ratio = bool(crop_to_aspect_ratio)
        self.data_format = check_data_format(data_format, cls)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return (input_shape[0], self.height, self.width, input_shape[-1])

    def _crop(self, H, W):
        if not self.crop_to_aspect_ratio:
            return 0, H, 0, W
        ch = min(H, round(W * self.height / self.width))
        cw = min(W, round(H * self.width / self.height))
        t, l = (H - ch) // 2, (W - cw) // 2
        return t, t + ch, l, l + cw

    def forward(self, x: Any, training: bool = False, mask: Any = None) -> Any:
        x = _images(self, x)
        t, b, l, r = self._crop(*x.shape[1:3])
        make = _bilinear_matrix if self.interpolation == "bilinear" else _nearest_matrix
        mh, mw = make(self.height, b - t, x.dtype), make(self.width, r - l, x.dtype)
        y = np.einsum("oh,bhwc,pw->bopc", mh, x[:, t:b, l:r], mw, optimize=True)
        return y, ((x.shape, (t, b, l, r), mh, mw) if training else None)

    def backprop(self, ctx: Any, dy: Any, need_dx: Any = True) -> Any:
        shape, (t, b, l, r), mh, mw = ctx
        dx = np.zeros(shape, mh.dtype)
        dx[:, t:b, l:r] = np.einsum("oh,bopc,pw->bhwc", mh, np.asarray(dy), mw, optimize=True)
        return dx, []

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "height": self.height, "width": self.width,
                "interpolation": self.interpolation,
                "crop_to_aspect_ratio": self.crop_to_aspect_ratio,
                "data_format": self.data_format}


class Rescaling(Layer):
    """y = x * scale + offset (e.g. scale=1/255 for 8-bit images). Always applies.

    Args:
        scale (float): the factor.
        offset (float, default 0.0): added after scaling.
        **kwargs: ``name``, ``trainable``, ``dtype``, ``input_shape``.

    Input shape: any (B, ...); integer images are cast to the layer's dtype. Output shape: the
    input's. Masks pass through.

    Raises:
        ValueError: scale or offset not a finite number.

    Example:

    >>> layer = nn.layers.Rescaling(1 / 127.5, offset=-1.0)  # [0, 255] -> [-1, 1]
    >>> np.round(layer(np.array([[0, 255]], np.uint8)), 4).tolist()
    [[-1.0, 1.0]]
    """
    supports_masking = True

    def __init__(self, scale: bool, offset: Any = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scale = _number(scale, "scale", "Rescaling")
        self.offset = _number(offset, "offset", "Rescaling")

    def forward(self, x: Any, training: bool = False, mask: Any = None) -> Any:
        x = np.asarray(x)
        x = x if x.dtype == self.dtype else self._float_input(x)
        return (x * self.dtype_scale() + self.offset).astype(self.dtype), (() if training else None)

    def dtype_scale(self) -> Any:
        return np.asarray(self.scale, self.dtype)

    def backprop(self, ctx: Any, dy: Any, need_dx: Any = True) -> Any:
        return (np.asarray(dy) * self.dtype_scale()).astype(self.dtype), []

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "scale": self.scale, "offset": self.offset}


class RandomCrop(_Augment):
    """Crop each image to (height, width) at a random position when training; at inference the
    centre crop (images smaller than the target are resized to it bilinearly).

    Args:
        height (int): output height.
        width (int): output width.
        seed (int or None, default None): seed of the layer's own stream; None draws from
            nanonet's Generator (``nanonet.set_seed``).
        data_format (str or None, default None): only "channels_last" is supported.
        **kwargs: ``name``, ``trainable``, ``dtype``, ``input_shape``.

    Input shape: (B, H, W, C). Output shape: (B, height, width, C).

    Raises:
        ValueError: height or width not a positive int, an input that is not 4-D, or, in
            training, images smaller than the crop.

    Example:

    >>> layer = nn.layers.RandomCrop(2, 2, seed=0)
    >>> x = np.arange(8, dtype=np.float32).reshape(1, 2, 4, 1)
    >>> layer(x)[0, :, :, 0].tolist()  # inference: the centre
    [[1.0, 2.0], [5.0, 6.0]]
    >>> layer(x, training=True).shape
    (1, 2, 2, 1)
    """

    def __init__(self, height: Any, width: Any, seed: int | None = None, data_format: Any = None,
                 **kwargs: Any) -> None:
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        cls = type(self).__name__
        self.height, self.width = _positive(height, "height", cls), _positive(width, "width", cls)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return (input_shape[0], self.height, self.width, input_shape[-1])

    def forward(self, x: Any, training: bool = False, mask: Any = None) -> Any:
        x = _images(self, x)
        B, H, W, _ = x.shape
        if H < self.height or W < self.width:
            if training:
                raise ValueError(f"RandomCrop {self.name!r}: images {H}x{W} are smaller than "
                                 f"the crop {self.height}x{self.width}")
            return Resizing(self.height, self.width, dtype=self.dtype).forward(x)[0], None
        if training:
            rng = self._rng()
            t = rng.integers(0, H - self.height + 1, size=B)
            l = rng.integers(0, W - self.width + 1, size=B)
        else:
            t = np.full(B, (H - self.height) // 2)
            l = np.full(B, (W - self.width) // 2)
        rows = t[:, None] + np.arange(self.height)[None, :]
        cols = l[:, None] + np.arange(self.width)[None, :]
        b = np.arange(B)[:, None, None]
        y = x[b, rows[:, :, None], cols[:, None, :]]
        return y, ((x.shape, b, rows, cols) if training else None)

    def backprop(self, ctx: Any, dy: Any, need_dx: Any = True) -> Any:
        shape, b, rows, cols = ctx
        dx = np.zeros(shape, np.asarray(dy).dtype)
        dx[b, rows[:, :, None], cols[:, None, :]] = dy
        return dx, []

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "height": self.height, "width": self.width}
