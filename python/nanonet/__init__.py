"""nanonet: Keras-style neural networks on the CPU, with C++17/OpenMP kernels."""
from __future__ import annotations

__version__ = "0.1.0"

from . import ops, reference
from .ops import get_num_threads, set_num_threads

# ---- model API
from . import callbacks, distributed, initializers, layers, losses, metrics, optimizers
from . import regularizers
from .layers import Input
from .models import Model, Sequential
from .random import set_seed

# ---- data, schedules
from . import datasets, models, preprocessing, schedules, utils

# ---- private training (DP-SGD)
from . import privacy

# ---- saving and serving (nanonet.saving, with zipfile, is imported on first use of load_model)
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .saving import load_model
from . import interchange  # Keras files, safetensors, PyTorch state dicts (lazy: no imports)
from . import wrappers  # scikit-learn estimators (scikit-learn imported on first use)

__all__ = [
    "__version__", "ops", "reference", "get_num_threads", "set_num_threads",
    "callbacks", "distributed", "initializers", "layers", "losses", "metrics", "optimizers", "regularizers",
    "Input", "Model", "Sequential", "set_seed", "datasets", "models", "preprocessing", "schedules", "utils",
    "load_model", "interchange", "wrappers", "privacy",
]


def __getattr__(name):
    if name == "load_model":
        from .saving import load_model
        globals()["load_model"] = load_model
        return load_model
    raise AttributeError(f"module 'nanonet' has no attribute {name!r}")
