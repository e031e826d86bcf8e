"""Packages whose public names load on first use (``analytics``, ``analytics.alerting``): every
``tongguan`` command imports the packages to register its subcommands, and a worker's restart
should not pay for pandas and scikit-learn it does not use."""

from __future__ import annotations

import sys
from importlib import import_module


def lazy_exports(package: str, exports: dict[str, str]):
    """``__getattr__`` and ``__dir__`` for ``package`` whose public name ``n`` lives in its
    submodule ``exports[n]``: imported on first access, then kept on the package.

    >>> getattr_, dir_ = lazy_exports("tongguan", {"parse_yaml": "yamlfile"})
    >>> getattr_("parse_yaml").__name__, dir_()
    ('parse_yaml', ['parse_yaml'])
    """
    names = sorted(exports)

    def __getattr__(name: str):
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__():
        return names

    return __getattr__, __dir__
