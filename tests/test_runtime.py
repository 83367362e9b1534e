"""Runtime: kernel families, the import-time SIMD self-check and its fallback, build facts, and
the `python -m nanonet info` / `bench` commands."""
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import nanonet as nn
from nanonet import ops, reference

ORDER = ["ref", "avx2", "avx512"]
BELOW = {"avx512": "avx2", "avx2": "ref"}


def _env(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [os.path.dirname(os.path.dirname(nn.__file__)),
                                                    env.get("PYTHONPATH", "")] if p)
    env.update(extra)
    return env


def _run(code, **extra):
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=_env(**extra), timeout=300)
    assert out.returncode == 0, out.stderr
    return out


@pytest.fixture
def restore_caps():
    yield
    for family in ops.FAMILIES:
        ops.set_family_cap(family, ops.detect_isa())


def test_families_start_at_the_active_isa():
    for family in ops.FAMILIES:
        assert ops.family_isa(family) == ops.active_isa()


def test_import_self_check_passed_for_every_family_on_this_machine():
    report = ops.self_check_report()
    assert set(report) == set(ops.FAMILIES)
    for family, r in report.items():
        assert r["ok"], (family, r)
        assert r["isa"] == ops.family_isa(family)
        if ops.active_isa() != "ref":
            assert r["checked"] == [ops.active_isa()]
            assert 0.0 <= r["max_error"][0] < 1e-4


def test_set_isa_moves_every_family(restore_caps):
    before = ops.active_isa()
    try:
        ops.set_isa("ref")
        assert {ops.family_isa(f) for f in ops.FAMILIES} == {"ref"}
    finally:
        ops.set_isa(before)
    assert ops.family_isa("vecmath") == before


@pytest.mark.skipif(ops.active_isa() == "ref", reason="no SIMD path in use to fall back from")
@pytest.mark.parametrize("family", ["gemm", "vecmath", "lstm"])
def test_a_family_that_disagrees_falls_back_with_one_warning(family, restore_caps):
    isa = ops.family_isa(family)
    with pytest.warns(RuntimeWarning, match=f"the {isa} {family} kernels disagree") as caught:
        report = ops.self_check((family,), _fault=(family,))
    # a fault injected at every level walks the family down to the portable path
    assert [str(w.message).split(" kernels")[0] for w in caught] == \
        [f"nanonet: the {i} {family}" for i in report[family]["checked"]]
    assert report[family]["isa"] == ops.family_isa(family) == "ref"
    assert not report[family]["ok"]
    # the other families keep their path
    for other in set(ops.FAMILIES) - {family}:
        assert ops.family_isa(other) == ops.active_isa()


@pytest.mark.skipif(ops.active_isa() == "ref", reason="no SIMD path in use to fall back from")
def test_results_after_a_fallback_match_the_portable_path(restore_caps):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 33)).astype(np.float32)
    a, b = rng.standard_normal((17, 23)), rng.standard_normal((23, 9))
    with pytest.warns(RuntimeWarning):
        ops.self_check(("gemm", "vecmath"), _fault=("gemm", "vecmath"))
    assert ops.family_isa("gemm") == ops.family_isa("vecmath") == "ref"
    np.testing.assert_allclose(ops.matmul(a, b), reference.matmul(a, b), rtol=1e-12)
    np.testing.assert_allclose(ops.activation_forward(x, "tanh"),
                               reference.activation_forward(x, "tanh"), rtol=2e-6, atol=1e-7)


def test_set_family_cap_validates():
    with pytest.raises(ValueError, match="family must be one of"):
        ops.set_family_cap("blas", "ref")
    with pytest.raises(ValueError, match="isa must be one of"):
        ops.set_family_cap("gemm", "sse9")
    if ops.detect_isa() != "avx512":
        with pytest.raises(ValueError, match="does not support avx512"):
            ops.set_family_cap("gemm", "avx512")
    with pytest.raises(ValueError, match="family must be one of"):
        ops.self_check(("blas",))


def test_a_clean_process_warns_nothing_and_the_check_can_be_skipped():
    out = _run("import warnings; warnings.simplefilter('error'); import nanonet as nn; "
               "print(sorted(nn.ops.self_check_report()))")
    assert out.stdout.split() == ["['gemm',", "'lstm',", "'vecmath']"]
    out = _run("import nanonet as nn; print(nn.ops.self_check_report())", NANONET_SELF_CHECK="0")
    assert out.stdout.strip() == "{}"
    out = _run("import nanonet as nn; r = nn.ops.self_check_report(); "
               "print(nn.ops.family_isa('vecmath'), r['vecmath']['checked'])", NANONET_ISA="ref")
    assert out.stdout.split() == ["ref", "[]"]


def test_build_info_describes_this_build():
    info = ops.build_info()
    assert set(info) == {"compiler", "cplusplus", "openmp", "asserts", "sanitizers", "optimized"}
    assert info["cplusplus"] >= 201703
    assert (info["openmp"] is not None) == nn.ops._core.has_openmp()


def test_info_command_prints_every_family(tmp_path):
    out = subprocess.run([sys.executable, "-m", "nanonet", "info"], capture_output=True,
                         text=True, env=_env(), timeout=300)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    for family in ops.FAMILIES:
        assert f"  {family}" in text
    assert "isa           detected" in text and "threads" in text and "build" in text
    out = subprocess.run([sys.executable, "-m", "nanonet", "info", "--json"],
                         capture_output=True, text=True, env=_env(), timeout=300)
    info = json.loads(out.stdout)
    assert info["families"] == {f: ops.family_isa(f) for f in ops.FAMILIES}
    assert info["detected_isa"] in ORDER and info["cores"] >= 1


def test_bench_command_reports_ratios_against_numpy():
    cmd = [sys.executable, "-m", "nanonet", "bench", "--threads", "1", "--min-time", "0.01",
           "--rounds", "1", "--only", "matmul 32x512", "tanh", "--no-torch", "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=600)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    cases = {r["case"] for r in report["results"]}
    assert cases == {"matmul 32x512x512 f32", "tanh 1M f32"}
    for r in report["results"]:
        assert r["threads"] == 1
        assert set(r["seconds"]) == {"numpy", "nanonet"}
        assert r["ratios"]["numpy/nanonet"] == pytest.approx(r["seconds"]["numpy"] /
                                                             r["seconds"]["nanonet"])
        assert all(s > 0 for s in r["seconds"].values())


def test_bench_baselines_learn_like_nanonet():
    """The NumPy baselines the benchmarks compare against compute nanonet's update."""
    from nanonet.bench import NumpyMLP
    rng = np.random.default_rng(0)
    x = rng.random((8, 12), dtype=np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 8)]
    params = [(rng.standard_normal((12, 5)) * 0.3).astype(np.float32), np.zeros(5, np.float32),
              (rng.standard_normal((5, 3)) * 0.3).astype(np.float32), np.zeros(3, np.float32)]
    cfg = dict(hidden="sigmoid", out="sigmoid", loss="mse", opt="sgd", lr=0.5)
    model = nn.Sequential([nn.layers.Dense(5, activation="sigmoid"),
                           nn.layers.Dense(3, activation="sigmoid")])
    model.build((None, 12))
    model.set_weights(params)
    model.compile(optimizer=nn.optimizers.SGD(0.5), loss="mse")
    ref = NumpyMLP(cfg, params)
    for _ in range(2):
        want = ref.step(x, y)
        got = float(model.train_on_batch(x, y))
        assert got == pytest.approx(want, rel=1e-5)
    for g, w in zip(model.get_weights(), ref.p):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


# ---- per-thread thread limit and run_pair (Bidirectional's two directions on two cores)

@pytest.fixture
def two_threads():
    before = nn.get_num_threads()
    nn.set_num_threads(2)
    yield
    nn.set_num_threads(before)


def test_thread_limit_caps_this_thread_only(two_threads):
    import threading
    assert ops.get_thread_limit() == 0
    seen = []
    with ops.thread_limit(1):
        assert ops.get_thread_limit() == 1 and nn.get_num_threads() == 1
        t = threading.Thread(target=lambda: seen.append(nn.get_num_threads()))
        t.start()
        t.join()
        with ops.thread_limit(5):  # a cap above the process-wide count changes nothing
            assert nn.get_num_threads() == 2
        assert ops.get_thread_limit() == 1
    assert seen == [2]
    assert ops.get_thread_limit() == 0 and nn.get_num_threads() == 2


def test_thread_limit_is_restored_after_an_exception(two_threads):
    with pytest.raises(KeyError):
        with ops.thread_limit(1):
            raise KeyError("boom")
    assert ops.get_thread_limit() == 0 and nn.get_num_threads() == 2


def test_thread_limit_validates():
    with pytest.raises(ValueError, match=r"n must be >= 0 \(0 = no limit\); got -1"):
        ops.set_thread_limit(-1)
    with pytest.raises(TypeError, match="n must be an int; got float"):
        ops.set_thread_limit(1.0)
    assert ops.get_thread_limit() == 0


def test_run_pair_runs_each_side_on_its_own_thread_with_half_the_threads(two_threads):
    import threading

    def probe():
        return threading.get_ident(), nn.get_num_threads()
    (ta, na), (tb, nb) = ops.run_pair(probe, probe)
    assert ta != tb and tb == threading.get_ident()
    assert na == nb == 1
    assert ops.get_thread_limit() == 0 and nn.get_num_threads() == 2
    nn.set_num_threads(1)  # one thread: sequential, on the calling thread, no limit
    (ta, na), (tb, nb) = ops.run_pair(probe, probe)
    assert ta == tb == threading.get_ident() and na == nb == 1
    assert ops.get_thread_limit() == 0


def test_run_pair_nested_and_busy_fall_back_to_sequential(two_threads):
    import threading
    me = threading.get_ident()

    def inner():
        return ops.run_pair(threading.get_ident, threading.get_ident)
    a, b = ops.run_pair(inner, inner)
    assert a[0] == a[1] != me  # inside the helper: both on the helper thread
    assert b[0] == b[1] == me


@pytest.mark.parametrize("which", ["first", "second", "both"])
def test_run_pair_raises_after_both_finish_and_restores_limits(which, two_threads):
    done = []

    def side(name):
        def run():
            done.append(name)
            if which in (name, "both"):
                raise ValueError(name)
            return name
        return run
    with pytest.raises(ValueError) as info:
        ops.run_pair(side("first"), side("second"))
    assert sorted(done) == ["first", "second"]
    assert str(info.value) == ("first" if which == "first" else "second")
    assert ops.get_thread_limit() == 0
    # the helper is usable again, and its limit was restored too
    a, b = ops.run_pair(lambda: ops.get_thread_limit(), lambda: 7)
    assert (a, b) == (1, 7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_run_pair_results_are_bit_identical_to_sequential_one_thread_runs(dtype, two_threads):
    """Two LSTM training passes above the parallel threshold (B = 32, T = 20, H = 128): run as a
    pair at 2 threads, each gives exactly its sequential result at 1 thread."""
    rng = np.random.default_rng(5)
    B, T, I, H = 32, 20, 64, 128

    def problem():
        return (rng.standard_normal((B, T, I)).astype(dtype),
                (rng.standard_normal((I, 4 * H)) / 8).astype(dtype),
                (rng.standard_normal((H, 4 * H)) / 11).astype(dtype),
                rng.standard_normal(4 * H).astype(dtype),
                rng.standard_normal((B, T, H)).astype(dtype))
    probs = [problem(), problem()]

    def step(x, k, rk, b, dy):
        y, h, c, cache = ops.lstm_forward(x, k, rk, b)
        return [y, h, c] + [g for g in ops.lstm_backward(dy, cache) if g is not None]
    pair = ops.run_pair(lambda: step(*probs[0]), lambda: step(*probs[1]))
    nn.set_num_threads(1)
    alone = [step(*probs[0]), step(*probs[1])]
    for got, want in zip(pair, alone):
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_recurrent_training_steps_reuse_memory_instead_of_page_faults():
    """The import tunes glibc's malloc (runtime.hpp, tune_allocator): a GRU training step
    (~25 MB of caches and scratch) then reuses heap memory (measured untuned: ~4500 minor
    faults a step, every array page-faulted in afresh). NANONET_MALLOC_TUNING=0 opts out."""
    code = ("import resource, numpy as np, nanonet as nn\n"
            "from nanonet import ops, _core\n"
            "nn.set_num_threads(1)\n"
            "r = np.random.default_rng(0)\n"
            "x = r.standard_normal((32, 100, 128)).astype(np.float32)\n"
            "k = (r.standard_normal((128, 384)) / 10).astype(np.float32)\n"
            "rk = (r.standard_normal((128, 384)) / 10).astype(np.float32)\n"
            "dy = r.standard_normal((32, 100, 128)).astype(np.float32)\n"
            "def step():\n"
            "    ops.gru_backward(dy, ops.gru_forward(x, k, rk)[2])\n"
            "for _ in range(3): step()\n"
            "f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
            "for _ in range(5): step()\n"
            "print(_core.allocator_tuned(), "
            "(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / 5)\n")
    tuned, faults = _run(code).stdout.split()
    if tuned != "True":
        pytest.skip("not glibc, or malloc tuned by the environment")
    assert float(faults) < 500, faults
    off, _ = _run(code, NANONET_MALLOC_TUNING="0").stdout.split()
    assert off == "False"


# ---- OpenMP's idle spin (ops._load_core)

_SPIN_CODE = ("import json, os, time, numpy as np, nanonet as nn\n"
              "nn.set_num_threads(2)\n"
              "a = np.ones((384, 384), np.float32)\n"
              "spins = []\n"
              "for _ in range(5):\n"
              "    nn.ops.matmul(a, a)\n"  # a parallel region, then the workers idle
              "    t = time.process_time(); time.sleep(0.15)\n"
              "    spins.append(time.process_time() - t)\n"
              "print(json.dumps({'wait': nn.ops.openmp_wait(), 'spin': sorted(spins)[2],\n"
              "                  'env': os.environ.get('GOMP_SPINCOUNT')}))\n")


def _spin_run(**extra):
    env = {k: v for k, v in _env(**extra).items() if v is not None}
    out = subprocess.run([sys.executable, "-c", _SPIN_CODE], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _no_wait_env():
    return {k: None for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT") if k in os.environ}


def test_the_import_shortens_openmps_idle_spin_and_leaves_the_environment_alone():
    """libgomp spins 300,000 pauses after each region by default (10-15 ms of a core on CPUs
    with a slow pause), starving a NumPy call made meanwhile; nanonet loads it with
    GOMP_SPINCOUNT=10000 and removes the variable again."""
    if not nn.ops._core.has_openmp() or (os.cpu_count() or 1) < 2:
        pytest.skip("needs OpenMP and two cores")
    ours = _spin_run(**_no_wait_env())
    if ours["wait"]["source"] != "nanonet default":
        pytest.skip(f"libgomp's wait policy not nanonet's here: {ours['wait']}")
    assert ours["wait"]["GOMP_SPINCOUNT"] == "10000"
    assert ours["env"] is None  # not left behind for later libraries or child processes
    libgomps = _spin_run(GOMP_SPINCOUNT="300000")  # libgomp's own default, made explicit
    assert libgomps["wait"] == {"source": "environment", "GOMP_SPINCOUNT": "300000"}
    assert libgomps["env"] == "300000"
    if libgomps["spin"] < 1e-3:
        pytest.skip(f"libgomp's default spin costs {libgomps['spin']:.2e} s of CPU here")
    # CPU time the idle workers burn in the 150 ms after a region: 30x fewer pauses.
    assert ours["spin"] < libgomps["spin"] / 3, (ours, libgomps)


def test_a_users_wait_policy_is_kept():
    got = _spin_run(**_no_wait_env(), OMP_WAIT_POLICY="passive")
    assert got["wait"] == {"source": "environment", "OMP_WAIT_POLICY": "passive"}
    assert got["env"] is None
