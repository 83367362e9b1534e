"""Differentially private training (DP-SGD, Abadi et al. 2016) and its privacy accounting.

What a step does (``model.compile(optimizer=nn.optimizers.DPSGD(...)`` or ``DPAdam``):

1. Forward as usual. The losses give d(mean loss)/d outputs; example b's own gradient g_b is
   B times its row's contribution (the batch mean is sum_b loss_b / B), as Opacus defines it for
   ``loss_reduction="mean"``.
2. Backward, first pass: each layer with trainable weights runs ``dp_backprop`` instead of
   ``backprop``; it returns the input gradients and the squared norm of every example's gradient
   of its weights, computed without forming the per-example gradients where the algebra allows
   (the "ghost norm": ||x_b||^2 ||dz_b||^2 for a Dense layer, the T x T Gram trick for weights
   used at every time step, per-example sums over tokens for an Embedding; see
   ``nanonet.ops.per_example_matmul_sq_norms``). The norms of all layers add up to ||g_b||^2.
3. Clip factors c_b = min(1, l2_norm_clip / (||g_b|| + 1e-6)) (Opacus's rule).
4. Second pass: each layer forms sum_b c_b g_b with ``dp_grads`` from what its first pass kept,
   one GEMM with per-example row scales; nothing runs backward again.
5. The optimizer adds Gaussian noise of std ``noise_multiplier * l2_norm_clip`` to every summed
   gradient, divides by the batch size (the expected batch size under Poisson sampling) and
   applies its update rule.

The per-layer protocol (what a layer implements to support DP-SGD; Dense, Embedding, LSTM,
LayerNormalization and MultiHeadAttention do):

    dp_backprop(ctx, dy, need_dx=True) -> (dinputs, sq_norms, state)
        ``backprop``'s dinputs; sq_norms, a (B,) float array: for each example b of the batch,
        the squared L2 norm of the gradient of this call site's contribution to the loss wrt
        all of the layer's trainable weights (kernel and bias together), computed from ctx and
        the rows of dy that belong to example b; state: anything ``dp_grads`` needs.
    dp_grads(state, scale) -> grads
        The trainable weights' gradients (aligned with ``trainable_weights``) with example b's
        contribution multiplied by scale[b] (a (B,) array): sum_b scale[b] g_b.

A layer without trainable weights needs neither (merges, pooling, reshaping, dropout). A layer
with trainable weights that lacks them, BatchNormalization (its batch statistics mix examples,
so per-example gradients do not exist; Opacus refuses it too), a layer used at several call
sites and a nested Model are refused by ``compile`` with an error naming the layer.

Names: ``l2_norm_clip`` is TF Privacy's name (Opacus: ``max_grad_norm``), ``noise_multiplier``
is both libraries' name; the expected batch size of Poisson sampling is Opacus's
``expected_batch_size``.

Accounting needs Google's ``dp-accounting`` (``pip install "nanonet[privacy]"``):
``compute_epsilon``, ``compute_noise_multiplier`` and ``nanonet.callbacks.PrivacyBudget``.
"""
from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

__all__ = ["compute_epsilon", "compute_noise_multiplier", "epsilon_after_steps", "check_model",
           "private_gradients"]

# Opacus's stabiliser in the clip factor C / (||g|| + 1e-6).
_CLIP_EPS = 1e-6
_RDP_ORDERS = ([1 + x / 10.0 for x in range(1, 100)] + list(range(11, 64)) +
               [128, 256, 512, 1024])


# ---- the model side -------------------------------------------------------------------------

def _refusal(layer):
    """Why a layer cannot train under DP-SGD, or None."""
    from .layers.normalization import BatchNormalization
    name = f"{type(layer).__name__} {layer.name!r}"
    if isinstance(layer, BatchNormalization):
        return (f"{name}: BatchNormalization is not supported under DP-SGD (its batch "
                "statistics mix the examples of a batch, so per-example gradients do not "
                "exist); use LayerNormalization")
    if layer.trainable_weights and not (callable(getattr(layer, "dp_backprop", None)) and
                                        callable(getattr(layer, "dp_grads", None))):
        if hasattr(layer, "_backward"):
            return (f"{name}: a nested model with trainable weights is not supported under "
                    "DP-SGD; build one flat model")
        return (f"{name} does not support DP-SGD: it defines no dp_backprop / dp_grads (the "
                "per-example gradient norm protocol, see nanonet.privacy)")
    return None


def check_model(model: Any) -> Any:
    """Raise ValueError when a layer of ``model`` cannot train under DP-SGD (see the module
    docstring); the message names the layer."""
    for layer in getattr(model, "layers", []):
        why = _refusal(layer)
        if why is not None:
            raise ValueError(f"compile: {why}")
    plan = getattr(model, "_plan", None)
    if plan is None:
        return
    seen = set()
    for layer, *_ in plan.steps:
        why = _refusal(layer)
        if why is not None:
            raise ValueError(f"compile: {why}")
        if layer.trainable_weights:
            if id(layer) in seen:
                raise ValueError(f"compile: {type(layer).__name__} {layer.name!r} is used at "
                                 "several call sites; DP-SGD needs each example's gradient of "
                                 "a shared layer as one sum, which is not supported")
            seen.add(id(layer))


def private_gradients(model: Any, ctxs: Any, douts: Any, batch: int) -> Any:
    """Steps 2-5 of the module docstring: ({id(weight): noisy mean of the clipped gradients}
    for every trainable weight, the per-example gradient norms (B,))."""
    if getattr(model, "_dp", None) is not None:
        raise ValueError("fit: DP-SGD optimizers do not run under data-parallel MPI training")
    plan_id = id(getattr(model, "_plan", None))
    if getattr(model, "_privacy_checked", None) != plan_id:
        check_model(model)
        model._privacy_checked = plan_id
    sq = np.zeros(batch)
    kept = []

    def hook(layer):
        if not layer.trainable_weights:
            return layer.backprop

        def first_pass(ctx, dy, need_dx=True):
            dx, sq_norms, state = layer.dp_backprop(ctx, dy, need_dx=need_dx)
            sq_norms = np.asarray(sq_norms, dtype=np.float64)
            if sq_norms.shape != (batch,):
                raise ValueError(f"{type(layer).__name__} {layer.name!r}: dp_backprop must "
                                 f"return squared norms of shape ({batch},); got "
                                 f"{sq_norms.shape}")
            sq[:] += sq_norms
            kept.append((layer, state))
            return dx, None
        return first_pass

    model._backward(ctxs, douts, False, hook=hook)
    # d(mean loss) rows are g_b / B: example b's gradient norm is B sqrt(sq_b).
    norms = batch * np.sqrt(sq)
    clip = model.optimizer.l2_norm_clip
    factors = np.minimum(1.0, clip / (norms + _CLIP_EPS))
    wgrads = {}
    for layer, state in kept:
        scale = (factors * batch).astype(layer.dtype)
        for w, g in zip(layer.trainable_weights, layer.dp_grads(state, scale)):
            if g is not None:
                prev = wgrads.get(id(w))
                wgrads[id(w)] = g if prev is None else prev + g
    return model.optimizer.privatize(wgrads, model.trainable_weights, batch), norms


# ---- accounting (Google's dp-accounting) -----------------------------------------------------

def _dp_accounting():
    try:
        import dp_accounting
    except ImportError:
        raise ImportError('privacy accounting needs Google\'s dp-accounting: pip install '
                          '"nanonet[privacy]"') from None
    return dp_accounting


def _positive(value, name, fn, integral=False):
    kinds = numbers.Integral if integral else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kinds) or not value > 0 or \
            not math.isfinite(value):
        what = "a positive int" if integral else "a positive number"
        raise ValueError(f"{fn}: {name} must be {what}; got {value!r}")
    return value


def _event_and_accountant(num_examples, batch_size, noise_multiplier, epochs, accountant, fn):
    dpa = _dp_accounting()
    _positive(num_examples, "num_examples", fn, integral=True)
    _positive(batch_size, "batch_size", fn, integral=True)
    _positive(epochs, "epochs", fn)
    if batch_size > num_examples:
        raise ValueError(f"{fn}: batch_size must be <= num_examples = {num_examples}; got "
                         f"{batch_size}")
    if accountant not in ("rdp", "prv"):
        raise ValueError(f"{fn}: accountant must be 'rdp' or 'prv'; got {accountant!r}")
    q = batch_size / num_examples
    steps = int(math.ceil(epochs * num_examples / batch_size))

    def event(sigma):
        return dpa.SelfComposedDpEvent(
            dpa.PoissonSampledDpEvent(q, dpa.GaussianDpEvent(sigma)), steps)

    def make():
        if accountant == "rdp":
            return dpa.rdp.RdpAccountant(_RDP_ORDERS)
        return dpa.pld.PLDAccountant(value_discretization_interval=1e-4)
    return event, make


def _check_delta(delta, fn):
    if isinstance(delta, bool) or not isinstance(delta, numbers.Real) or not 0 < delta < 1:
        raise ValueError(f"{fn}: delta must be a number in (0, 1); got {delta!r}")


def compute_epsilon(num_examples: Any, batch_size: int | None, noise_multiplier: Any, epochs: int,
                    delta: Any, accountant: Any = "rdp") -> Any:
    """The epsilon of DP-SGD with Poisson sampling (rate batch_size / num_examples) for
    ceil(epochs * num_examples / batch_size) steps of the Gaussian mechanism with
    ``noise_multiplier``, at ``delta``.

    accountant: "rdp" (Renyi DP, the accountant of Abadi et al., TF Privacy's and Opacus's
    default) or "prv" (the numerical composition of the privacy loss distribution: dp-accounting's
    PLD accountant, the same idea as Opacus's PRV accountant; tighter)."""
    fn = "compute_epsilon"
    _check_delta(delta, fn)
    if isinstance(noise_multiplier, bool) or not isinstance(noise_multiplier, numbers.Real) or \
            noise_multiplier < 0:
        raise ValueError(f"{fn}: noise_multiplier must be a number >= 0; got "
                         f"{noise_multiplier!r}")
    if noise_multiplier == 0:
        return math.inf
    event, make = _event_and_accountant(num_examples, batch_size, noise_multiplier, epochs,
                                        accountant, fn)
    acc = make()
    acc.compose(event(float(noise_multiplier)))
    return float(acc.get_epsilon(float(delta)))


def epsilon_after_steps(sampling_rate: Any, noise_multiplier: Any, steps: int | None, delta: Any,
                        accountant: Any = "rdp") -> Any:
    """The epsilon after ``steps`` DP-SGD steps with Poisson sampling rate ``sampling_rate``
    (batch_size / num_examples): what ``PrivacyBudget`` reports."""
    fn = "epsilon_after_steps"
    _check_delta(delta, fn)
    if not 0 < sampling_rate <= 1:
        raise ValueError(f"{fn}: sampling_rate must be in (0, 1]; got {sampling_rate!r}")
    if steps == 0:
        return 0.0
    if noise_multiplier == 0:
        return math.inf
    dpa = _dp_accounting()
    acc = dpa.rdp.RdpAccountant(_RDP_ORDERS) if accountant == "rdp" else \
        dpa.pld.PLDAccountant(value_discretization_interval=1e-4)
    acc.compose(dpa.SelfComposedDpEvent(
        dpa.PoissonSampledDpEvent(float(sampling_rate), dpa.GaussianDpEvent(noise_multiplier)),
        int(steps)))
    return float(acc.get_epsilon(float(delta)))


def compute_noise_multiplier(target_epsilon: Any, num_examples: Any, batch_size: int | None,
                             epochs: int, delta: Any, accountant: Any = "rdp",
                             tolerance: Any = 0.01) -> Any:
    """The smallest noise_multiplier whose ``compute_epsilon`` is at most target_epsilon (to
    within ``tolerance`` in the noise multiplier), found by dp-accounting's calibration."""
    fn = "compute_noise_multiplier"
    _positive(target_epsilon, "target_epsilon", fn)
    _check_delta(delta, fn)
    _positive(tolerance, "tolerance", fn)
    dpa = _dp_accounting()
    event, make = _event_and_accountant(num_examples, batch_size, 1.0, epochs, accountant, fn)
    sigma = dpa.calibrate_dp_mechanism(
        make, event, float(target_epsilon), float(delta),
        dpa.LowerEndpointAndGuess(1e-3, 1.0), tol=float(tolerance))
    return float(sigma)
