"""Run a function right after a module is imported: how seqtorch hooks into torch's lazily loaded parts.

torch.compile's Dynamo and torch.onnx's exporter are imported by torch on first use (they take seconds),
not by seqtorch; what seqtorch adds to them (:mod:`seqtorch._compile`, :mod:`seqtorch.onnx`) is added
when they are: :func:`after_import` calls ``callback`` at once for a module already imported, and else
installs a finder that finds nothing itself but wraps the loader of the named modules, so that the
callback runs as soon as one of them has run.
"""

from __future__ import annotations

import importlib.abc
import sys
from typing import Callable

_CALLBACKS: dict[str, list[Callable[[], None]]] = {}


def after_import(names: tuple[str, ...], callback: Callable[[], None]) -> None:
    """Call ``callback()`` now if any of ``names`` is imported, and again after each of them is first
    imported (the callback checks what it needs and must be idempotent)."""
    for name in names:
        _CALLBACKS.setdefault(name, []).append(callback)
    if not any(isinstance(finder, _Hook) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Hook())
    if any(name in sys.modules for name in names):
        callback()


class _ThenCall(importlib.abc.Loader):
    """A module's own loader, then the callbacks registered for it once the module has run."""

    def __init__(self, loader, name: str) -> None:
        self._loader, self._name = loader, name

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        for callback in _CALLBACKS.get(self._name, ()):
            callback()

    def __getattr__(self, name):  # get_source, get_code, ... for tracebacks and inspect
        return getattr(self._loader, name)


class _Hook(importlib.abc.MetaPathFinder):
    """Finds nothing itself: wraps the loader of the modules :func:`after_import` was given."""

    def find_spec(self, fullname, path, target=None):
        if fullname not in _CALLBACKS:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _ThenCall(spec.loader, fullname)
                return spec
        return None
