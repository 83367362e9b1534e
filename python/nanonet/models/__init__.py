"""Models: ``Model`` (the graph, Keras 3's Functional API) and ``Sequential`` (a chain of layers,
which is a Model). Find each part by its file:

    functional.py     symbolic graph -> Model: nodes, topological order, execution (forward and
                      backward over the graph), nesting, get_config / from_config
    sequential.py     Sequential: add / pop / build, a Model whose graph is a chain
    training.py       compile / fit / evaluate / predict / *_on_batch: the training loop
    compile_utils.py  per-output losses, loss weights and metrics; the fused softmax +
                      cross-entropy decision
    data_adapters.py  inputs, targets and sample weights (arrays, lists, dicts) -> checked arrays
    summary.py        model.summary()
    cloning.py        clone_model, model.to_json / model_from_json
"""
from __future__ import annotations

from ..layers.base import _LAYER_CLASSES
from .functional import Functional, Model
from .sequential import Sequential

_LAYER_CLASSES.setdefault("Functional", Model)  # Keras's class name for a graph model

__all__ = ["Model", "Functional", "Sequential"]

from .cloning import clone_model, model_from_json  # noqa: E402

__all__ += ["clone_model", "model_from_json"]
