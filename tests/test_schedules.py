"""Learning-rate schedules against hand-computed values (Keras 3 formulas), validation,
serialization round trips through JSON, the registry, and use by an optimizer."""
import json
import math

import numpy as np
import pytest

from nanonet import schedules
from nanonet.schedules import (CosineDecay, ExponentialDecay, InverseTimeDecay,
                               LearningRateSchedule, PiecewiseConstantDecay)


def _check(schedule, table):
    for step, want in table:
        got = schedule(step)
        assert isinstance(got, float)
        assert got == pytest.approx(want, rel=1e-12, abs=1e-15), (step, got, want)


def test_exponential_decay():
    _check(ExponentialDecay(0.1, 10, 0.5),
           [(0, 0.1), (5, 0.1 * math.sqrt(0.5)), (10, 0.05), (15, 0.1 * 0.5 ** 1.5),
            (20, 0.025), (np.int64(30), 0.0125)])
    _check(ExponentialDecay(0.1, 10, 0.5, staircase=True),
           [(0, 0.1), (9, 0.1), (10, 0.05), (19, 0.05), (20, 0.025)])


def test_inverse_time_decay():
    _check(InverseTimeDecay(0.1, 10, 0.5),
           [(0, 0.1), (5, 0.08), (10, 0.1 / 1.5), (30, 0.04)])
    _check(InverseTimeDecay(0.1, 10, 0.5, staircase=True),
           [(0, 0.1), (9, 0.1), (10, 0.1 / 1.5), (15, 0.1 / 1.5), (20, 0.05)])


def test_piecewise_constant_decay():
    # the Keras docstring example: boundaries closed on the right
    _check(PiecewiseConstantDecay([100, 110], [1.0, 0.5, 0.1]),
           [(0, 1.0), (100, 1.0), (101, 0.5), (110, 0.5), (111, 0.1), (10 ** 6, 0.1)])
    _check(PiecewiseConstantDecay([], [0.3]), [(0, 0.3), (99, 0.3)])


def test_cosine_decay():
    s = CosineDecay(1.0, 100, alpha=0.1)
    _check(s, [(0, 1.0), (25, 0.9 * 0.5 * (1 + math.cos(math.pi / 4)) + 0.1), (50, 0.55),
               (100, 0.1), (250, 0.1)])
    _check(CosineDecay(0.2, 10), [(0, 0.2), (5, 0.1), (10, 0.0), (11, 0.0)])


def test_cosine_decay_with_warmup():
    s = CosineDecay(0.0, 100, warmup_target=0.2, warmup_steps=10)
    _check(s, [(0, 0.0), (5, 0.1), (9, 0.18), (10, 0.2), (60, 0.1), (110, 0.0), (500, 0.0)])
    s = CosineDecay(0.05, 20, alpha=0.5, warmup_target=0.25, warmup_steps=4)
    _check(s, [(0, 0.05), (2, 0.15), (4, 0.25), (14, 0.25 * (0.5 * 0.5 + 0.5)),
               (24, 0.125), (30, 0.125)])
    # warmup_target with no warmup steps: decay from warmup_target at once (as Keras)
    _check(CosineDecay(0.5, 10, warmup_target=1.0), [(0, 1.0), (5, 0.5)])


@pytest.mark.parametrize("make,match", [
    (lambda: ExponentialDecay(0.1, 0, 0.5), r"ExponentialDecay: decay_steps must be .*> 0; got 0"),
    (lambda: ExponentialDecay(0.1, 10, 0.0), r"decay_rate must be a finite number > 0"),
    (lambda: ExponentialDecay(-0.1, 10, 0.5), r"initial_learning_rate must be .*>= 0"),
    (lambda: ExponentialDecay(float("nan"), 10, 0.5), r"initial_learning_rate"),
    (lambda: ExponentialDecay(0.1, 10, 0.5, staircase=1), r"staircase must be True or False"),
    (lambda: InverseTimeDecay(0.1, -5, 0.5), r"InverseTimeDecay: decay_steps"),
    (lambda: InverseTimeDecay(0.1, 5, -0.5), r"decay_rate must be a finite number >= 0"),
    (lambda: PiecewiseConstantDecay([1, 2], [0.1, 0.2]), r"1 less than the length of values"),
    (lambda: PiecewiseConstantDecay([2, 1], [0.1, 0.2, 0.3]), r"strictly increasing"),
    (lambda: PiecewiseConstantDecay([1], [0.1, "a"]), r"values\[1\] must be a finite number"),
    (lambda: PiecewiseConstantDecay(5, [0.1]), r"boundaries must be a list"),
    (lambda: CosineDecay(0.1, 0), r"CosineDecay: decay_steps"),
    (lambda: CosineDecay(0.1, 10, alpha=1.5), r"alpha must be a finite number >= 0 and <= 1"),
    (lambda: CosineDecay(0.1, 10, warmup_target=-1.0), r"warmup_target"),
    (lambda: CosineDecay(0.1, 10, warmup_steps=-1), r"warmup_steps"),
    (lambda: CosineDecay(0.1, 10, warmup_steps=True), r"warmup_steps"),
])
def test_bad_arguments_raise_value_error_naming_them(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_step():
    s = ExponentialDecay(0.1, 10, 0.5)
    with pytest.raises(ValueError, match="step must be >= 0; got -1"):
        s(-1)
    with pytest.raises(TypeError, match="step must be a number; got str"):
        s("3")


def test_base_class_is_abstract_and_custom_schedules_register():
    with pytest.raises(TypeError):
        LearningRateSchedule()

    class Halving(LearningRateSchedule):
        def __init__(self, lr):
            self.lr = lr

        def __call__(self, step):
            return self.lr / (step + 1)

        def get_config(self):
            return {"lr": self.lr}

    with pytest.raises(ValueError, match="not registered"):
        schedules.serialize(Halving(1.0))
    schedules.register(Halving)
    s = schedules.deserialize(json.loads(json.dumps(schedules.serialize(Halving(2.0)))))
    assert isinstance(s, Halving) and s(3) == 0.5
    assert schedules.get("halving", lr=4.0)(1) == 2.0


ALL = [ExponentialDecay(0.1, 10, 0.5, staircase=True), InverseTimeDecay(0.2, 3, 1.5),
       PiecewiseConstantDecay([np.int64(5), 10], [0.3, np.float32(0.2), 0.1]),
       CosineDecay(0.0, 100, alpha=0.05, warmup_target=0.3, warmup_steps=7)]


@pytest.mark.parametrize("s", ALL, ids=lambda s: type(s).__name__)
def test_serialize_round_trip_through_json(s):
    d = schedules.serialize(s)
    assert d["class_name"] == type(s).__name__
    text = json.dumps(d)
    back = schedules.deserialize(json.loads(text))
    assert type(back) is type(s) and back == s and back.get_config() == s.get_config()
    for step in (0, 1, 5, 6, 10, 11, 50, 200):
        assert back(step) == s(step)
    assert schedules.get(json.loads(text)) == s
    assert type(s).from_config(s.get_config()) == s
    assert repr(s).startswith(type(s).__name__ + "(")


def test_keras_style_config_and_registry_names():
    keras_like = {"module": "keras.optimizers.schedules", "class_name": "ExponentialDecay",
                  "config": {"initial_learning_rate": 0.1, "decay_steps": 10, "decay_rate": 0.5,
                             "staircase": False, "name": "ExponentialDecay"},
                  "registered_name": None}
    assert schedules.deserialize(keras_like)(10) == pytest.approx(0.05)
    s = schedules.get("cosine_decay", initial_learning_rate=0.1, decay_steps=10)
    assert isinstance(s, CosineDecay)
    assert schedules.get("PiecewiseConstantDecay", boundaries=[1], values=[1.0, 0.5])(2) == 0.5
    assert schedules.get(s) is s
    with pytest.raises(ValueError, match="unknown learning-rate schedule 'Nope'; known"):
        schedules.deserialize({"class_name": "Nope", "config": {}})
    with pytest.raises(ValueError, match="bad config for ExponentialDecay"):
        schedules.deserialize({"class_name": "ExponentialDecay", "config": {"x": 1}})
    with pytest.raises(ValueError, match="needs its arguments"):
        schedules.get("exponential_decay")
    with pytest.raises(ValueError, match="expected a dict with 'class_name'"):
        schedules.deserialize(["ExponentialDecay"])
    with pytest.raises(ValueError, match="could not interpret"):
        schedules.get(3.0)


def test_optimizer_uses_schedule_per_step():
    optimizers = pytest.importorskip("nanonet.optimizers")
    sched = PiecewiseConstantDecay([1, 2], [0.5, 0.25, 0.125])
    opt = optimizers.SGD(learning_rate=sched)
    p = np.zeros(3)
    g = np.array([1.0, -2.0, 4.0])
    lrs = []
    for _ in range(4):
        lrs.append(opt.learning_rate)
        opt.apply([g], [p])
    # steps 0, 1 -> 0.5; step 2 -> 0.25; step 3 -> 0.125 (plain SGD: p -= lr * g)
    assert lrs == [0.5, 0.5, 0.25, 0.125]
    np.testing.assert_allclose(p, -g * sum(lrs), rtol=1e-15)
    adam = optimizers.Adam(learning_rate=ExponentialDecay(0.01, 1, 0.5))
    q = np.ones(2)
    adam.apply([np.ones(2)], [q])
    adam.apply([np.ones(2)], [q])
    # Adam's first steps move by about lr each: 0.01 then 0.005
    np.testing.assert_allclose(q, 1 - 0.01 - 0.005, rtol=1e-5)
