"""Objects named by import path (``"package.module:attribute"``) and called with the keyword
arguments their signature takes: the one mechanism behind user models and user datasets."""

from __future__ import annotations

import importlib
import inspect
import re

HF_PREFIX = "hf:"
_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def is_import_path(name: str) -> bool:
    """Does ``name`` look like ``package.module:attribute``?"""
    return bool(_IMPORT_PATH.match(name)) and not name.startswith(("torchvision:", HF_PREFIX))


def load_object(path: str, what: str):
    """The object ``package.module:attribute`` names.

    Raises:
        ValueError: the module cannot be imported or has no such attribute (the message names
            which, and how to make it importable).
    """
    module_name, _, attribute = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"{what} {path!r}: cannot import {module_name!r} ({err}); install it or put its "
                         "folder on PYTHONPATH") from None
    if not hasattr(module, attribute):
        raise ValueError(f"{what} {path!r}: module {module_name!r} has no attribute {attribute!r}")
    return getattr(module, attribute)


def call_with_sizes(factory, what: str, sizes: dict, options: dict):
    """``factory(**options)`` plus the entries of ``sizes`` its signature names.

    Raises:
        ValueError: an option the factory does not take, or a width it cannot apply.
    """
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # builtins without a signature: options only
        params = {}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    extra = {k: v for k, v in sizes.items() if k in params}
    unknown = sorted(k for k in options if k not in params and not takes_any)
    if params and unknown:
        raise ValueError(f"{what}: option(s) {unknown} are not arguments of it; it takes {', '.join(params)}")
    if "width" in sizes and sizes["width"] != 1.0 and "width" not in params:
        raise ValueError(f"{what}: it takes no 'width' argument, so model.width must stay 1.0")
    return factory(**extra, **options)
