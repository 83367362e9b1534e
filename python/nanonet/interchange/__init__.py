"""Interchange with other tools: ``nanonet.interchange.onnx`` (export to ONNX, ``nanonet[onnx]``).

Submodules are imported on first use, so ``import nanonet`` never imports an optional package.
"""
from __future__ import annotations

import importlib

__all__ = ["onnx"]


def __getattr__(name):
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
