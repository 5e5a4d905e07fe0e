"""The method registry: entry points of group `srpo_bench.methods`, the single source (built-ins included,
in pyproject.toml). A method whose module fails to import stays listed, with its import error, and `run`
refuses it with that line instead of silently dropping it from `all`."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from srpo_bench.core.method import Method

GROUP = "srpo_bench.methods"


class UnknownMethodError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class Registered:
    name: str
    target: str  # "module:Class"
    error: str | None  # the import error, if the method cannot be loaded


def registered() -> dict[str, Registered]:
    """Every registered method with its import status, in registration order (built-ins as pyproject lists them)."""
    found: dict[str, Registered] = {}
    for ep in entry_points(group=GROUP):
        if ep.name in found:
            continue
        try:
            _load(ep.value)
            error = None
        except Exception as exc:  # noqa: BLE001 - any failure to import is reported, not raised
            error = f"{type(exc).__name__}: {exc}"
        found[ep.name] = Registered(ep.name, ep.value, error)
    return found


def _load(target: str) -> type[Method]:
    from importlib import import_module

    module, attr = target.split(":")
    return getattr(import_module(module), attr)


def available_methods() -> list[str]:
    return list(registered())


def get_method(name: str) -> type[Method]:
    methods = registered()
    if name not in methods:
        raise UnknownMethodError(f"unknown method '{name}'; registered: {', '.join(methods) or 'none'}")
    entry = methods[name]
    if entry.error is not None:
        raise UnknownMethodError(f"method '{name}' ({entry.target}) cannot be loaded: {entry.error}")
    return _load(entry.target)


def expand_methods(spec: str) -> list[str]:
    """'all' or a comma-separated list; every name must be registered and importable."""
    names = available_methods() if spec.strip() == "all" else [s.strip() for s in spec.split(",") if s.strip()]
    if not names:
        raise UnknownMethodError("no method given")
    for name in names:
        get_method(name)
    return names
