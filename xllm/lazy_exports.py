"""Package attributes that import their module on first access (PEP 562), for the packages whose
`__init__` must stay light: the command line imports them without waiting for torch."""

import importlib
from collections.abc import Callable


def lazy_exports(package: str, modules: dict[str, list[str]]) -> tuple[Callable, Callable]:
    """`__getattr__` and `__dir__` for `package`, whose public names are given by the module (absolute
    name) that defines them."""
    exports = {name: module for module, names in modules.items() for name in names}

    def __getattr__(name: str):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(exports[name]), name)

    def __dir__() -> list[str]:
        return sorted([*vars(importlib.import_module(package)), *exports])

    return __getattr__, __dir__


__all__ = ["lazy_exports"]
