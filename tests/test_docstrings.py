"""Docstrings of the public API: every public class and function has one, the layers, losses,
metrics, optimizers and callbacks (and the Model methods) carry an example, and every example
runs as a doctest (``nn`` and ``np`` are in scope, the seed is fixed before each one)."""
from __future__ import annotations

import doctest
import importlib
import inspect

import numpy as np
import pytest

import nanonet as nn
from nanonet import schedules
from nanonet.layers import base as layers_base

MODULES = ["nanonet", "nanonet.layers", "nanonet.models", "nanonet.losses", "nanonet.metrics",
           "nanonet.optimizers", "nanonet.callbacks", "nanonet.schedules", "nanonet.initializers",
           "nanonet.regularizers", "nanonet.preprocessing", "nanonet.datasets"]
# modules whose every public class and function must show an example
NEED_EXAMPLE = {"nanonet.layers", "nanonet.losses", "nanonet.metrics", "nanonet.optimizers",
                "nanonet.callbacks"}
MODEL_METHODS = ["compile", "fit", "evaluate", "predict", "train_on_batch", "test_on_batch",
                 "predict_on_batch", "save", "save_weights", "load_weights", "summary",
                 "get_config", "from_config", "get_layer", "export"]
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
# registries an example may add a class to (a custom layer or schedule): restored after each one
REGISTRIES = [layers_base._LAYER_CLASSES, schedules._REGISTRY, schedules._ALIASES]


def _public(module):
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n in vars(module) if not n.startswith("_")]
    for name in names:
        obj = getattr(module, name)
        if inspect.isclass(obj) or inspect.isroutine(obj):
            yield name, obj


def _objects():
    """(qualified name, object, needs an example) for every public class and function, once."""
    seen, found = {}, []
    for modname in MODULES:
        for name, obj in _public(importlib.import_module(modname)):
            key = id(getattr(obj, "__func__", obj))
            if key in seen:  # re-exported: an example is needed if any exporter asks for one
                found[seen[key]] = (*found[seen[key]][:2],
                                    found[seen[key]][2] or modname in NEED_EXAMPLE)
                continue
            seen[key] = len(found)
            found.append((f"{modname}.{name}", obj, modname in NEED_EXAMPLE))
    for meth in MODEL_METHODS:
        found.append((f"nanonet.Model.{meth}", getattr(nn.Model, meth), True))
    return found


OBJECTS = _objects()


def _doc(obj):
    # a class's own docstring, not one inherited from a base class
    return obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__


def test_every_public_name_has_a_docstring():
    missing = [name for name, obj, _ in OBJECTS if not (_doc(obj) or "").strip()]
    assert not missing, f"public names without a docstring: {missing}"


def test_every_public_name_has_a_summary_line():
    # Keras style: the first line says in one sentence what the thing is or does
    bad = [name for name, obj, _ in OBJECTS
           if (_doc(obj) or "").strip() and not (_doc(obj) or "").strip().splitlines()[0].strip()]
    assert not bad


def test_examples_where_required():
    missing = [name for name, obj, need in OBJECTS if need and ">>>" not in (_doc(obj) or "")]
    assert not missing, f"public names whose docstring has no example: {missing}"


def _doctests():
    finder = doctest.DocTestFinder(exclude_empty=True)
    tests, seen = [], set()
    for name, obj, _ in OBJECTS:
        for test in finder.find(obj, name, globs={}):
            key = (test.filename, test.lineno, test.name.split(".")[-1])
            if test.examples and key not in seen:
                seen.add(key)
                tests.append(test)
    return tests


DOCTESTS = _doctests()


def test_doctests_were_collected():
    # the walk above must really find examples: a broken finder would pass every test below
    assert len(DOCTESTS) >= 100
    names = {t.name for t in DOCTESTS}
    assert "nanonet.layers.Dense" in names and "nanonet.Model.fit" in names


@pytest.mark.parametrize("test", DOCTESTS, ids=[t.name for t in DOCTESTS])
def test_docstring_example(test, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that save files write them here
    nn.set_seed(0)
    np.random.seed(0)
    test.globs = {"nn": nn, "np": np}
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    out = []
    saved = [dict(r) for r in REGISTRIES]
    try:
        result = runner.run(test, out=out.append, clear_globs=True)
    finally:
        for registry, old in zip(REGISTRIES, saved):
            registry.clear()
            registry.update(old)
    assert result.failed == 0, "".join(out)


def test_a_failing_example_is_reported():
    # the runner used above does fail on a wrong output
    parser = doctest.DocTestParser()
    test = parser.get_doctest(">>> 1 + 1\n3\n", {}, "bad", "bad.py", 0)
    result = doctest.DocTestRunner(optionflags=FLAGS).run(test, out=lambda s: None)
    assert result.failed == 1


def _cli_help(argv, capsys):
    from nanonet.__main__ import main
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("argv", [["--help"], ["demo", "--help"], ["serve", "--help"],
                                  ["export", "--help"]], ids=" ".join)
def test_cli_help_is_plain_text(argv, capsys, monkeypatch):
    # every option documented, and no reStructuredText / Markdown markup in what --help prints
    import argparse
    undocumented = []
    add_argument = argparse.ArgumentParser.add_argument

    def recording(self, *args, **kwargs):
        if args and args[0].startswith("--") and args[0] != "--help" and not kwargs.get("help"):
            undocumented.append(f"{self.prog} {args[0]}")
        return add_argument(self, *args, **kwargs)

    monkeypatch.setattr(argparse.ArgumentParser, "add_argument", recording)
    text = _cli_help(argv, capsys)
    assert argv[0] in text or argv == ["--help"]
    assert "`" not in text and ":func:" not in text and "**" not in text, text
    assert not undocumented, f"options without help: {undocumented}"
