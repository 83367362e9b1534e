"""The public API is typed (PEP 561): a user script over the showcase API is clean under
``mypy --strict``. Skipped when mypy is not installed."""
import os
import pathlib
import subprocess
import sys

import pytest

import nanonet

SCRIPT = pathlib.Path(__file__).parent / "data" / "typed_user_script.py"
PACKAGE = pathlib.Path(nanonet.__file__).parent


def test_package_has_py_typed_marker():
    assert (PACKAGE / "py.typed").is_file()


def test_core_stub_covers_every_function():
    stub = (PACKAGE / "_core.pyi").read_text()
    missing = [name for name in dir(nanonet._core)
               if not name.startswith("__") and f"def {name}(" not in stub]
    assert not missing, f"_core.pyi lacks {missing}: run tools/gen_core_stub.py"


def test_showcase_script_is_clean_under_mypy_strict(tmp_path):
    pytest.importorskip("mypy")
    env = dict(os.environ)
    if "site-packages" not in str(PACKAGE):  # a source tree on PYTHONPATH, not an installed copy
        env["MYPYPATH"] = str(PACKAGE.parent)
    # --follow-imports=silent: what mypy does for an installed package; only the user's script
    # is checked, against nanonet's annotations.
    cmd = [sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent",
           "--cache-dir", str(tmp_path / "cache"), str(SCRIPT)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr


def test_mypy_strict_catches_a_wrong_argument_type(tmp_path):
    """The check can fail: a string where Dense wants units (an int) is reported."""
    pytest.importorskip("mypy")
    bad = tmp_path / "bad.py"
    bad.write_text("from nanonet.layers import Dense\n\nlayer = Dense('ten')\n")
    env = dict(os.environ)
    if "site-packages" not in str(PACKAGE):
        env["MYPYPATH"] = str(PACKAGE.parent)
    cmd = [sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent",
           "--cache-dir", str(tmp_path / "cache"), str(bad)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 1 and "Dense" in out.stdout, out.stdout + out.stderr
