"""Layers with Keras names: ``nanonet.layers.Dense``, ``Activation``, ``Dropout``, ``Flatten``,
``InputLayer`` / ``Input``, the merge layers (``Add``, ``Concatenate``, ...); the ``Layer`` base
class; ``serialize`` / ``deserialize``."""
from __future__ import annotations

from .base import Layer, get_registered
from .core import Activation, Dense, Dropout, Flatten, Input, InputLayer
from .embedding import Embedding
from .recurrent import GRU, LSTM, Bidirectional, Masking, SimpleRNN
from .normalization import BatchNormalization, LayerNormalization
from .pooling import GlobalAveragePooling1D, GlobalAvgPool1D, GlobalMaxPool1D, GlobalMaxPooling1D
from .reshaping import Reshape
from .wrappers import TimeDistributed
from .merging import (Add, Average, Concatenate, Dot, Maximum, Minimum, Multiply, Subtract, add,
                      average, concatenate, dot, maximum, minimum, multiply, subtract)
from .node import SymbolicTensor
from .attention import MultiHeadAttention

__all__ = ["Layer", "Dense", "Activation", "Dropout", "Flatten", "InputLayer", "Input",
           "serialize", "deserialize"]
__all__ += ["BatchNormalization", "LayerNormalization", "GlobalAveragePooling1D",
            "GlobalMaxPooling1D", "GlobalAvgPool1D", "GlobalMaxPool1D", "Reshape",
            "TimeDistributed"]
__all__ += ["Embedding", "LSTM", "Masking"]
__all__ += ["Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate", "Dot",
            "add", "subtract", "multiply", "average", "maximum", "minimum", "concatenate", "dot",
            "SymbolicTensor"]
__all__ += ["MultiHeadAttention"]
__all__ += ["GRU", "SimpleRNN", "Bidirectional"]


def serialize(layer):
    """{"class_name": ..., "config": ...} for a layer."""
    return {"class_name": type(layer).__name__, "config": layer.get_config()}


def deserialize(config):
    """A new (unbuilt) layer from ``serialize``'s dict; any Layer subclass is known by name."""
    if not isinstance(config, dict) or "class_name" not in config:
        raise ValueError(
            f"layers.deserialize: expected a dict with 'class_name' and 'config'; got {config!r}")
    cls = get_registered(config["class_name"])
    if cls is None:
        raise ValueError(f"layers.deserialize: unknown layer class {config['class_name']!r}")
    return cls.from_config(dict(config.get("config") or {}))
