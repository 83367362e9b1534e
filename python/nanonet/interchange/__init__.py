"""Interchange with other tools: ``nanonet.interchange.onnx`` (export to ONNX, ``nanonet[onnx]``),
``keras_files`` (Keras 3 ``.keras`` / ``.weights.h5`` files in, ``nanonet[keras-files]``) and
``weights`` (safetensors files, ``nanonet[safetensors]``, and PyTorch state dicts). The functions
``load_keras_model``, ``load_keras_weights``, ``keras_weight_names``, ``from_torch_state_dict``
and ``to_torch_state_dict`` are also reachable from here.

Submodules are imported on first use, so ``import nanonet`` never imports an optional package.
"""
from __future__ import annotations

import importlib

_SUBMODULES = ("onnx", "keras_files", "weights")
_FUNCTIONS = {"load_keras_model": "keras_files", "load_keras_weights": "keras_files",
              "keras_weight_names": "weights", "from_torch_state_dict": "weights",
              "to_torch_state_dict": "weights"}

__all__ = [*_SUBMODULES, *_FUNCTIONS]


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _FUNCTIONS:
        return getattr(importlib.import_module(f"{__name__}.{_FUNCTIONS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
