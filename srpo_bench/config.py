"""Typed method configs: resolution, `--set` parsing and validation.

Configs flow one way: official defaults <- per-task official settings <- profile schedule <- user `--set`.
Every override of a whole grid is parsed and checked against the field's type (`Literal` choices, int, float,
bool, tuples) before anything trains; a bad one is one line naming the method, the key and what is allowed.

    --set srpo.beta=0.1     one method
    --set critic_steps=5000 every method of the run that has the setting (an error if none has it)
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from srpo_bench.core.stages import PlanContext, Stage
from srpo_bench.profiles import PROFILE_FAMILIES, PROFILE_NAMES
from srpo_bench.registry import available_methods, get_method
from srpo_bench.tasks import Task
from srpo_bench.vocabulary import did_you_mean

if typing.TYPE_CHECKING:
    from srpo_bench.core.method import Method


class ConfigError(ValueError):
    pass


def field_types(config_type: type) -> dict[str, Any]:
    hints = typing.get_type_hints(config_type)
    return {f.name: hints[f.name] for f in dataclasses.fields(config_type)}


def describe(kind: Any) -> str:
    """What a setting accepts, for error lines: 'one of sigma2, constant, score', 'int', 'comma-separated int'."""
    if typing.get_origin(kind) is Literal:
        return "one of " + ", ".join(str(choice) for choice in typing.get_args(kind))
    if typing.get_origin(kind) is tuple:
        return f"comma-separated {typing.get_args(kind)[0].__name__}"
    return getattr(kind, "__name__", str(kind))


def parse_setting(method: str, key: str, raw: Any, kind: Any) -> Any:
    """Parse one `--set` value (a string) into the field's type; raise ConfigError naming method and key."""
    if not isinstance(raw, str):
        return raw  # profiles and task settings give typed values
    problem = f"{method}.{key}: expected {describe(kind)}, got '{raw}'"
    origin = typing.get_origin(kind)
    if origin is Literal:
        for choice in typing.get_args(kind):
            if str(choice) == raw:
                return choice
        raise ConfigError(problem + did_you_mean(raw, [str(choice) for choice in typing.get_args(kind)]))
    if origin in (typing.Union, types.UnionType):
        options = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        if raw.lower() == "none" and len(options) < len(typing.get_args(kind)):
            return None
        return parse_setting(method, key, raw, options[0])
    try:
        if kind is bool:
            if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(raw)
            return raw.lower() in ("true", "1", "yes")
        if kind is int:
            return int(raw)
        if kind is float:
            value = float(raw)
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError(raw)
            return value
        if origin is tuple:
            item = typing.get_args(kind)[0]
            return tuple(item(part) for part in raw.split(",") if part.strip())
        if kind is str:
            return raw
    except ValueError:
        raise ConfigError(problem) from None
    raise ConfigError(f"{method}.{key}: settings of type {kind} cannot be set from the command line")


def resolve_config(method: type[Method], task: Task, profile: str, overrides: Mapping[str, Any] | None = None) -> Any:
    """Official defaults <- per-task official settings <- profile schedule <- user overrides, validated."""
    if profile not in PROFILE_NAMES:
        raise ConfigError(f"unknown profile '{profile}'{did_you_mean(profile, PROFILE_NAMES)} (choose "
                          f"{', '.join(PROFILE_NAMES)})")
    families = PROFILE_FAMILIES.get(profile)
    if families is not None and task.family not in method.profiles.get(profile, {}):
        scheduled = sorted(f"{name} on {family}" for name in available_methods()
                           for family in get_method(name).profiles.get(profile, {}))
        raise ConfigError(f"profile '{profile}' has no schedule for {method.name} on {task.name} (it schedules "
                          f"{', '.join(scheduled)})")
    kinds = field_types(method.Config)
    values: dict[str, Any] = {}
    values.update(method.task_settings(task))
    values.update(method.profiles.get(profile, {}).get(task.family, {}))
    for key, raw in (overrides or {}).items():
        if key not in kinds:
            raise ConfigError(f"{method.name} has no setting '{key}'{did_you_mean(key, kinds)}; its settings: "
                              f"{', '.join(sorted(kinds))}")
        values[key] = parse_setting(method.name, key, raw, kinds[key])
    for key, value in values.items():
        check_choice(method.name, key, value, kinds[key])
    try:
        return method.Config(**values)
    except (ValueError, TypeError) as error:  # the config's own checks (__post_init__)
        raise ConfigError(f"{method.name}: {error}") from None


def check_choices(method: str, config: Any) -> None:
    for key, kind in field_types(type(config)).items():
        check_choice(method, key, getattr(config, key), kind)


def check_choice(method: str, key: str, value: Any, kind: Any) -> None:
    if typing.get_origin(kind) is Literal and value not in typing.get_args(kind):
        raise ConfigError(f"{method}.{key}: expected {describe(kind)}, got '{value}'")


def parse_overrides(items: Sequence[str], methods: Sequence[str]) -> dict[str, dict[str, str]]:
    """`--set KEY=V` (every method of the run that has KEY) and `--set METHOD.KEY=V` (one method)."""
    overrides: dict[str, dict[str, str]] = {name: {} for name in methods}
    settings = {name: set(field_types(get_method(name).Config)) for name in methods}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE or METHOD.KEY=VALUE, got '{item}'")
        key, value = item.split("=", 1)
        if "." in key:
            method, key = key.split(".", 1)
            if method not in overrides:
                raise ConfigError(f"--set {item}: '{method}' is not a method of this run "
                                  f"(methods: {', '.join(methods)}){did_you_mean(method, methods)}")
            overrides[method][key] = value  # unknown keys are named by resolve_config with the method's settings
            continue
        targets = [name for name in methods if key in settings[name]]
        if not targets:
            known = sorted(set().union(*settings.values()))
            raise ConfigError(f"--set {item}: no method of this run ({', '.join(methods)}) has a setting '{key}'"
                              f"{did_you_mean(key, known)}")
        for name in targets:
            overrides[name][key] = value
    return overrides


def positive(config: Any, *names: str) -> None:
    """For a config's __post_init__: each named setting must be >= 1."""
    bad = [f"{name}={getattr(config, name)}" for name in names if getattr(config, name) < 1]
    if bad:
        raise ValueError(f"must be at least 1: {', '.join(bad)}")


def within(config: Any, interval: str, *names: str) -> None:
    """For a config's __post_init__: each named setting must lie in `interval`, written as in mathematics:
    "(0, inf)" for a learning rate, "(0, 1)" for an expectile, "[0, 1]" for a discount."""
    low_text, high_text = (part.strip() for part in interval[1:-1].split(","))
    low, high = float(low_text), float(high_text)
    bad = []
    for name in names:
        value = getattr(config, name)
        above = value > low if interval[0] == "(" else value >= low
        below = value < high if interval[-1] == ")" else value <= high
        if not (above and below):
            bad.append(f"{name}={value}")
    if bad:
        raise ValueError(f"must be in {interval}: {', '.join(bad)}")


def plan_stages(method: str, task: Task, profile: str, overrides: Mapping[str, Mapping[str, Any]] | None = None,
                config: Any = None, _asking: tuple[str, ...] = ()) -> tuple[Stage, ...]:
    """`method`'s declared stages for `task` (from `config`, or its config resolved with its overrides),
    resolving any other method whose stage it shares with that method's own overrides of the same grid."""
    if method in _asking:
        raise ConfigError(f"stage sharing loops: {' -> '.join((*_asking, method))}")
    overrides = overrides or {}
    method_cls = get_method(method)
    if config is None:
        config = resolve_config(method_cls, task, profile, overrides.get(method, {}))
    plan = PlanContext(task, profile, lambda other: plan_stages(other, task, profile, overrides,
                                                                 _asking=(*_asking, method)))
    try:
        return tuple(method_cls.stages(config, plan))
    except ValueError as error:
        raise ConfigError(f"{method}: {error}") from None


def config_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)
