"""Python optimizer objects (nanonet.optimizers): trajectories against nanonet.reference, Keras
formulas on hand-computed values, clipping, weight decay, schedules, slot state, errors."""
import math

import numpy as np
import pytest

import nanonet as nn
from nanonet import optimizers, reference

from .tolerances import TOL


def _params(rng, dtype):
    return [rng.standard_normal((3, 4)).astype(dtype), rng.standard_normal(4).astype(dtype)]


def _grads(rng, params, k):
    return [rng.standard_normal(p.shape).astype(p.dtype) * (1 + k) for p in params]


def _reference_run(kind, params, grad_seq, lr_fn, **hp):
    """The same steps done with the NumPy twins, slot by slot, in float64."""
    params = [p.astype(np.float64) for p in params]
    slots = [dict(v=np.zeros_like(p), m=np.zeros_like(p), mb=np.zeros_like(p),
                  ag=np.zeros_like(p)) for p in params]
    clipnorm = hp.pop("clipnorm", None)
    global_clipnorm = hp.pop("global_clipnorm", None)
    clipvalue = hp.pop("clipvalue", None) or 0.0
    wd = hp.pop("weight_decay", None)
    for step, grads in enumerate(grad_seq):
        lr = lr_fn(step)
        grads = [g.astype(np.float64) for g in grads]
        if clipnorm is not None:
            scales = [clipnorm / max(math.sqrt(reference.sum_squares(g)), clipnorm) for g in grads]
        elif global_clipnorm is not None:
            norm = math.sqrt(sum(reference.sum_squares(g) for g in grads))
            scales = [global_clipnorm / max(norm, global_clipnorm)] * len(grads)
        else:
            scales = [1.0] * len(grads)
        for p, g, s, sc in zip(params, grads, slots, scales):
            if kind == "sgd":
                if wd:
                    p -= p * (wd * lr)
                reference.sgd_update(p, g, s["v"], lr, grad_scale=sc, clipvalue=clipvalue, **hp)
            elif kind == "adam":
                reference.adam_update(p, g, s["m"], s["v"], lr, step + 1, weight_decay=wd or 0.0,
                                      grad_scale=sc, clipvalue=clipvalue, **hp)
            else:
                if wd:
                    p -= p * (wd * lr)
                reference.rmsprop_update(p, g, s["v"], lr, momentum_buf=s["mb"],
                                         average_grad=s["ag"], grad_scale=sc,
                                         clipvalue=clipvalue, **hp)
    return params


CASES = [
    ("sgd", optimizers.SGD, {}),
    ("sgd", optimizers.SGD, {"momentum": 0.9}),
    ("sgd", optimizers.SGD, {"momentum": 0.8, "nesterov": True}),
    ("sgd", optimizers.SGD, {"momentum": 0.5, "clipnorm": 0.7}),
    ("sgd", optimizers.SGD, {"weight_decay": 0.1}),
    ("adam", optimizers.Adam, {}),
    ("adam", optimizers.Adam, {"beta_1": 0.5, "beta_2": 0.9, "epsilon": 1e-3}),
    ("adam", optimizers.Adam, {"global_clipnorm": 1.5}),
    ("adam", optimizers.Adam, {"clipvalue": 0.3}),
    ("adam", optimizers.AdamW, {"weight_decay": 0.05}),
    ("rmsprop", optimizers.RMSprop, {}),
    ("rmsprop", optimizers.RMSprop, {"momentum": 0.9}),
    ("rmsprop", optimizers.RMSprop, {"centered": True, "rho": 0.8}),
    ("rmsprop", optimizers.RMSprop, {"centered": True, "momentum": 0.5, "clipnorm": 0.5}),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind,cls,hp", CASES)
def test_trajectory_matches_reference(kind, cls, hp, dtype):
    rng = np.random.default_rng(7)
    params = _params(rng, dtype)
    start = [p.copy() for p in params]
    grad_seq = [_grads(rng, params, k) for k in range(5)]
    lr = 0.05
    opt = cls(learning_rate=lr, **hp)
    for grads in grad_seq:
        opt.apply(grads, params)
    assert opt.iterations == 5
    want = _reference_run(kind, start, grad_seq, lambda s: lr, **dict(hp))
    tol = 50 * TOL[np.dtype(dtype).name]["optimizer"]
    for p, w in zip(params, want):
        assert p.dtype == dtype
        np.testing.assert_allclose(p, w, rtol=tol, atol=tol)


def test_sgd_hand_values():
    p = np.array([1.0])
    opt = optimizers.SGD(learning_rate=0.1, momentum=0.9)
    opt.apply([np.array([0.5])], [p])        # v = -0.05
    np.testing.assert_allclose(p, [0.95], rtol=1e-15)
    opt.apply([np.array([0.5])], [p])        # v = 0.9 * -0.05 - 0.05 = -0.095
    np.testing.assert_allclose(p, [0.855], rtol=1e-15)

    p = np.array([1.0])
    optimizers.SGD(learning_rate=0.1, momentum=0.9, nesterov=True).apply([np.array([0.5])], [p])
    np.testing.assert_allclose(p, [1.0 + 0.9 * -0.05 - 0.05], rtol=1e-15)

    p = np.array([2.0])
    optimizers.SGD().apply([np.array([3.0])], [p])  # default lr 0.01
    np.testing.assert_allclose(p, [1.97], rtol=1e-15)


def test_adam_hand_values():
    lr, b1, b2, eps = 0.001, 0.9, 0.999, 1e-7
    p = np.array([1.0, -2.0])
    g = np.array([0.5, -0.25])
    opt = optimizers.Adam()
    opt.apply([g], [p])
    m = (1 - b1) * g
    v = (1 - b2) * g * g
    alpha = lr * math.sqrt(1 - b2) / (1 - b1)
    want = np.array([1.0, -2.0]) - alpha * m / (np.sqrt(v) + eps)
    np.testing.assert_allclose(p, want, rtol=1e-14)
    # second step with step = 2
    opt.apply([g], [p])
    m = m + (g - m) * (1 - b1)
    v = v + (g * g - v) * (1 - b2)
    alpha = lr * math.sqrt(1 - b2 ** 2) / (1 - b1 ** 2)
    want = want - alpha * m / (np.sqrt(v) + eps)
    np.testing.assert_allclose(p, want, rtol=1e-14)


def test_adamw_decays_before_update():
    p = np.array([3.0])
    opt = optimizers.AdamW(learning_rate=0.01)  # weight_decay 0.004
    opt.apply([np.array([0.0])], [p])           # zero gradient: only the decay acts
    np.testing.assert_allclose(p, [3.0 - 3.0 * 0.004 * 0.01], rtol=1e-15)


def test_rmsprop_hand_values():
    p = np.array([1.0])
    g = np.array([0.5])
    optimizers.RMSprop(learning_rate=0.01).apply([g], [p])
    v = 0.1 * 0.25
    np.testing.assert_allclose(p, [1.0 - 0.01 * 0.5 / math.sqrt(v + 1e-7)], rtol=1e-14)

    p = np.array([1.0])
    optimizers.RMSprop(learning_rate=0.01, centered=True).apply([g], [p])
    a = 0.1 * 0.5
    np.testing.assert_allclose(p, [1.0 - 0.01 * 0.5 / math.sqrt(v - a * a + 1e-7)], rtol=1e-14)


def test_clipnorm_and_clipvalue_hand_values():
    p = np.array([0.0, 0.0])
    optimizers.SGD(learning_rate=1.0, clipnorm=1.0).apply([np.array([3.0, 4.0])], [p])
    np.testing.assert_allclose(p, [-0.6, -0.8], rtol=1e-15)

    p = np.array([0.0, 0.0])  # a norm below clipnorm is left alone
    optimizers.SGD(learning_rate=1.0, clipnorm=10.0).apply([np.array([3.0, 4.0])], [p])
    np.testing.assert_allclose(p, [-3.0, -4.0], rtol=1e-15)

    p1, p2 = np.zeros(1), np.zeros(1)  # global norm of (3, 4) is 5
    optimizers.SGD(learning_rate=1.0, global_clipnorm=1.0).apply(
        [np.array([3.0]), np.array([4.0])], [p1, p2])
    np.testing.assert_allclose([p1[0], p2[0]], [-0.6, -0.8], rtol=1e-15)

    p = np.zeros(3)
    optimizers.SGD(learning_rate=1.0, clipvalue=0.5).apply([np.array([2.0, -0.1, -7.0])], [p])
    np.testing.assert_allclose(p, [-0.5, 0.1, 0.5], rtol=1e-15)


def test_schedule_called_with_iterations():
    seen = []

    def schedule(step):
        seen.append(step)
        return 0.1 / (1 + step)

    p = np.array([0.0])
    opt = optimizers.SGD(learning_rate=schedule)
    for _ in range(3):
        opt.apply([np.array([1.0])], [p])
    assert seen == [0, 1, 2]
    np.testing.assert_allclose(p, [-(0.1 + 0.05 + 0.1 / 3)], rtol=1e-15)
    assert opt.learning_rate == pytest.approx(0.1 / 4)
    assert opt.learning_rate_schedule is schedule
    opt.learning_rate = 0.5  # a constant again (what a callback may set)
    assert opt.learning_rate == 0.5 and opt.learning_rate_schedule is None


def test_slots_lazy_per_parameter_and_variables_round_trip():
    rng = np.random.default_rng(0)
    params = _params(rng, np.float32)
    opt = optimizers.Adam(learning_rate=0.01)
    assert opt.variables[0] == 0 and len(opt.variables) == 1
    opt.apply(_grads(rng, params, 0), params)
    vars_ = opt.variables
    assert len(vars_) == 1 + 2 * len(params)
    assert [v.shape for v in vars_[1:]] == [params[0].shape] * 2 + [params[1].shape] * 2
    assert int(vars_[0]) == 1

    # a second optimizer restored from the first one continues on the same trajectory
    params_b = [p.copy() for p in params]
    opt_b = optimizers.Adam(learning_rate=0.01)
    opt_b.build(params_b)
    opt_b.set_variables([v.copy() for v in opt.variables])
    grads = _grads(rng, params, 1)
    opt.apply(grads, params)
    opt_b.apply(grads, params_b)
    for a, b in zip(params, params_b):
        np.testing.assert_array_equal(a, b)
    assert opt_b.iterations == 2

    with pytest.raises(ValueError, match="expected 5 arrays"):
        opt_b.set_variables(opt.variables[:3])
    bad = opt.variables
    bad[1] = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match=r"values\[1\] must have shape \(3, 4\)"):
        opt_b.set_variables(bad)


def test_sgd_without_momentum_has_no_slots():
    p = np.zeros(3)
    opt = optimizers.SGD()
    opt.apply([np.ones(3)], [p])
    assert len(opt.variables) == 1
    opt = optimizers.RMSprop(momentum=0.5, centered=True)
    opt.apply([np.ones(3)], [p])
    assert len(opt.variables) == 4  # iterations, velocity, momentum, average gradient


def test_none_gradients_are_skipped_and_dtype_follows_param():
    p1, p2 = np.ones(2, np.float32), np.ones(2, np.float32)
    opt = optimizers.SGD(learning_rate=0.5)
    opt.apply([None, np.array([1.0, 2.0])], [p1, p2])  # float64 grad for a float32 param
    np.testing.assert_array_equal(p1, [1, 1])
    np.testing.assert_allclose(p2, [0.5, 0.0])
    assert p2.dtype == np.float32
    p = np.ones(2)
    opt.apply_gradients([(np.ones(2), p)])
    np.testing.assert_allclose(p, [0.5, 0.5])


@pytest.mark.parametrize("cls", [optimizers.SGD, optimizers.Adam, optimizers.AdamW,
                                 optimizers.RMSprop])
def test_config_round_trip(cls):
    opt = cls(learning_rate=0.03, clipnorm=2.0)
    config = opt.get_config()
    assert config["learning_rate"] == 0.03 and config["clipnorm"] == 2.0
    again = cls.from_config(config)
    assert again.get_config() == config
    assert optimizers.deserialize(optimizers.serialize(opt)).get_config() == config


def test_config_round_trip_with_schedule():
    sched = nn.schedules.ExponentialDecay(0.1, decay_steps=2, decay_rate=0.5)
    opt = optimizers.Adam(learning_rate=sched)
    config = opt.get_config()
    assert config["learning_rate"]["class_name"] == "ExponentialDecay"
    again = optimizers.Adam.from_config(config)
    again.iterations = opt.iterations = 3
    assert again.learning_rate == opt.learning_rate == pytest.approx(0.1 * 0.5 ** 1.5)


def test_keras_defaults():
    assert optimizers.SGD().get_config()["learning_rate"] == 0.01
    adam = optimizers.Adam().get_config()
    assert (adam["learning_rate"], adam["beta_1"], adam["beta_2"], adam["epsilon"]) == \
        (0.001, 0.9, 0.999, 1e-7)
    assert optimizers.AdamW().weight_decay == 0.004
    rms = optimizers.RMSprop().get_config()
    assert (rms["learning_rate"], rms["rho"], rms["momentum"], rms["epsilon"], rms["centered"]) \
        == (0.001, 0.9, 0.0, 1e-7, False)


def test_registry():
    for name, cls in [("sgd", optimizers.SGD), ("adam", optimizers.Adam),
                      ("adamw", optimizers.AdamW), ("rmsprop", optimizers.RMSprop),
                      ("Adam", optimizers.Adam), ("RMSprop", optimizers.RMSprop)]:
        assert type(optimizers.get(name)) is cls
    opt = optimizers.SGD()
    assert optimizers.get(opt) is opt
    assert optimizers.get("sgd") is not optimizers.get("sgd")
    with pytest.raises(ValueError, match=r"Unknown optimizer 'adadelta'.*'adam'"):
        optimizers.get("adadelta")
    with pytest.raises(ValueError, match="Could not interpret optimizer"):
        optimizers.get(3)


@pytest.mark.parametrize("make,match", [
    (lambda: optimizers.SGD(learning_rate=0), "learning_rate must be in"),
    (lambda: optimizers.SGD(learning_rate=-1.0), "learning_rate"),
    (lambda: optimizers.SGD(learning_rate="fast"), "learning_rate must be a finite number"),
    (lambda: optimizers.SGD(momentum=1.5), "momentum must be in"),
    (lambda: optimizers.SGD(nesterov="yes"), "nesterov must be True or False"),
    (lambda: optimizers.Adam(beta_1=1.0), "beta_1 must be in"),
    (lambda: optimizers.Adam(beta_2=-0.1), "beta_2"),
    (lambda: optimizers.Adam(epsilon=float("nan")), "epsilon must be a finite number"),
    (lambda: optimizers.AdamW(weight_decay=None), "weight_decay"),
    (lambda: optimizers.RMSprop(rho=1.0), "rho must be in"),
    (lambda: optimizers.RMSprop(centered=1), "centered must be True or False"),
    (lambda: optimizers.SGD(clipnorm=0.0), "clipnorm must be in"),
    (lambda: optimizers.SGD(clipnorm=1.0, clipvalue=1.0), "only one of clipnorm"),
    (lambda: optimizers.Adam(global_clipnorm=1.0, clipnorm=1.0), "only one of clipnorm"),
])
def test_bad_hyperparameters(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_apply_errors():
    opt = optimizers.SGD()
    with pytest.raises(ValueError, match="got 1 gradients for 2 variables"):
        opt.apply([np.ones(2)], [np.ones(2), np.ones(2)])
    with pytest.raises(ValueError, match=r"gradient 0 must have the variable's shape \(2,\); "
                                         r"got \(3,\)"):
        opt.apply([np.ones(3)], [np.ones(2)])
    with pytest.raises(TypeError, match=r"variables\[0\] must be a numpy.ndarray"):
        opt.apply([np.ones(2)], [[1.0, 1.0]])


def test_exported_from_package():
    assert nn.optimizers.Adam is optimizers.Adam


# ---- Adagrad, Adamax, Nadam, Lion -------------------------------------------------------------

def _new_reference_run(kind, params, grad_seq, lr, **hp):
    """The same steps with the NumPy twins in float64 (slots as Keras initialises them)."""
    params = [p.astype(np.float64) for p in params]
    init = hp.pop("initial_accumulator_value", 0.1)
    wd = hp.pop("weight_decay", None)
    slots = [[np.full_like(p, init)] if kind == "adagrad" else
             [np.zeros_like(p) for _ in range(1 if kind == "lion" else 2)] for p in params]
    beta_1 = hp.get("beta_1", 0.9)
    u_product = 1.0
    for step, grads in enumerate(grad_seq):
        t = step + 1
        u_product *= beta_1 * (1 - 0.5 * 0.96 ** t)
        for p, g, s in zip(params, grads, slots):
            g = g.astype(np.float64)
            if wd:
                p -= p * (wd * lr)
            if kind == "adagrad":
                reference.adagrad_update(p, g, *s, lr, **hp)
            elif kind == "adamax":
                reference.adamax_update(p, g, *s, lr, t, **hp)
            elif kind == "nadam":
                reference.nadam_update(p, g, *s, lr, t, u_product, **hp)
            else:
                reference.lion_update(p, g, *s, lr, **hp)
    return params


NEW_CASES = [
    ("adagrad", optimizers.Adagrad, {}),
    ("adagrad", optimizers.Adagrad, {"initial_accumulator_value": 0.5, "epsilon": 1e-4}),
    ("adamax", optimizers.Adamax, {}),
    ("adamax", optimizers.Adamax, {"beta_1": 0.7, "beta_2": 0.9, "weight_decay": 0.1}),
    ("nadam", optimizers.Nadam, {}),
    ("nadam", optimizers.Nadam, {"beta_1": 0.8, "epsilon": 1e-4}),
    ("lion", optimizers.Lion, {}),
    ("lion", optimizers.Lion, {"beta_1": 0.5, "beta_2": 0.9, "weight_decay": 0.05}),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind,cls,hp", NEW_CASES)
def test_new_optimizers_match_reference(kind, cls, hp, dtype):
    rng = np.random.default_rng(9)
    params = _params(rng, dtype)
    start = [p.copy() for p in params]
    grad_seq = [_grads(rng, params, k) for k in range(5)]
    opt = cls(learning_rate=0.05, **hp)
    for grads in grad_seq:
        opt.apply(grads, params)
    assert opt.iterations == 5
    want = _new_reference_run(kind, start, grad_seq, 0.05, **dict(hp))
    tol = 50 * TOL[np.dtype(dtype).name]["optimizer"]
    for p, w in zip(params, want):
        assert p.dtype == dtype
        np.testing.assert_allclose(p, w, rtol=tol, atol=tol)


def test_new_optimizers_keras_defaults_registry_config():
    a = optimizers.Adagrad().get_config()
    assert (a["learning_rate"], a["initial_accumulator_value"], a["epsilon"], a["name"]) == \
        (0.001, 0.1, 1e-7, "adagrad")
    for cls, name in ((optimizers.Adamax, "adamax"), (optimizers.Nadam, "nadam")):
        c = cls().get_config()
        assert (c["learning_rate"], c["beta_1"], c["beta_2"], c["epsilon"], c["name"]) == \
            (0.001, 0.9, 0.999, 1e-7, name)
    c = optimizers.Lion().get_config()
    assert (c["learning_rate"], c["beta_1"], c["beta_2"], c["name"]) == (0.001, 0.9, 0.99, "lion")
    for name, cls in (("adagrad", optimizers.Adagrad), ("adamax", optimizers.Adamax),
                      ("nadam", optimizers.Nadam), ("lion", optimizers.Lion),
                      ("Adagrad", optimizers.Adagrad), ("Nadam", optimizers.Nadam)):
        assert type(optimizers.get(name)) is cls
    for cls in (optimizers.Adagrad, optimizers.Adamax, optimizers.Nadam, optimizers.Lion):
        opt = cls(learning_rate=0.03, clipnorm=2.0)
        config = opt.get_config()
        assert optimizers.deserialize(optimizers.serialize(opt)).get_config() == config
    with pytest.raises(ValueError, match="beta_1 must be in"):
        optimizers.Lion(beta_1=0.0)
    with pytest.raises(ValueError, match="initial_accumulator_value must be in"):
        optimizers.Adagrad(initial_accumulator_value=-1.0)


def test_adagrad_slots_start_at_initial_value_and_nadam_resumes():
    p = np.zeros(3)
    opt = optimizers.Adagrad(initial_accumulator_value=0.25)
    opt.build([p])
    np.testing.assert_array_equal(opt.variables[1], 0.25)
    # Nadam's u_product is a function of iterations: a restored optimizer continues exactly
    rng = np.random.default_rng(3)
    params = _params(rng, np.float64)
    a = optimizers.Nadam(learning_rate=0.01)
    for k in range(3):
        a.apply(_grads(rng, params, k), params)
    params_b = [q.copy() for q in params]
    b = optimizers.Nadam(learning_rate=0.01)
    b.build(params_b)
    b.set_variables([v.copy() for v in a.variables])
    grads = _grads(rng, params, 3)
    a.apply(grads, params)
    b.apply(grads, params_b)
    for x, y in zip(params, params_b):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("name", ["adagrad", "adamax", "nadam", "lion"])
def test_new_optimizers_train(name):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((64, 3)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5]])).astype(np.float32)
    nn.set_seed(0)
    model = nn.Sequential([nn.layers.Input((3,)), nn.layers.Dense(1)])
    lr = {"adagrad": 0.5, "adamax": 0.05, "nadam": 0.05, "lion": 0.01}[name]
    model.compile(optimizer=optimizers.get({"class_name": optimizers.get(name).__class__.__name__,
                                            "config": {"learning_rate": lr}}), loss="mse")
    hist = model.fit(x, y, epochs=20, batch_size=16, verbose=0).history["loss"]
    assert hist[-1] < 0.2 * hist[0], hist


@pytest.mark.parametrize("name,kw", [
    ("adagrad", {}), ("adagrad", {"initial_accumulator_value": 0.3}), ("adamax", {}),
    ("adamax", {"weight_decay": 0.1}), ("nadam", {}), ("nadam", {"beta_1": 0.8}), ("lion", {}),
    ("lion", {"beta_1": 0.5, "beta_2": 0.9})])
def test_against_keras(name, kw):
    """Optional: six steps equal keras.optimizers.* applied to a Variable (Keras 3, float32)."""
    from .peers import keras_or_skip
    keras = keras_or_skip()
    rng = np.random.default_rng(12)
    p0 = rng.standard_normal((4, 3)).astype(np.float32)
    grads = [rng.standard_normal((4, 3)).astype(np.float32) for _ in range(6)]
    config = dict(learning_rate=0.05, **kw)
    peer = keras.optimizers.get({"class_name": name, "config": config})
    var = keras.Variable(p0.copy())
    peer.build([var])
    ours = optimizers.get({"class_name": type(optimizers.get(name)).__name__, "config": config})
    q = p0.copy()
    for g in grads:
        peer.apply([keras.ops.convert_to_tensor(g)], [var])
        ours.apply([g], [q])
    np.testing.assert_allclose(q, keras.ops.convert_to_numpy(var), rtol=1e-5, atol=1e-6)
