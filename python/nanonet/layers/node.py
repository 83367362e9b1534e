"""Symbolic tensors and nodes: what calling a layer on ``nanonet.Input`` records.

A ``SymbolicTensor`` stands for an array that does not exist yet: it has a shape (batch axis
first, None where unknown), a dtype and a history (the layer that makes it, which of that layer's
call sites, which of its outputs). Calling a layer on symbolic tensors builds the layer from their
shapes and records a ``Node``: (layer, inbound tensors, call arguments, outbound tensors).
``nanonet.Model(inputs, outputs)`` walks the nodes back from its outputs (models/functional.py).

This module knows nothing about layers beyond the attributes it stores, so that layers/base.py
can import it without a cycle.
"""
from __future__ import annotations

from typing import Any

__all__ = ["SymbolicTensor", "Node", "is_symbolic", "flatten_inputs", "fmt_shape"]


def fmt_shape(shape: Any) -> Any:
    """(None, 8) -> "(None, 8)"; a list of shapes -> "[(None, 8), (None, 4)]"."""
    if isinstance(shape, list):
        return "[" + ", ".join(fmt_shape(s) for s in shape) + "]"
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + \
        ("," if len(shape) == 1 else "") + ")"


class SymbolicTensor:
    """A placeholder for an array in a graph, as Keras's ``KerasTensor``.

    Made by ``nanonet.Input`` and by calling a layer on symbolic tensors; consumed by
    ``nanonet.Model(inputs, outputs)``. It holds no data.

    Attributes:
        shape (tuple): batch axis first, None where unknown.
        dtype (str): a NumPy dtype name.
        name (str): the tensor's name.

    Example:

    >>> x = nn.Input((7,), dtype="int32")
    >>> h = nn.layers.Embedding(100, 4)(x)
    >>> h.shape, h.dtype
    ((None, 7, 4), 'float32')
    """

    __slots__ = ("shape", "dtype", "name", "layer", "node_index", "tensor_index",
                 "dtype_explicit")

    def __init__(self, shape: Any, dtype: Any, layer: Any, node_index: Any, tensor_index: Any,
                 name: str | None = None, dtype_explicit: Any = True) -> None:
        self.shape = tuple(shape)
        self.dtype = dtype
        self.layer = layer
        self.node_index = node_index
        self.tensor_index = tensor_index
        self.name = name or (layer.name if tensor_index == 0 else
                             f"{layer.name}_{tensor_index}")
        self.dtype_explicit = dtype_explicit

    @property
    def node(self) -> Any:
        """The Node that produced this tensor."""
        return self.layer._inbound_nodes[self.node_index]

    @property
    def ndim(self) -> Any:
        return len(self.shape)

    def __repr__(self):
        return (f"<SymbolicTensor shape={fmt_shape(self.shape)}, dtype={self.dtype}, "
                f"name={self.name!r}>")

    # A symbolic tensor is not an array: refuse NumPy's implicit conversion with a clear error.
    def __array__(self, *args, **kwargs):
        raise TypeError(f"{self!r} is symbolic (made by nanonet.Input or by a layer called on "
                        "one); it has no values. Build a nanonet.Model(inputs, outputs) and "
                        "call or predict with arrays")

    def __bool__(self):
        raise TypeError(f"{self!r} is symbolic and has no truth value")


class Node:
    """One call site of a layer in a graph.

    layer: the layer called; inputs: the inbound SymbolicTensors, flat; single_input: the layer
    received one tensor (else a list of them); kwargs: the other (non-tensor) call arguments;
    outputs: the outbound SymbolicTensors, flat; single_output likewise.
    """

    __slots__ = ("layer", "inputs", "single_input", "kwargs", "outputs", "single_output")

    def __init__(self, layer: Any, inputs: Any, single_input: Any, kwargs: Any, outputs: Any,
                 single_output: Any) -> None:
        self.layer = layer
        self.inputs = list(inputs)
        self.single_input = single_input
        self.kwargs = dict(kwargs)
        self.outputs = list(outputs)
        self.single_output = single_output

    @property
    def is_input(self) -> Any:
        return not self.inputs

    @property
    def parent_nodes(self) -> Any:
        return [t.node for t in self.inputs]

    def __repr__(self):
        ins = ", ".join(t.name for t in self.inputs)
        return f"<Node {self.layer.name}({ins})>"


def is_symbolic(x: Any) -> Any:
    """True when x is a SymbolicTensor or a list/tuple/dict holding one."""
    if isinstance(x, SymbolicTensor):
        return True
    if isinstance(x, (list, tuple)):
        return any(isinstance(v, SymbolicTensor) for v in x)
    if isinstance(x, dict):
        return any(isinstance(v, SymbolicTensor) for v in x.values())
    return False


def flatten_inputs(x: Any, what: Any) -> Any:
    """(list of SymbolicTensors, single) from one tensor or a list/tuple of them."""
    if isinstance(x, SymbolicTensor):
        return [x], True
    if isinstance(x, (list, tuple)):
        for i, v in enumerate(x):
            if not isinstance(v, SymbolicTensor):
                raise TypeError(f"{what}: inputs[{i}] must be a symbolic tensor like the others "
                                f"(from nanonet.Input or a layer); got {type(v).__name__}")
        return list(x), False
    raise TypeError(f"{what}: expected a symbolic tensor or a list of them; got "
                    f"{type(x).__name__}")
