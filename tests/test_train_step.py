"""The one-call training step of a chain of Dense layers (ops.dense_chain_train_step, used by
Trainer._dense_chain_step) against the general step it replaces: bit-identical weights,
optimizer slots and logs; the models and batches it must leave to the general step."""
import numpy as np
import pytest

import nanonet as nn
from nanonet import ops
from nanonet.models.training import Trainer

L = nn.layers


@pytest.fixture
def spy(monkeypatch):
    """Counts the one-call steps taken."""
    calls = []
    real = ops.dense_chain_train_step

    def counted(*args):
        calls.append(args[8])
        return real(*args)

    monkeypatch.setattr(ops, "dense_chain_train_step", counted)
    return calls


def _general_only(monkeypatch):
    monkeypatch.setattr(Trainer, "_dense_chain_step", lambda self, xs, ys, sws: None)


CASES = {
    "sigmoid-mse-sgd": (["sigmoid", "sigmoid"], "mse", lambda: nn.optimizers.SGD(0.1), []),
    "relu-softmax-cce-adam": (["relu", "softmax"], "categorical_crossentropy", lambda: "adam",
                              ["accuracy"]),
    "tanh-softmax-sparse-nesterov": (["tanh", "softmax"], "sparse_categorical_crossentropy",
                                     lambda: nn.optimizers.SGD(0.05, momentum=0.9,
                                                               nesterov=True), ["accuracy"]),
    "linear-mae-adamw-clipvalue": (["elu", "linear"], "mae",
                                   lambda: nn.optimizers.AdamW(1e-2, clipvalue=0.01), ["mse"]),
    "sigmoid-bce-schedule": (["relu", "sigmoid"], "binary_crossentropy",
                             lambda: nn.optimizers.Adam(
                                 nn.schedules.ExponentialDecay(1e-2, 3, 0.5)), []),
    "cce-on-probabilities-not-fused": (["relu", "sigmoid"], "categorical_crossentropy",
                                       lambda: "sgd", []),
}


def _model(acts, loss, opt, metrics, dtype="float32", use_bias=(True, True), seed=0):
    nn.set_seed(seed)
    m = nn.Sequential([L.Input((7,)),
                       L.Dense(5, activation=acts[0], use_bias=use_bias[0], dtype=dtype),
                       L.Dense(3, activation=acts[1], use_bias=use_bias[1], dtype=dtype)])
    m.compile(optimizer=opt(), loss=loss, metrics=metrics)
    return m


def _data(loss, dtype, n=16, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 7)).astype(dtype)
    ids = rng.integers(0, 3, n)
    if loss == "sparse_categorical_crossentropy":
        return x, ids.astype(np.int64)
    if loss in ("mse", "mae"):
        return x, rng.random((n, 3)).astype(dtype)
    if loss == "binary_crossentropy":
        return x, (rng.random((n, 3)) > 0.5).astype(dtype)
    return x, np.eye(3, dtype=dtype)[ids]


def _train(m, x, y, steps=6):
    logs = [m.train_on_batch(x[k % 2::2], y[k % 2::2].copy(), return_dict=True)
            for k in range(steps)]
    return logs, [w.copy() for w in m.get_weights()], [np.array(v) for v in m.optimizer.variables]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("case", list(CASES))
def test_one_call_step_is_bit_identical_to_the_general_step(case, threads, dtype, spy,
                                                             monkeypatch):
    acts, loss, opt, metrics = CASES[case]
    x, y = _data(loss, dtype)
    before = nn.get_num_threads()
    nn.set_num_threads(threads)
    try:
        fast = _train(_model(acts, loss, opt, metrics, dtype), x, y)
        assert len(spy) == 6, "the one-call step did not run"
        _general_only(monkeypatch)
        slow = _train(_model(acts, loss, opt, metrics, dtype), x, y)
        assert len(spy) == 6
    finally:
        nn.set_num_threads(before)
    assert fast[0] == slow[0]  # every logged value, exactly
    for a, b in zip(fast[1] + fast[2], slow[1] + slow[2]):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def test_layers_without_bias_and_fit_match(spy, monkeypatch):
    acts, loss, opt, metrics = CASES["relu-softmax-cce-adam"]
    x, y = _data(loss, "float32", n=40)

    def run():
        m = _model(acts, loss, opt, metrics, use_bias=(False, True))
        h = m.fit(x, y, batch_size=8, epochs=2, validation_split=0.25, verbose=0)
        return h.history, m.get_weights()

    fast = run()
    assert len(spy) == 8  # 30 training samples a epoch in batches of 8: 4 steps, 2 epochs
    _general_only(monkeypatch)
    slow = run()
    assert fast[0] == slow[0]
    assert all(np.array_equal(a, b) for a, b in zip(fast[1], slow[1]))


def _variants():
    reg = lambda: nn.Sequential([L.Input((7,)), L.Dense(5, activation="relu",
                                                        kernel_regularizer="l2"),
                                 L.Dense(3, activation="softmax")])
    drop = lambda: nn.Sequential([L.Input((7,)), L.Dense(5, activation="relu"),
                                  L.Dropout(0.0), L.Dense(3, activation="softmax")])
    gelu = lambda: nn.Sequential([L.Input((7,)), L.Dense(5, activation="gelu"),
                                  L.Dense(3, activation="softmax")])
    plain = lambda: nn.Sequential([L.Input((7,)), L.Dense(5, activation="relu"),
                                   L.Dense(3, activation="softmax")])
    return {
        "kernel_regularizer": (reg, "adam", "categorical_crossentropy", {}),
        "a layer that is not Dense": (drop, "adam", "categorical_crossentropy", {}),
        "gelu needs its pre-activation": (gelu, "adam", "categorical_crossentropy", {}),
        "rmsprop": (plain, "rmsprop", "categorical_crossentropy", {}),
        "clipnorm": (plain, lambda: nn.optimizers.Adam(clipnorm=1.0),
                     "categorical_crossentropy", {}),
        "label smoothing": (plain, "adam",
                            lambda: nn.losses.CategoricalCrossentropy(label_smoothing=0.1), {}),
        "sample_weight": (plain, "adam", "categorical_crossentropy",
                          {"sample_weight": np.linspace(0.5, 1.5, 16)}),
        "class_weight": (plain, "adam", "categorical_crossentropy",
                         {"class_weight": {0: 1.0, 1: 2.0, 2: 0.5}}),
    }


@pytest.mark.parametrize("what", list(_variants()))
def test_what_the_one_call_step_leaves_to_the_general_step(what, spy):
    make, opt, loss, kwargs = _variants()[what]
    m = make()
    m.compile(optimizer=opt() if callable(opt) else opt, loss=loss() if callable(loss) else loss)
    x, y = _data("categorical_crossentropy", "float32")
    before = [w.copy() for w in m.get_weights()]
    m.train_on_batch(x, y, **kwargs)
    assert spy == []
    assert any(not np.array_equal(a, b) for a, b in zip(before, m.get_weights()))


def test_a_frozen_layer_or_a_new_compile_is_seen(spy):
    acts, loss, opt, metrics = CASES["sigmoid-mse-sgd"]
    m = _model(acts, loss, opt, metrics)
    x, y = _data(loss, "float32")
    m.train_on_batch(x, y)
    assert spy == ["sgd"]
    m.layers[0].trainable = False
    frozen = m.layers[0].kernel.copy()
    m.train_on_batch(x, y)
    assert spy == ["sgd"] and np.array_equal(frozen, m.layers[0].kernel)
    m.layers[0].trainable = True
    m.compile(optimizer="adam", loss="mse")
    m.train_on_batch(x, y)
    assert spy == ["sgd", "adam"]


def test_the_binding_checks_its_arrays():
    f = ops.dense_chain_train_step
    x = np.zeros((4, 3), np.float32)
    y = np.zeros((4, 2), np.float32)
    k1, b1 = np.zeros((3, 5), np.float32), np.zeros(5, np.float32)
    k2 = np.zeros((5, 2), np.float32)
    ok = dict(x=x, y_true=y, kernels=[k1, k2], biases=[b1, None], activations=["relu", "linear"],
              loss="mse", fused_softmax=False, from_logits=False, optimizer="sgd", lr=0.1,
              hyper=(0.0, False), clipvalue=0.0, slots=[[], [], []])
    f(*ok.values())  # accepted

    def bad(match, **change):
        args = dict(ok, **change)
        with pytest.raises((ValueError, TypeError), match=match):
            f(*args.values())

    bad(r"kernels\[1\] must have 5 rows", kernels=[k1, np.zeros((4, 2), np.float32)])
    bad(r"biases\[0\] must hold 5 elements", biases=[np.zeros(4, np.float32), None])
    bad("same dtype|dtype", kernels=[k1.astype(np.float64), k2])
    bad(r"y_true", y_true=np.zeros((4, 3), np.float32))
    bad("optimizer must be 'sgd' or 'adam'", optimizer="rmsprop")
    bad(r"slots must hold one list per parameter \(3\)", slots=[[], []])
    bad(r"slots\[0\] must hold 1 arrays", hyper=(0.9, False))
    bad("fused softmax output must be given as a linear last layer", fused_softmax=True,
        activations=["relu", "softmax"], loss="categorical_crossentropy")
    bad("needs the pre-activation", activations=["gelu", "linear"])
    bad("writeable", kernels=[np.broadcast_to(k1, k1.shape), k2])


def test_a_functional_chain_takes_the_one_call_step_and_a_branch_does_not(spy):
    x, y = _data("mse", "float32")
    inp = nn.Input((7,))
    chain = nn.Model(inp, L.Dense(3, activation="sigmoid")(L.Dense(5, activation="relu")(inp)))
    chain.compile(optimizer="sgd", loss="mse")
    chain.train_on_batch(x, y)
    assert spy == ["sgd"]
    inp = nn.Input((7,))
    h = L.Dense(5, activation="relu")(inp)
    out = L.Dense(3)(L.Add()([h, L.Dense(5)(inp)]))
    branch = nn.Model(inp, out)
    branch.compile(optimizer="sgd", loss="mse")
    branch.train_on_batch(x, y)
    assert spy == ["sgd"]
