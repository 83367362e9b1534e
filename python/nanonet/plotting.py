"""Pictures of training and of models, with matplotlib (``pip install "nanonet[plot]"``):
``plot_history`` (loss and metric curves, training and validation) and ``plot_model`` (the layer
graph as boxes and arrows; no graphviz). Re-exported as ``nanonet.utils.plot_history`` /
``plot_model``.

Figures are made with ``matplotlib.figure.Figure`` and drawn by the Agg canvas, never through
pyplot: nothing depends on a display or changes matplotlib's global backend, so both work on
servers and in threads. The returned Figure shows itself in a notebook.
"""
from __future__ import annotations

import os
from typing import Any

__all__ = ["plot_history", "plot_model"]


def _matplotlib():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError('plotting needs matplotlib: pip install "nanonet[plot]"') from None
    return Figure, FigureCanvasAgg


def _save(fig, path, fn):
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{fn}: directory {directory!r} does not exist (saving {path!r})")
    fig.savefig(path, format="png", dpi=fig.dpi)


def plot_history(history: Any, metrics: Any = None, path: Any = None) -> Any:
    """Per-epoch curves of a ``fit``: one panel per metric (loss first), the training values and,
    when present, the validation values (``val_<metric>``).

    Args:
        history: the History that ``model.fit`` returns, or its ``.history`` dict.
        metrics: the metric names to draw (without ``val_``), e.g. ``["loss", "accuracy"]``;
            ``None`` draws every training metric recorded.
        path: where to save the figure as PNG (optional).

    Returns the matplotlib Figure. ValueError for an empty history or a metric it lacks.
    """
    Figure, FigureCanvasAgg = _matplotlib()
    from matplotlib.ticker import MaxNLocator
    fn = "plot_history"
    logs = getattr(history, "history", history)
    if not isinstance(logs, dict):
        raise TypeError(f"{fn}: history must be a History or its .history dict; got "
                        f"{type(history).__name__}")
    if metrics is None:
        metrics = [k for k in logs if not k.startswith("val_")]
        metrics.sort(key=lambda k: (k != "loss", list(logs).index(k)))
    elif isinstance(metrics, str):
        metrics = [metrics]
    metrics = list(metrics)
    if not metrics:
        raise ValueError(f"{fn}: the history holds no metrics (keys: {sorted(logs)})")
    for m in metrics:
        if m not in logs and f"val_{m}" not in logs:
            raise ValueError(f"{fn}: metric {m!r} is not in the history; it has {sorted(logs)}")
    fig = Figure(figsize=(4.2 * len(metrics), 3.4), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    for k, m in enumerate(metrics):
        ax = fig.add_subplot(1, len(metrics), k + 1)
        for key, label, style in ((m, "train", "-"), (f"val_{m}", "validation", "--")):
            values = logs.get(key)
            if values:
                epochs = range(1, len(values) + 1)
                ax.plot(epochs, [float(v) for v in values], style, marker="o", markersize=3,
                        label=label)
        ax.set_title(m)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(m)
        ax.grid(alpha=0.3)
        ax.legend()
    if path is not None:
        _save(fig, path, fn)
    return fig


def _graph(model):
    """(layers, edges, shapes): the model's layers (an Input box first), (source, target)
    index pairs, one per tensor a layer consumes, and each layer's output shape(s) by index."""
    nodes = [n for n in getattr(model, "_nodes", [])]
    layers, index, shapes = [], {}, {}
    for n in nodes:
        if id(n.layer) not in index:
            index[id(n.layer)] = len(layers)
            layers.append(n.layer)
            outs = [t.shape for t in n.outputs]
            shapes[len(layers) - 1] = outs[0] if len(outs) == 1 else outs
    if not layers:  # an unbuilt Sequential: its layers in a chain
        layers = list(model.layers)
        return layers, [(i, i + 1) for i in range(len(layers) - 1)], {}
    edges = []
    for n in nodes:
        for t in n.inputs:
            e = (index[id(t.layer)], index[id(n.layer)])
            if e not in edges:
                edges.append(e)
    return layers, edges, shapes


def _label(layer, shape):
    from .layers.node import fmt_shape
    kind = type(layer).__name__
    text = f"{layer.name}\n{kind}" if layer.name != kind.lower() else kind
    if shape is not None:
        text += "\n" + fmt_shape(list(shape) if isinstance(shape, list) else tuple(shape))
    return text


def plot_model(model: Any, to_file: Any = "model.png", show_shapes: Any = True,
               dpi: Any = 100) -> Any:
    """Draw the model's layer graph, top to bottom: one box per layer (name, class and, with
    ``show_shapes``, output shape), an arrow per tensor passed between layers. For Sequential
    and graph models; a layer shared by several call sites is one box with several arrows.
    Saves a PNG at ``to_file`` (``None``: do not save) and returns the matplotlib Figure."""
    Figure, FigureCanvasAgg = _matplotlib()
    fn = "plot_model"
    layers, edges, shapes = _graph(model)
    if not layers:
        raise ValueError(f"{fn}: model {getattr(model, 'name', model)!r} has no layers")
    # depth = longest path from an input; boxes of one depth side by side
    depth = [0] * len(layers)
    for _ in range(len(layers)):
        changed = False
        for a, b in edges:
            if depth[b] < depth[a] + 1:
                depth[b] = depth[a] + 1
                changed = True
        if not changed:
            break
    rows = {}
    for i, d in enumerate(depth):
        rows.setdefault(d, []).append(i)
    width = max(len(r) for r in rows.values())
    box_w, box_h, gap_x, gap_y = 2.6, 0.9, 0.5, 0.6
    pos = {}
    for d, members in rows.items():
        row_w = len(members) * box_w + (len(members) - 1) * gap_x
        x0 = (width * box_w + (width - 1) * gap_x - row_w) / 2
        for j, i in enumerate(members):
            pos[i] = (x0 + j * (box_w + gap_x) + box_w / 2, -d * (box_h + gap_y))
    total_w = width * box_w + (width - 1) * gap_x
    total_h = len(rows) * box_h + (len(rows) - 1) * gap_y
    fig = Figure(figsize=(max(3.0, total_w * 0.9 + 0.4), max(1.5, total_h * 0.9 + 0.4)), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(-0.2, total_w + 0.2)
    ax.set_ylim(-(total_h - box_h / 2) - 0.2, box_h / 2 + 0.2)
    ax.set_axis_off()
    for i, layer in enumerate(layers):
        x, y = pos[i]
        ax.text(x, y, _label(layer, shapes.get(i) if show_shapes else None), ha="center",
                va="center", fontsize=8,
                bbox={"boxstyle": "round,pad=0.4", "facecolor": "#e8f0fb",
                      "edgecolor": "#3a6ea5"}, gid=f"layer:{layer.name}")
    for a, b in edges:
        (xa, ya), (xb, yb) = pos[a], pos[b]
        ax.annotate("", xy=(xb, yb + box_h / 2), xytext=(xa, ya - box_h / 2),
                    arrowprops={"arrowstyle": "-|>", "color": "#444444", "lw": 1.0},
                    gid=f"edge:{layers[a].name}->{layers[b].name}")
    if to_file is not None:
        _save(fig, to_file, fn)
    return fig
