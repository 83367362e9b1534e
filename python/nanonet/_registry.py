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
        """The ``{"class_name": ..., "config": {...}}`` dict that describes an object.

        Shared by ``nanonet.losses``, ``metrics``, ``optimizers``, ``initializers`` and
        ``regularizers``; the module's ``deserialize`` makes a new object from the dict.

        Args:
            obj: a loss, metric, optimizer, initializer or regularizer.

        Returns:
            dict: JSON-ready.

        Example:

        >>> nn.losses.serialize(nn.losses.Huber(delta=2.0))
        {'class_name': 'Huber', 'config': {'delta': 2.0, 'name': 'huber_loss'}}
        """
        return {"class_name": type(obj).__name__, "config": obj.get_config()}

    def deserialize(self, config):
        """A new object from the dict ``serialize`` returns.

        Only the classes registered in this module can be built (by class name); nothing
        named in the config is imported or executed.

        Args:
            config (dict): ``{"class_name": ..., "config": {...}}``.

        Returns:
            The new object (a loss, metric, optimizer, initializer or regularizer).

        Raises:
            ValueError: config is not such a dict, or names an unknown class (the message
                lists the known ones).

        Example:

        >>> opt = nn.optimizers.deserialize(nn.optimizers.serialize(nn.optimizers.SGD(0.1)))
        >>> type(opt).__name__, opt.learning_rate
        ('SGD', 0.1)
        """
        if not isinstance(config, dict) or "class_name" not in config:
            raise ValueError(f"{self.module}.deserialize: expected a dict with 'class_name' and "
                             f"'config'; got {config!r}")
        cls = self.classes.get(config["class_name"])
        if cls is None:
            raise ValueError(f"{self.module}.deserialize: unknown {self.kind} "
                             f"{config['class_name']!r}; valid names: {sorted(self.classes)}")
        return cls.from_config(dict(config.get("config") or {}))
