"""nanonet.distributed: data-parallel fit over MPI ranks.

The MPI tests launch ``mpiexec -n N python tests/mpi_worker.py`` and compare every rank's
weights and History with a one-process run of the same case in this process; they are skipped
only when mpi4py is absent (``pip install "nanonet[mpi]"``). The rest run everywhere.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import re
import subprocess
import sys
import time

import numpy as np
import pytest

import nanonet as nn
from nanonet import callbacks, distributed

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import mpi_worker  # noqa: E402

HAVE_MPI4PY = importlib.util.find_spec("mpi4py") is not None
needs_mpi = pytest.mark.skipif(not HAVE_MPI4PY, reason='mpi4py absent: pip install "nanonet[mpi]"')
# Data-parallel sums differ from the one-process sums only in the order of additions; 20 Adam
# steps keep that at ~1e-13 relative in float64 (measured 9e-14 at worst, the embedding). The
# tolerance is relative to each array's largest entry: an entry that passes near zero (measured
# 1.6e-6 in a table of 0.05s) keeps an absolute error of a few 1e-17, not a relative one.
RTOL = 1e-12


def assert_close(got, want, err_msg=""):
    scale = float(np.max(np.abs(want))) if np.size(want) else 0.0
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=RTOL * scale, err_msg=err_msg)


def _env():
    env = dict(os.environ)
    pkg_root = os.path.dirname(os.path.dirname(nn.__file__))
    env["PYTHONPATH"] = os.pathsep.join([pkg_root, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["OMP_NUM_THREADS"] = "1"
    return env


def mpiexec():
    """The mpiexec beside this interpreter (the mpich wheel installs it there), else PATH's."""
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    found = here if os.path.exists(here) else shutil.which("mpiexec")
    assert found, "mpi4py is installed but no mpiexec was found beside python or on PATH"
    return found


def launch(n, args, timeout=180, env=None):
    cmd = [mpiexec(), "-n", str(n), sys.executable, *args]
    return subprocess.run(cmd, env={**_env(), **(env or {})}, capture_output=True, text=True,
                          timeout=timeout)


# -- without MPI --------------------------------------------------------------------------------
def test_initialize_is_a_noop_without_a_launcher():
    assert nn.distributed.initialize() == (0, 1)
    assert (distributed.rank(), distributed.size(), distributed.is_primary()) == (0, 1, True)
    buf = np.arange(3.0)
    assert distributed.allreduce(buf) is buf and buf.tolist() == [0.0, 1.0, 2.0]


def test_initialize_rejects_a_bad_timeout():
    with pytest.raises(ValueError, match="timeout must be a number of seconds > 0; got -1"):
        distributed.initialize(timeout=-1)


def test_allreduce_rejects_int_buffers():
    with pytest.raises(ValueError, match="float32 or float64 array; got dtype int64"):
        distributed.allreduce(np.arange(3))


@pytest.mark.parametrize("n", [0, 1, 3, 7, 32, 33])
@pytest.mark.parametrize("ranks", [1, 2, 3, 4])
def test_shard_splits_a_batch_into_disjoint_even_shares(n, ranks):
    sl = slice(100, 100 + n)
    parts = [distributed.shard(sl, ranks, r) for r in range(ranks)]
    assert parts[0].start == sl.start and parts[-1].stop == sl.stop
    assert all(a.stop == b.start for a, b in zip(parts, parts[1:]))
    sizes = [p.stop - p.start for p in parts]
    assert max(sizes) - min(sizes) <= (1 if n else 0) and sizes == sorted(sizes, reverse=True)


def test_missing_mpi4py_under_a_launcher_names_the_extra():
    code = ("import sys; sys.modules['mpi4py'] = None\n"
            "import nanonet as nn\n"
            "try:\n    nn.distributed.initialize()\n"
            "except ImportError as e:\n    print(e)\n")
    env = _env()
    env["PMI_SIZE"] = "2"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=60)
    assert 'pip install "nanonet[mpi]"' in out.stdout, out.stdout + out.stderr
    assert "2 processes" in out.stdout


def test_rank0_only_callbacks_are_skipped_on_other_ranks(monkeypatch, tmp_path):
    csv_log = callbacks.CSVLogger(str(tmp_path / "log.csv"))
    ckpt = callbacks.ModelCheckpoint(str(tmp_path / "ckpt.nnet"))
    stop = callbacks.EarlyStopping(monitor="loss")
    cbs = callbacks.CallbackList([csv_log, ckpt, stop], add_history=True, add_progbar=True)
    assert len(cbs._here()) == 5
    monkeypatch.setattr(distributed, "_rank", 1)
    here = cbs._here()
    assert stop in here and any(isinstance(c, callbacks.History) for c in here)
    assert not any(isinstance(c, (callbacks.CSVLogger, callbacks.ModelCheckpoint,
                                  callbacks.ProgbarLogger)) for c in here)


# -- over MPI -------------------------------------------------------------------------------
@needs_mpi
@pytest.mark.parametrize("case,ranks", [("mlp", 2), ("lstm", 2), ("lstm_v12", 2),
                                        ("tiny_tail", 4)])
def test_data_parallel_fit_equals_one_process(case, ranks, tmp_path):
    """20 Adam steps of global batch 32: every rank ends with the one-process weights
    (broadcast from rank 0: the other ranks start from other seeds), and History / evaluate
    are the same on every rank. tiny_tail runs 4 ranks on 2 cores with a last batch of 3."""
    dist = tmp_path / "dist"
    dist.mkdir()
    out = launch(ranks, [os.path.join(HERE, "mpi_worker.py"), case, str(dist)])
    assert out.returncode == 0, out.stdout + out.stderr
    one = tmp_path / "one"
    one.mkdir()
    mpi_worker.run(case, str(one))
    ref = np.load(one / "rank0.npz")
    got = [np.load(dist / f"rank{r}.npz") for r in range(ranks)]
    assert int(ref["iterations"]) == 20
    if case.startswith("lstm"):  # which reduction the Embedding table took
        assert (int(got[0]["dense_tables"]) > 0) == (case == "lstm_v12")
    for k in ref.files:
        assert_close(got[0][k], ref[k], err_msg=k)
        for r in range(1, ranks):
            np.testing.assert_array_equal(got[r][k], got[0][k], err_msg=f"{k} on rank {r}")


@needs_mpi
def test_checkpoint_from_two_ranks_resumes_on_one(tmp_path):
    """Only rank 0 prints and writes; its checkpoint after 2 epochs, resumed on one process for
    epoch 3, gives the weights of 3 epochs on one process."""
    dist = tmp_path / "dist"
    dist.mkdir()
    out = launch(2, [os.path.join(HERE, "mpi_worker.py"), "ckpt", str(dist)])
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("Epoch 1/2") == 1 and out.stdout.count("Epoch 2/2") == 1, out.stdout
    assert sorted(os.listdir(dist)) == ["ckpt.nnet", "log.csv"]
    assert len(open(dist / "log.csv").read().splitlines()) == 3  # header + 2 epochs, once
    resumed = nn.load_model(str(dist / "ckpt.nnet"))
    assert resumed.optimizer.iterations == 2 * 20
    mpi_worker.fit_ckpt(resumed, str(dist), epochs=3, initial_epoch=2)
    one = tmp_path / "one"
    one.mkdir()
    ref = mpi_worker.build("mlp", 7)
    mpi_worker.fit_ckpt(ref, str(one), epochs=3)
    for a, b in zip(resumed.get_weights(), ref.get_weights()):
        assert_close(a, b)


def _resume_checkpoint(path):
    model = nn.load_model(str(path))
    assert model.optimizer.iterations == 20  # the checkpoint of epoch 1, intact
    mpi_worker.fit_ckpt(model, str(path.parent), epochs=2, initial_epoch=1)
    assert model.optimizer.iterations == 40


@needs_mpi
def test_an_exception_on_one_rank_aborts_every_rank(tmp_path):
    t0 = time.monotonic()
    out = launch(2, [os.path.join(HERE, "mpi_worker.py"), "crash", "raise", str(tmp_path)])
    assert out.returncode != 0
    assert time.monotonic() - t0 < 60
    assert "nanonet.distributed: rank 1 of 2: uncaught exception; aborting all 2 ranks" \
        in out.stderr, out.stderr
    assert "RuntimeError: rank 1 fails on purpose" in out.stderr
    _resume_checkpoint(tmp_path / "ckpt.nnet")


@needs_mpi
def test_a_killed_rank_stops_the_others_naming_it(tmp_path):
    """SIGKILL on rank 1 mid-epoch 2: mpiexec stops rank 0 and names the dead pid, which the
    table rank 0 wrote at initialize maps to rank 1; the epoch-1 checkpoint resumes."""
    # Hydra SIGKILLs rank 0 as soon as it sees rank 1 die, then reports one "BAD TERMINATION"
    # pid: whichever of the two killed processes its proxy reaps first. On a loaded machine
    # that is sometimes rank 0 (seen once in CI, under load; 0 of 6 idle runs). Every attempt
    # must stop non-zero within 60 s and name a pid of the job; one of up to three attempts
    # must name rank 1's.
    named = []
    for attempt in range(3):
        run_dir = tmp_path / f"attempt{attempt}"
        run_dir.mkdir()
        t0 = time.monotonic()
        out = launch(2, [os.path.join(HERE, "mpi_worker.py"), "crash", "kill", str(run_dir)])
        text = out.stdout + out.stderr
        assert out.returncode != 0, text
        assert time.monotonic() - t0 < 60
        table = dict(re.findall(r"(\d+): pid (\d+) on",
                                text.split("nanonet.distributed: 2 ranks")[1].splitlines()[0]))
        lost = re.search(r"PID (\d+)", text)
        assert lost and lost.group(1) in table.values(), text
        named.append(lost.group(1) == table["1"])
        if named[-1]:
            break
    assert named[-1], f"mpiexec never named rank 1 in {len(named)} attempts:\n{text}"
    _resume_checkpoint(run_dir / "ckpt.nnet")


def test_abort_ends_the_process_when_mpi_abort_does_not():
    """An MPI_Abort that neither returns nor exits (a stand-in communicator that sleeps): abort()
    ends the process itself after its grace period, with the abort's code. No MPI needed."""
    code = ("import time, nanonet.distributed as d\n"
            "class Stuck:\n"
            "    def Abort(self, code): time.sleep(60)\n"
            "d._comm, d._ABORT_GRACE_S = Stuck(), 0.5\n"
            "d.abort('a test abort', code=7)\n")
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 7, out.stderr
    assert time.monotonic() - t0 < 20
    assert "nanonet.distributed: rank 0 of 1: a test abort" in out.stderr


@needs_mpi
def test_a_hung_rank_trips_the_watchdog(tmp_path):
    """Rank 1 sleeps inside a step: rank 0 waits NANONET_DIST_TIMEOUT seconds in the gradient
    allreduce, then says so and aborts (rank 1 leaves once rank 0 is gone, should mpiexec not
    kill it: see mpi_worker.hang_until_rank0_is_gone)."""
    t0 = time.monotonic()
    out = launch(2, [os.path.join(HERE, "mpi_worker.py"), "crash", "hang", str(tmp_path)],
                 env={"NANONET_DIST_TIMEOUT": "5"}, timeout=90)
    assert out.returncode != 0
    assert 5 < time.monotonic() - t0 < 60
    assert ("nanonet.distributed: rank 0 of 2: a peer rank did not answer (hung, or lost on "
            "another host); no reply within 5 s in the gradient allreduce") in out.stderr, \
        out.stderr
