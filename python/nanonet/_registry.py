"""One registry per kind of configurable object (initializer, loss, metric, regularizer).

A registry maps short names ("glorot_uniform", "mse") and class names ("GlorotUniform") to
constructors, and owns the ``serialize`` / ``deserialize`` pair that ``get_config`` and model
files use: ``{"class_name": ..., "config": {...}}``. Nothing here imports or executes anything
named in a config: only registered classes can be built.
"""
from __future__ import annotations


class Registry:
    def __init__(self, module: str, kind: str, names: dict, classes):
        self.module = module            # "initializers": prefixes deserialize errors
        self.kind = kind                # "initializer": the noun in messages
        self.names = dict(names)        # short name -> class or factory
        self.classes = {cls.__name__: cls for cls in classes}
        self.table = {**self.names, **self.classes}

    def valid_names(self):
        return sorted(self.names)

    def lookup(self, name: str):
        """The constructor registered under a short or class name; ValueError listing names."""
        make = self.table.get(name)
        if make is None:
            raise ValueError(f"Unknown {self.kind} {name!r}; valid names: {self.valid_names()}")
        return make

    @staticmethod
    def serialize(obj) -> dict:
        return {"class_name": type(obj).__name__, "config": obj.get_config()}

    def deserialize(self, config):
        if not isinstance(config, dict) or "class_name" not in config:
            raise ValueError(f"{self.module}.deserialize: expected a dict with 'class_name' and "
                             f"'config'; got {config!r}")
        cls = self.classes.get(config["class_name"])
        if cls is None:
            raise ValueError(f"{self.module}.deserialize: unknown {self.kind} "
                             f"{config['class_name']!r}; valid names: {sorted(self.classes)}")
        return cls.from_config(dict(config.get("config") or {}))
