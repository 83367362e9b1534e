"""Files and weights from other libraries: Keras 3 ``.keras`` / ``.weights.h5`` files
(``keras_files``), safetensors and PyTorch state dicts (``weights``).

Every submodule imports its optional package (h5py, safetensors, ...) only inside the functions
that need it; importing ``nanonet.interchange`` costs nothing.
"""
from __future__ import annotations

import importlib

__all__ = [
    "from_torch_state_dict",
    "keras_weight_names",
    "load_keras_model",
    "load_keras_weights",
    "to_torch_state_dict",
]

_LAZY = {"load_keras_model": "keras_files", "load_keras_weights": "keras_files",
         "from_torch_state_dict": "weights", "to_torch_state_dict": "weights",
         "keras_weight_names": "weights"}


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'nanonet.interchange' has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
