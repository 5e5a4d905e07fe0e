"""The method registry: entry points of group `srpo_bench.methods`, the single source (built-ins included,
in pyproject.toml). A method whose module fails to import stays listed, with its import error, and `run`
refuses it with that line instead of silently dropping it from `all`."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from srpo_bench.vocabulary import did_you_mean

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


def _targets() -> dict[str, str]:
    """name -> "module:Class" of every entry point of the group (the first registration of a name wins)."""
    targets: dict[str, str] = {}
    for ep in entry_points(group=GROUP):
        targets.setdefault(ep.name, ep.value)
    return targets


def _import_error(target: str) -> str | None:
    try:
        _load(target)
    except Exception as exc:  # noqa: BLE001 - any failure to import is reported, not raised
        return f"{type(exc).__name__}: {exc}"
    return None


def registered() -> dict[str, Registered]:
    """Every registered method with its import status, in registration order (built-ins as pyproject lists them)."""
    return {name: Registered(name, target, _import_error(target)) for name, target in _targets().items()}


def _load(target: str) -> type[Method]:
    from importlib import import_module

    module, attr = target.split(":")
    return getattr(import_module(module), attr)


def available_methods() -> list[str]:
    return list(_targets())


def get_method(name: str) -> type[Method]:
    """The registered method `name`, importing only its own module."""
    targets = _targets()
    if name not in targets:
        raise UnknownMethodError(f"unknown method '{name}'{did_you_mean(name, targets)}; registered: "
                                 f"{', '.join(targets) or 'none'}")
    try:
        return _load(targets[name])
    except Exception as exc:  # noqa: BLE001 - any failure to import is one line naming the method
        raise UnknownMethodError(f"method '{name}' ({targets[name]}) cannot be loaded: "
                                 f"{type(exc).__name__}: {exc}") from None


def expand_methods(spec: str) -> list[str]:
    """'all' or a comma-separated list; every name must be registered and importable."""
    names = available_methods() if spec.strip() == "all" else [s.strip() for s in spec.split(",") if s.strip()]
    if not names:
        raise UnknownMethodError("no method given")
    for name in names:
        get_method(name)
    return names
