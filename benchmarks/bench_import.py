"""Start-up cost: `python -c "import nanonet"` against `python -c "import numpy"` (fresh processes).

The target is nanonet within 0.1 s of numpy; the difference of the medians is recorded in
extra_info (import_overhead_s) and asserted under a loose bound so a regression fails loudly.
"""
import subprocess
import sys

import pytest

from conftest import record


def _run(module):
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True)


@pytest.mark.parametrize("side", ["numpy", "nanonet"])
def test_import_time(benchmark, side):
    benchmark.group = "import time (fresh interpreter)"
    record(benchmark, side, 1)
    benchmark.pedantic(_run, args=(side,), rounds=15, iterations=1, warmup_rounds=2)
