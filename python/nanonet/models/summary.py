"""``model.summary()``: the table of layers (Keras 3's layout).

Columns: "Layer (type)", "Output Shape", "Param #", and for graph models "Connected to" (the
tensors each call site consumes, as ``layer[node][tensor]``). Inner columns are cut to fit the
line; the last one never is. Totals follow, with their sizes in bytes.
"""
from __future__ import annotations

from typing import Any

from ..layers.node import fmt_shape

__all__ = ["print_summary", "format_bytes"]


def format_bytes(n: int) -> Any:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.2f} {unit}"
        n /= 1024.0
    return f"{n:.2f} GB"


def _rows_sequential(model):
    rows = []
    for layer in model.layers:
        node = _node_in(model, layer)
        shape = node.outputs[0].shape if node.single_output else [t.shape for t in node.outputs]
        rows.append([(f"{layer.name} ({type(layer).__name__})", fmt_shape(shape),
                      f"{layer.count_params():,}")])
    return rows


def _node_in(model, layer):
    ids = {id(n) for n in model._nodes}
    for node in layer._inbound_nodes:
        if id(node) in ids:
            return node
    raise ValueError(f"layer {layer.name!r} has no node in model {model.name!r}")


def _rows_graph(model):
    ids = {id(n) for n in model._nodes}
    index = {}
    for n in model._nodes:
        index[id(n)] = n.layer._inbound_nodes.index(n)
    rows = []
    for layer in model.layers:
        nodes = [n for n in layer._inbound_nodes if id(n) in ids]
        node = nodes[0]
        shape = node.outputs[0].shape if node.single_output else [t.shape for t in node.outputs]
        sources = [f"{t.layer.name}[{index.get(id(t.node), 0)}][{t.tensor_index}]"
                   for n in nodes for t in n.inputs]
        params = f"{layer.count_params():,}" if layer.built else "0"
        block = [(f"{layer.name} ({type(layer).__name__})", fmt_shape(shape), params,
                  sources[0] if sources else "-")]
        block += [("", "", "", s) for s in sources[1:]]
        rows.append(block)
    return rows


def print_summary(model: Any, line_length: int | None = None, positions: Any = None,
                  print_fn: Any = None) -> Any:
    if not model.built:
        raise ValueError(f"{type(model).__name__} {model.name!r} has not been built yet; call "
                         "build(input_shape), start it with Input(shape), or call it on data")
    print_fn = print if print_fn is None else print_fn
    graph = type(model).__name__ != "Sequential"
    if graph:
        width = 98 if line_length is None else int(line_length)
        fractions = positions or (0.33, 0.55, 0.67, 1.0)
        headers = ("Layer (type)", "Output Shape", "Param #", "Connected to")
        rows = _rows_graph(model)
    else:
        width = 65 if line_length is None else int(line_length)
        fractions = positions or (0.45, 0.85, 1.0)
        headers = ("Layer (type)", "Output Shape", "Param #")
        rows = _rows_sequential(model)
    stops = [int(width * p) if p <= 1 else int(p) for p in fractions]

    def line(cols):
        text, start = "", 0
        for k, (col, stop) in enumerate(zip(cols, stops)):
            cell = f" {col}"
            if k < len(stops) - 1:  # inner columns are cut to fit; the last one never is
                cell = cell[:stop - start - 1].ljust(stop - start)
            text += cell
            start = stop
        return text.rstrip()

    weights = model.weights
    train = model.trainable_weights
    total = sum(w.size for w in weights)
    trainable = sum(w.size for w in train)
    total_bytes = sum(w.nbytes for w in weights)
    train_bytes = sum(w.nbytes for w in train)
    print_fn(f'Model: "{model.name}"')
    print_fn("_" * width)
    print_fn(line(headers))
    print_fn("=" * width)
    for i, block in enumerate(rows):
        for row in block:
            print_fn(line(row))
        if i < len(rows) - 1:
            print_fn("-" * width)
    print_fn("=" * width)
    print_fn(f"Total params: {total:,} ({format_bytes(total_bytes)})")
    print_fn(f"Trainable params: {trainable:,} ({format_bytes(train_bytes)})")
    print_fn(f"Non-trainable params: {total - trainable:,} "
             f"({format_bytes(total_bytes - train_bytes)})")
    print_fn("_" * width)
