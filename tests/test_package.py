"""Package-level promises: version, public names, stub coverage, size, thread control."""
import ast
import pathlib

import pytest

import nanonet as nn
from nanonet import _core

PKG = pathlib.Path(nn.__file__).resolve().parent


def test_version_is_a_string():
    assert isinstance(nn.__version__, str) and nn.__version__.count(".") >= 2


def test_core_stub_lists_every_binding():
    stub = PKG / "_core.pyi"
    if not stub.exists():
        pytest.skip("no _core.pyi next to the module (not installed from a source tree)")
    names = {n.name for n in ast.parse(stub.read_text()).body if isinstance(n, ast.FunctionDef)}
    public = {n for n in dir(_core) if not n.startswith("__")}
    assert public <= names, f"_core.pyi lacks {sorted(public - names)}; run tools/gen_core_stub.py"


def test_every_binding_has_a_docstring():
    for name in dir(_core):
        if name.startswith("__"):
            continue
        doc = getattr(_core, name).__doc__ or ""
        text = "\n".join(ln for ln in doc.splitlines() if not ln.startswith(name + "("))
        assert text.strip(), f"_core.{name} has no docstring"


def test_installed_package_is_small():
    size = sum(p.stat().st_size for p in PKG.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    assert size < 5 * 1024 * 1024, f"nanonet is {size / 2**20:.2f} MiB; the budget is 5 MiB"


def test_set_get_num_threads_round_trip():
    before = nn.get_num_threads()
    try:
        nn.set_num_threads(1)
        assert nn.get_num_threads() == 1
        nn.set_num_threads(2)
        assert nn.get_num_threads() == 2
    finally:
        nn.set_num_threads(before)
    with pytest.raises(TypeError, match="n must be an int"):
        nn.set_num_threads(1.5)


def test_thread_count_applies_to_other_python_threads():
    """set_num_threads is process-wide, not per calling thread (OpenMP's own ICV is)."""
    import threading
    before = nn.get_num_threads()
    seen = []
    try:
        nn.set_num_threads(1)
        t = threading.Thread(target=lambda: seen.append(nn.get_num_threads()))
        t.start()
        t.join(timeout=30)
    finally:
        nn.set_num_threads(before)
    assert seen == [1]
