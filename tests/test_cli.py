"""The command line: python -m nanonet demo (tiny settings) runs end to end in a subprocess."""
import re
import subprocess
import sys

import pytest


def _run(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "nanonet", *args], capture_output=True,
                          text=True, timeout=timeout)


def test_demo_trains_and_reports_accuracy(tmp_path):
    path = tmp_path / "demo.nnet"
    out = _run("demo", "--max-samples", "800", "--epochs", "2", "--maxlen", "12",
               "--units", "16", "--threads", "1", "--save", str(path))
    assert out.returncode == 0, out.stderr
    assert "Epoch 2/2" in out.stdout
    acc = float(re.search(r"test accuracy (\d\.\d+)", out.stdout).group(1))
    majority = float(re.search(r"majority class (\d\.\d+)", out.stdout).group(1))
    assert 0.0 <= acc <= 1.0 and majority > 0.0
    assert path.exists() and path.stat().st_size > 0

    import nanonet as nn
    model = nn.load_model(str(path))
    assert model.layers[1].units == 16


def test_no_command_prints_help_and_fails():
    out = _run()
    assert out.returncode == 2
    assert "demo" in out.stdout


@pytest.mark.parametrize("args,msg", [(["demo", "--dataset", "mnist"], "invalid choice"),
                                      (["nosuch"], "invalid choice")])
def test_bad_arguments_are_rejected(args, msg):
    out = _run(*args)
    assert out.returncode == 2 and msg in out.stderr
