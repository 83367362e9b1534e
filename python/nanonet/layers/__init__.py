"""Layers with Keras names: ``nanonet.layers.Dense``, ``Activation``, ``Dropout``, ``Flatten``,
``InputLayer`` / ``Input``, the merge layers (``Add``, ``Concatenate``, ...); the ``Layer`` base
class; ``serialize`` / ``deserialize``."""
from __future__ import annotations

from .base import Layer, get_registered
from .core import Activation, Dense, Dropout, Flatten, Input, InputLayer
from .embedding import Embedding
from .recurrent import LSTM, Masking
from .normalization import BatchNormalization, LayerNormalization
from .pooling import GlobalAveragePooling1D, GlobalAvgPool1D, GlobalMaxPool1D, GlobalMaxPooling1D
from .reshaping import Reshape
from .wrappers import TimeDistributed
from .merging import (Add, Average, Concatenate, Dot, Maximum, Minimum, Multiply, Subtract, add,
                      average, concatenate, dot, maximum, minimum, multiply, subtract)
from .node import SymbolicTensor
from .attention import MultiHeadAttention
from .convolutional import (Conv1D, Conv2D, Convolution1D, Convolution2D, DepthwiseConv2D,
                            SeparableConv2D)
from .pooling import (AveragePooling1D, AveragePooling2D, AvgPool1D, AvgPool2D,
                      GlobalAveragePooling2D, GlobalAvgPool2D, GlobalMaxPool2D,
                      GlobalMaxPooling2D, MaxPool1D, MaxPool2D, MaxPooling1D, MaxPooling2D)
from .reshaping import Cropping2D, UpSampling2D, ZeroPadding2D
from .preprocessing import (RandomContrast, RandomCrop, RandomFlip, RandomRotation,
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
__all__ += ["MultiHeadAttention"]
__all__ += ["Conv1D", "Conv2D", "Convolution1D", "Convolution2D", "DepthwiseConv2D",
            "SeparableConv2D", "MaxPooling1D", "MaxPooling2D", "AveragePooling1D",
            "AveragePooling2D", "MaxPool1D", "MaxPool2D", "AvgPool1D", "AvgPool2D",
            "GlobalAveragePooling2D", "GlobalMaxPooling2D", "GlobalAvgPool2D", "GlobalMaxPool2D",
            "ZeroPadding2D", "Cropping2D", "UpSampling2D", "Rescaling", "Resizing", "RandomFlip",
            "RandomRotation", "RandomZoom", "RandomTranslation", "RandomContrast", "RandomCrop"]


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
