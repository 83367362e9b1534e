"""``Sequential``: a stack of layers, which is a ``Model`` whose graph is a chain.

Layers are added with ``add`` (or the constructor's list) and the chain is built as soon as the
input shape is known: from a leading ``Input``, a first layer's ``input_shape=``, ``build``, or
the first data the model sees (once, under the build lock, so concurrent first calls are safe;
a build that fails leaves no layer half-built). Building records the graph by calling each layer
on the previous one's symbolic output; from then on Sequential is the graph model: one training
loop, one predict path, one save format.
"""
from __future__ import annotations

from typing import Any

from ..layers import deserialize as _deserialize_layer
from ..layers import serialize as _serialize_layer
from ..layers.base import BUILD_LOCK, Layer, unique_name
from ..layers.core import InputLayer
from ..layers.node import SymbolicTensor
from .functional import Model

__all__ = ["Sequential"]


class Sequential(Model):
    """A linear stack of layers, each feeding the next (Keras 3 API).

    The model is built once the input shape is known: from a leading ``nanonet.Input``, the
    first layer's ``input_shape=``, ``build(input_shape)``, or the first data it sees. Built,
    it is a ``Model`` whose graph is a chain: the same training loop, predict path and file
    format.

    Args:
        layers (list of Layer or None, default None): the layers, in order; the first entry
            may be an ``Input``.
        trainable (bool, default True): whether fit updates its weights.
        name (str or None, default None): the model's name.

    Raises:
        TypeError: layers is a single layer instead of a list.
        ValueError: a bad name, or an Input that is not the first entry.

    Example:

    >>> model = nn.Sequential([nn.Input((4,)), nn.layers.Dense(8, activation="relu"),
    ...                        nn.layers.Dense(3, activation="softmax")])
    >>> model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
    ...               metrics=["accuracy"])
    >>> x = np.random.rand(16, 4).astype("float32")
    >>> y = np.random.randint(0, 3, size=16)
    >>> history = model.fit(x, y, epochs=2, verbose=0)
    >>> model.predict(x, verbose=0).shape, len(history.history["loss"])
    ((16, 3), 2)
    """

    def __init__(self, layers: Any = None, trainable: bool = True, name: str | None = None) -> None:
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"Sequential: name must be a non-empty string; got {name!r}")
        super().__init__(name=name or unique_name("sequential"), trainable=trainable)
        self._layers = []
        self._input_layer = None
        self._batch_input_shape = None
        self.built = False
        if layers is not None:
            if isinstance(layers, (Layer, SymbolicTensor)):
                raise TypeError("Sequential: layers must be a list of layers; got a single "
                                f"{type(layers).__name__} (wrap it in a list)")
            for layer in layers:
                self.add(layer)

    @classmethod
    def _default_name(cls):
        return "sequential"

    # -- structure ---------------------------------------------------------------------------
    @property
    def layers(self) -> Any:
        """The layers, in order (an InputLayer is not listed, as in Keras)."""
        return list(self._layers)

    def add(self, layer: Any) -> None:
        """Appends a layer to the stack.

        An ``Input`` (or InputLayer) is accepted only as the first entry; once the input shape
        is known the new layer is built at once.

        Args:
            layer (Layer or SymbolicTensor): the layer, or an ``Input`` first.

        Raises:
            TypeError: not a layer.
            ValueError: an Input that is not the first entry.

        Example:

        >>> model = nn.Sequential([nn.Input((4,))])
        >>> model.add(nn.layers.Dense(2))
        >>> model.output_shape
        (None, 2)
        """
        if isinstance(layer, SymbolicTensor):
            if not layer.node.is_input:
                raise ValueError("Sequential.add: a symbolic tensor may only be an Input (the "
                                 f"first entry); got the output of layer {layer.layer.name!r}")
            layer = layer.layer
        if isinstance(layer, InputLayer):
            if self._layers or self._input_layer is not None:
                raise ValueError("Sequential.add: an InputLayer (Input) may only be the first "
                                 "entry of a Sequential model")
            self._input_layer = layer
            self._batch_input_shape = layer.batch_shape
            return
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add: expected a nanonet layer; got "
                            f"{type(layer).__name__}")
        if any(lay.name == layer.name for lay in self._layers):
            raise ValueError(f"Sequential.add: all layers must have unique names; "
                             f"{layer.name!r} is already in the model")
        if not self._layers and self._batch_input_shape is None and \
                layer._input_shape_arg is not None:
            self._batch_input_shape = (None,) + layer._input_shape_arg
        self._layers.append(layer)
        self._invalidate()
        if self._batch_input_shape is not None:
            self.build(self._batch_input_shape)

    def pop(self) -> Any:
        """Removes and returns the last layer.

        Returns:
            Layer: the removed layer.

        Raises:
            ValueError: the model has no layers.

        Example:

        >>> model = nn.Sequential([nn.Input((4,)), nn.layers.Dense(3), nn.layers.Dense(2)])
        >>> model.pop().units, model.output_shape
        (2, (None, 3))
        """
        if not self._layers:
            raise ValueError("Sequential.pop: the model has no layers")
        layer = self._layers.pop()
        self._invalidate()
        if self._layers and self._batch_input_shape is not None:
            self.build(self._batch_input_shape)
        return layer

    def _invalidate(self):
        self.built = False
        self._plan = None
        self._target_dtypes = None
        if self.compiled_loss is not None:
            self.compiled_loss.fused = None

    def build(self, input_shape: Any = None) -> None:
        """Builds every layer for inputs of ``input_shape``.

        Args:
            input_shape (tuple or None, default None): the input shape with the batch axis,
                e.g. (None, 64); None uses the shape from an ``Input`` or the first layer's
                ``input_shape=``.

        Raises:
            ValueError: no input shape is known, or a layer cannot take it.

        Example:

        >>> model = nn.Sequential([nn.layers.Dense(2)])
        >>> model.build((None, 4))
        >>> model.count_params()
        10
        """
        if input_shape is None:
            input_shape = self._batch_input_shape
        if input_shape is None:
            raise ValueError("Sequential.build: input_shape is unknown; pass it (with the batch "
                             "axis, e.g. (None, 64)), start the model with Input(shape), or "
                             "call the model on data")
        try:
            shape = tuple(None if d is None else int(d) for d in input_shape)
        except (TypeError, ValueError):
            raise ValueError(f"Sequential.build: input_shape must be a tuple of ints (None for "
                             f"unknown); got {input_shape!r}") from None
        if not shape:
            raise ValueError("Sequential.build: input_shape must include the batch axis; got ()")
        if not self._layers:
            raise ValueError("Sequential.build: the model has no layers")
        with BUILD_LOCK:
            fresh = [layer for layer in self._layers if not layer.built]
            try:
                if self._input_layer is not None and self._input_layer.batch_shape == shape:
                    inp = self._input_layer
                else:
                    inp = InputLayer(batch_shape=shape,
                                     dtype=(self._input_layer.dtype
                                            if self._input_layer is not None else
                                            _input_dtype(self._layers[0])),
                                     name=f"{self.name}_input")
                x = inp.output
                for layer in self._layers:
                    x = layer(x)
                self._init_graph(inp.output, x)
            except BaseException:
                for layer in fresh:  # never half-built: undo the layers this attempt built
                    _unbuild(layer)
                self._invalidate()
                raise
            self._batch_input_shape = shape
            self._target_dtypes = None
            if self.compiled_loss is not None:
                self.compiled_loss.fused = None

    def _ensure_graph(self, fn, x=None):
        if self.built:
            return
        if not self._layers:
            raise ValueError(f"{fn}: the model has no layers")
        if self._batch_input_shape is not None:
            self.build(self._batch_input_shape)
            return
        if x is None:
            return
        import numpy as np
        arr = x if isinstance(x, np.ndarray) else np.asarray(x)
        if arr.ndim == 0:
            raise ValueError(f"{fn}: x must have a batch axis; got a scalar")
        with BUILD_LOCK:
            if not self.built:
                self.build(self._batch_input_shape or ((None,) + tuple(arr.shape[1:])))

    def _compile_output_names(self):
        if self.built:
            return list(self.output_names)
        return [self._layers[-1].name] if self._layers else ["output"]

    @property
    def input_shape(self) -> Any:
        return self._batch_input_shape

    @property
    def output_shape(self) -> Any:
        if not self.built:
            raise ValueError(f"Sequential {self.name!r} is not built yet; it has no output shape")
        return super().output_shape

    def count_params(self) -> int:
        if not self.built:
            raise ValueError(f"Sequential {self.name!r} is not built yet; call build(input_shape) "
                             "or run it on data first")
        return super().count_params()

    # -- config ------------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """Returns ``{"name", "trainable", "layers"}``: the config of each layer in order.

        Example:

        >>> model = nn.Sequential([nn.Input((4,)), nn.layers.Dense(2)])
        >>> [layer["class_name"] for layer in model.get_config()["layers"]]
        ['InputLayer', 'Dense']
        """
        layers = []
        if self._input_layer is not None:
            layers.append(_serialize_layer(self._input_layer))
        elif self._batch_input_shape is not None:
            layers.append({"class_name": "InputLayer",
                           "config": {"batch_shape": self._batch_input_shape,
                                      "dtype": _input_dtype(self._layers[0]) or
                                      self._layers[0].dtype if self._layers else "float32",
                                      "name": f"{self.name}_input"}})
        layers.extend(_serialize_layer(layer) for layer in self._layers)
        return {"name": self.name, "trainable": self.trainable, "layers": layers}

    @classmethod
    def from_config(cls, config: Any) -> Any:
        """Rebuilds a Sequential (new weights) from ``get_config``'s dict.

        Args:
            config (dict): what ``get_config`` returned.

        Returns:
            Sequential: with the same layers, freshly initialized.

        Raises:
            ValueError: an unknown layer type or a malformed config.

        Example:

        >>> model = nn.Sequential([nn.Input((4,)), nn.layers.Dense(2)])
        >>> clone = nn.Sequential.from_config(model.get_config())
        >>> clone.count_params()
        10
        """
        model = cls(name=config.get("name"), trainable=config.get("trainable", True))
        for layer_config in config.get("layers", []):
            model.add(_deserialize_layer(layer_config))
        return model

    def __repr__(self):
        return (f"<Sequential name={self.name!r}, layers={len(self._layers)}, "
                f"built={self.built}>")


def _unbuild(layer):
    """Drop the weights of a layer whose build this attempt made (see Sequential.build)."""
    for lst in (layer._weights, layer._weight_names, layer._weight_trainable,
                layer._weight_regularizers):
        del lst[:]
    layer.built = False
    layer._build_input_shape = None


def _input_dtype(layer):
    """The input dtype a first layer asks for ("string" for TextVectorization / StringLookup),
    or None (float data keeps its dtype up to the first layer)."""
    return getattr(layer, "input_dtype", None)
