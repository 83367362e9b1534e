"""Layers with Keras names: ``nanonet.layers.Dense``, ``Activation``, ``Dropout``, ``Flatten``,
``InputLayer`` / ``Input``, the merge layers (``Add``, ``Concatenate``, ...); the ``Layer`` base
class; ``serialize`` / ``deserialize``."""
from __future__ import annotations

from typing import Any

from .base import Layer, get_registered
from .core import Activation, Dense, Dropout, Flatten, Input, InputLayer
from .embedding import Embedding, PositionEmbedding, TokenAndPositionEmbedding
from .recurrent import GRU, LSTM, Bidirectional, Masking, SimpleRNN
from .normalization import BatchNormalization, LayerNormalization
from .pooling import GlobalAveragePooling1D, GlobalAvgPool1D, GlobalMaxPool1D, GlobalMaxPooling1D
from .reshaping import Reshape
from .wrappers import TimeDistributed
from .merging import (Add, Average, Concatenate, Dot, Maximum, Minimum, Multiply, Subtract, add,
                      average, concatenate, dot, maximum, minimum, multiply, subtract)
from .node import SymbolicTensor
from .attention import AdditiveAttention, Attention, MultiHeadAttention
from .preprocessing import IntegerLookup, StringLookup, TextVectorization
from .convolutional import (Conv1D, Conv2D, Convolution1D, Convolution2D, DepthwiseConv2D,
                            SeparableConv2D)
from .pooling import (AveragePooling1D, AveragePooling2D, AvgPool1D, AvgPool2D,
                      GlobalAveragePooling2D, GlobalAvgPool2D, GlobalMaxPool2D,
                      GlobalMaxPooling2D, MaxPool1D, MaxPool2D, MaxPooling1D, MaxPooling2D)
from .reshaping import Cropping2D, UpSampling2D, ZeroPadding2D
from .image_preprocessing import (RandomContrast, RandomCrop, RandomFlip, RandomRotation,
                                  RandomTranslation, RandomZoom, Rescaling, Resizing)

__all__ = ["Layer", "Dense", "Activation", "Dropout", "Flatten", "InputLayer", "Input",
           "serialize", "deserialize"]
__all__ += ["BatchNormalization", "LayerNormalization", "GlobalAveragePooling1D",
            "GlobalMaxPooling1D", "GlobalAvgPool1D", "GlobalMaxPool1D", "Reshape",
            "TimeDistributed"]
__all__ += ["Embedding", "LSTM", "Masking"]
__all__ += ["Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate", "Dot",
            "add", "subtract", "multiply", "average", "maximum", "minimum", "concatenate", "dot",
            "SymbolicTensor"]
__all__ += ["MultiHeadAttention", "Attention", "AdditiveAttention", "PositionEmbedding",
            "TokenAndPositionEmbedding"]
__all__ += ["TextVectorization", "StringLookup", "IntegerLookup"]
__all__ += ["Conv1D", "Conv2D", "Convolution1D", "Convolution2D", "DepthwiseConv2D",
            "SeparableConv2D", "MaxPooling1D", "MaxPooling2D", "AveragePooling1D",
            "AveragePooling2D", "MaxPool1D", "MaxPool2D", "AvgPool1D", "AvgPool2D",
            "GlobalAveragePooling2D", "GlobalMaxPooling2D", "GlobalAvgPool2D", "GlobalMaxPool2D",
            "ZeroPadding2D", "Cropping2D", "UpSampling2D", "Rescaling", "Resizing", "RandomFlip",
            "RandomRotation", "RandomZoom", "RandomTranslation", "RandomContrast", "RandomCrop"]
__all__ += ["GRU", "SimpleRNN", "Bidirectional"]


def serialize(layer: Any) -> Any:
    """The ``{"class_name": ..., "config": ...}`` dict that describes a layer.

    Args:
        layer (Layer): the layer.

    Returns:
        dict: JSON-ready; ``deserialize`` makes a new layer from it.

    Example:

    >>> nn.layers.serialize(nn.layers.Dense(3, name="d"))["class_name"]
    'Dense'
    """
    return {"class_name": type(layer).__name__, "config": layer.get_config()}


def deserialize(config: Any) -> Any:
    """A new, unbuilt layer from the dict ``serialize`` returns.

    Any Layer subclass is known by its class name; nothing else is imported or executed.

    Args:
        config (dict): ``{"class_name": ..., "config": {...}}``.

    Returns:
        Layer: a new layer with that configuration (no weights yet).

    Raises:
        ValueError: config is not such a dict, or names an unknown class.

    Example:

    >>> layer = nn.layers.deserialize(nn.layers.serialize(nn.layers.Dense(3)))
    >>> layer.units, layer.built
    (3, False)
    """
    if not isinstance(config, dict) or "class_name" not in config:
        raise ValueError(
            f"layers.deserialize: expected a dict with 'class_name' and 'config'; got {config!r}")
    cls = get_registered(config["class_name"])
    if cls is None:
        raise ValueError(f"layers.deserialize: unknown layer class {config['class_name']!r}")
    return cls.from_config(dict(config.get("config") or {}))
