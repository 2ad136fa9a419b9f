"""Lazy exports: a package names what it exports and where it lives; the import happens on first use.

``import losslines`` must not import torch (a store can be analysed without it), yet the package
exports torch-backed names too. ``lazy_exports`` gives a package the module-level ``__getattr__``
and ``__dir__`` (PEP 562) that import each name from its module when it is first asked for.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping


def lazy_exports(package: str, exports: Mapping[str, str], namespace: dict[str, Any],
                 extra: tuple[str, ...] = ()) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` whose names ``exports`` maps to their modules.

    Args:
        package: the package's name, for error messages.
        exports: ``{name: module}``.
        namespace: the package's ``globals()``; a resolved name is cached there.
        extra: names defined eagerly in the package that ``__dir__`` lists too.
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted([*extra, *exports])

    return __getattr__, __dir__
