"""Optional peer libraries for comparison tests: skipped when absent."""
import os

import pytest


def keras_or_skip():
    """Keras 3 on the JAX backend (unless KERAS_BACKEND says otherwise), or skip the test.
    Keras computes in float32 there, so comparisons use float32 tolerances."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    if os.environ["KERAS_BACKEND"] == "jax":
        pytest.importorskip("jax")
    keras = pytest.importorskip("keras")
    if not keras.__version__.startswith("3."):
        pytest.skip(f"Keras 3 is needed; found {keras.__version__}")
    return keras
