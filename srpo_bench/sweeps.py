"""Sweeps: a grid over settings, expanded into runs labelled by their overrides, in one results folder.

    --set srpo.beta=0.01,0.05,0.2          a comma list sweeps the setting (one configuration per value)
    --sweep sweep.toml                      one table per method, each key a list of values:
                                                [srpo]
                                                beta = [0.01, 0.05, 0.2]
                                                [fql]
                                                alpha = [1, 10, 100]

A method's configurations are the product of its swept settings' values, each with the method's other (fixed)
`--set` overrides; the method also runs once at its paper's setting (the fixed overrides alone), the reference
of the report's tuning view (report/tuning.py). A setting whose type is a tuple (hidden sizes, "256,256") reads a
comma list as one value, as a single `--set` always did; sweep it with a list of lists in a `--sweep` file.

Every expanded value is parsed and checked (type, choices, the config's own checks, the stage plan) for every task
before anything trains; a bad one is one line naming method, key and value. Sweep runs live in their own folders,
`runs/<profile>/<task>/<method>[<overrides>]/seed<k>`, and record the swept keys (run.json "sweep"), so the
report keeps each configuration apart and knows which runs form a sweep. Stages are shared as always by their
keys: a beta sweep of SRPO trains the behavior model and the critic once per seed (beta enters only the policy
stage's key).
"""

from __future__ import annotations

import itertools
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from srpo_bench.config import ConfigError, field_types, parse_overrides, parse_setting, plan_stages
from srpo_bench.registry import get_method
from srpo_bench.tasks import get_task
from srpo_bench.vocabulary import folder_name, plural, variant_label  # noqa: F401  (re-exported)

try:  # tomllib from Python 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

if TYPE_CHECKING:
    from srpo_bench.runner import RunSpec


@dataclass
class Grid:
    """The settings of a grid: `fixed[method][key] = value` (one value, as `--set` always gave) and
    `swept[method][key] = [values]` (two or more)."""

    fixed: dict[str, dict[str, str]]
    swept: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    def configurations(self, method: str) -> list[dict[str, str]]:
        """The swept values of each configuration of `method` (keys sorted, values in the order given); [] when
        the method is not swept."""
        keys = sorted(self.swept.get(method, {}))
        if not keys:
            return []
        return [dict(zip(keys, values, strict=True))
                for values in itertools.product(*(self.swept[method][key] for key in keys))]

    @property
    def sweeps(self) -> bool:
        return any(self.swept.values())


def _is_tuple(kind: Any) -> bool:
    return typing.get_origin(kind) is tuple


def split_values(method: str, key: str, raw: str, kind: Any) -> list[str]:
    """A `--set` value as the list of values it sweeps: commas separate values, except in a tuple setting."""
    if kind is None or _is_tuple(kind):
        return [raw]  # an unknown key is named by resolve_config; a tuple reads the commas itself
    values = [part.strip() for part in raw.split(",")]
    if len(values) > 1 and not all(values):
        raise ConfigError(f"{method}.{key}: an empty value in the list '{raw}'")
    return values


def parse_grid(items: Sequence[str], methods: Sequence[str], sweep_file: Path | None = None) -> Grid:
    """`--set` items and a `--sweep` file as fixed and swept settings per method (values still strings; they are
    parsed and checked with every task by `plan_sweep`)."""
    grid = Grid({name: {} for name in methods}, {})
    from_file = load_sweep_file(sweep_file, methods) if sweep_file is not None else {}
    for method, settings in from_file.items():
        for key, values in settings.items():
            _put(grid, method, key, values)
    for item in items:
        for method, settings in parse_overrides([item], methods).items():
            for key, raw in settings.items():
                if key in from_file.get(method, {}):
                    raise ConfigError(f"--set {item}: {method}.{key} is also in {sweep_file}; give it once")
                kind = field_types(get_method(method).Config).get(key)
                _put(grid, method, key, split_values(method, key, raw, kind))
    for method, settings in grid.swept.items():
        for key, values in settings.items():
            _refuse_repeats(method, key, values)
    grid.swept = {method: settings for method, settings in grid.swept.items() if settings}
    return grid


def _put(grid: Grid, method: str, key: str, values: list[str]) -> None:
    """The last `--set` of a key wins, as before sweeps existed."""
    grid.fixed[method].pop(key, None)
    grid.swept.setdefault(method, {}).pop(key, None)
    if len(values) == 1:
        grid.fixed[method][key] = values[0]
    else:
        grid.swept[method][key] = values


def _refuse_repeats(method: str, key: str, values: list[str]) -> None:
    """Two spellings of one value (0.05 and 5e-2) would be one configuration run twice under two labels."""
    kind = field_types(get_method(method).Config).get(key)
    if kind is None:
        return  # resolve_config names the unknown key
    seen: dict[str, str] = {}
    for raw in values:
        typed = repr(parse_setting(method, key, raw, kind))
        if typed in seen:
            raise ConfigError(f"{method}.{key}: '{seen[typed]}' and '{raw}' are the same value; give each value once")
        seen[typed] = raw


def _toml_value(value: Any) -> str:
    """A TOML value as the `--set` text it stands for: true/false, numbers as written, a list as a tuple's
    comma list."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(_toml_value(item) for item in value)
    return str(value)


def load_sweep_file(path: Path, methods: Sequence[str]) -> dict[str, dict[str, list[str]]]:
    """`--sweep FILE`: {method: {key: [values as --set text]}}; a bad file is one line naming it."""
    try:
        content = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"--sweep {path}: cannot read ({(error.strerror or str(error)).lower()})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"--sweep {path}: not valid TOML ({error})") from None
    if not content:
        raise ConfigError(f"--sweep {path}: no settings (one table per method, e.g. [srpo] beta = [0.01, 0.1])")
    out: dict[str, dict[str, list[str]]] = {}
    for method, table in content.items():
        if not isinstance(table, dict):
            raise ConfigError(f"--sweep {path}: '{method}' must be a table of settings ([{method}] then key = "
                              "[values])")
        if method not in methods:
            raise ConfigError(f"--sweep {path}: [{method}] is not a method of this run (methods: "
                              f"{', '.join(methods)})")
        kinds = field_types(get_method(method).Config)
        out[method] = {}
        for key, value in table.items():
            if isinstance(value, dict):
                raise ConfigError(f"--sweep {path}: {method}.{key} must be a value or a list of values, not a table")
            # A list is the values of a sweep, except a tuple setting's own list (a list of lists sweeps those).
            listed = isinstance(value, list) and not (_is_tuple(kinds.get(key)) and not
                                                      any(isinstance(item, list) for item in value))
            values = value if listed else [value]
            if not values:
                raise ConfigError(f"--sweep {path}: {method}.{key} has an empty list of values")
            out[method][key] = [_toml_value(item) for item in values]
    return out


def plan_sweep(tasks: Sequence[str], methods: Sequence[str], seeds: Sequence[int], profile: str, grid: Grid,
               protocol: str | None = None) -> list[RunSpec]:
    """Every run of the grid: per task and method, the paper's setting (the fixed overrides) and, for a swept
    method, each configuration; seeds innermost, so that parallel workers start on different seeds' shared stages.
    Every configuration's config and stage plan is resolved for every task first."""
    from srpo_bench.runner import RunSpec, plan_grid

    if not grid.sweeps:
        return plan_grid(tasks, methods, seeds, profile, grid.fixed, protocol)
    variants: dict[str, list[tuple[dict[str, dict[str, str]], tuple[str, ...]]]] = {}
    for method in methods:
        variants[method] = [(grid.fixed, ())]  # the paper's setting: the reference of the tuning view
        for values in grid.configurations(method):
            variants[method].append(({**grid.fixed, method: {**grid.fixed[method], **values}}, tuple(sorted(values))))
    for task_name in tasks:
        task = get_task(task_name)
        for method in methods:
            for overrides, _ in variants[method]:
                plan_stages(method, task, profile, overrides)
            _refuse_swept_shared_stages(method, task, profile, grid)
    return [RunSpec(task, method, seed, profile, overrides, protocol, sweep=swept)
            for task in tasks for method in methods for overrides, swept in variants[method] for seed in seeds]


def _refuse_swept_shared_stages(method: str, task: Any, profile: str, grid: Grid) -> None:
    """A method that takes a stage from another method (IDQL's `critic_source=shared`) plans it with that method's
    fixed overrides; if that method's swept values would change the stage, which one is meant is unclear: refuse."""
    plain = plan_stages(method, task, profile, grid.fixed)
    for other in grid.swept:
        if other == method:
            continue
        for values in grid.configurations(other):
            changed = plan_stages(method, task, profile, {**grid.fixed, other: {**grid.fixed[other], **values}})
            if changed != plain:
                keys = ", ".join(f"{other}.{key}" for key in sorted(values))
                raise ConfigError(f"{method} shares a stage of {other}, and the sweep of {keys} changes it: sweep "
                                  f"{other} in a run without {method}, or fix the setting")


def describe(grid: Grid, methods: Sequence[str]) -> list[str]:
    """One line per swept method for `--dry-run`: its settings, values and how many runs per task and seed."""
    lines = []
    for method in methods:
        configurations = grid.configurations(method)
        if not configurations:
            continue
        swept = "; ".join(f"{key} = {', '.join(values)}" for key, values in sorted(grid.swept[method].items()))
        fixed = f" (fixed: {variant_label(method, grid.fixed[method])})" if grid.fixed[method] else ""
        lines.append(f"sweep {method}: {swept}{fixed}: {len(configurations)} configurations + the paper's setting "
                     f"(the reference) = {plural(len(configurations) + 1, 'run')} per task and seed")
    return lines
