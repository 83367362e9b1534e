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
    # Big enough to learn (800 texts and 2 epochs scored 0.100 against a majority class of
    # 0.142): measured 0.31-0.37 test accuracy against 0.14-0.15 for seeds 0-2, ~8 s.
    out = _run("demo", "--max-samples", "3000", "--epochs", "3", "--maxlen", "12",
               "--units", "32", "--threads", "1", "--save", str(path))
    assert out.returncode == 0, out.stderr
    assert "Epoch 3/3" in out.stdout
    assert out.stdout.splitlines()[0].endswith("demo: loading wordnet ...")  # from the start
    acc = float(re.search(r"test accuracy (\d\.\d+)", out.stdout).group(1))
    majority = float(re.search(r"majority class (\d\.\d+)", out.stdout).group(1))
    assert 0.0 < majority < 0.5
    assert acc >= majority + 0.1, f"test accuracy {acc} does not beat the majority class " \
                                  f"{majority} by 0.1"
    assert path.exists() and path.stat().st_size > 0

    import nanonet as nn
    model = nn.load_model(str(path))
    assert model.layers[1].units == 32


def test_no_command_prints_help_and_fails():
    out = _run()
    assert out.returncode == 2
    assert "demo" in out.stdout


@pytest.mark.parametrize("args,msg", [(["demo", "--dataset", "mnist"], "invalid choice"),
                                      (["nosuch"], "invalid choice")])
def test_bad_arguments_are_rejected(args, msg):
    out = _run(*args)
    assert out.returncode == 2 and msg in out.stderr
