"""The words every command shares: suite, runtime, format and executor names, column names, counts, suggestions.

One place for them, so a help text, an error line, a table header and a file column cannot drift apart: the CLI
draws its help from here and from the registries (methods: entry points; tasks: `tasks.SUITES`, keyed by
`SUITES`; protocols: their files), and tests/test_cli_words.py checks each registry against its help.

This module imports nothing of srpo_bench: the registries import it (registry, tasks, protocols, runtimes,
config), so anything it imported back would be an import cycle (tests/test_imports.py).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from typing import Any

# --- names ---------------------------------------------------------------------------------------------------
#: suite -> what it is (tasks.SUITES lists each suite's tasks under exactly these names)
SUITES: dict[str, str] = {
    "toy": "SRPO's 2-D bandits, seconds",
    "locomotion-lite": "our own hopper/halfcheetah/walker2d data (`srpo-bench collect`)",
    "locomotion": "the nine D4RL -v2 tasks",
    "antmaze": "D4RL AntMaze via Minari",
    "ogbench": "OGBench manipulation, success rate",
}
#: suites `srpo-bench collect` makes locally (the others are downloaded)
COLLECTABLE_SUITES: dict[str, str] = {
    "locomotion-lite": "SAC behavior policies",
    "ogbench": "OGBench's scripted oracles",
}
#: how a trained policy acts in evaluation and timing (runtimes.py)
RUNTIMES: dict[str, str] = {
    "eager": "PyTorch",
    "compiled": "torch.compile",
    "onnx": "ONNX Runtime",
}
#: where the runs of a grid execute (executors.py)
EXECUTORS: dict[str, str] = {
    "local": "this machine, --jobs processes",
    "ray": "a Ray cluster, pip install 'srpo-bench[ray]'",
}
#: files `srpo-bench report` writes (report/leaderboard.py)
LEADERBOARD_FORMATS: tuple[str, ...] = ("md", "html", "csv", "json")
#: policy files `srpo-bench export` writes (export.py)
EXPORT_FORMATS: dict[str, str] = {
    "onnx": "runs with onnxruntime alone",
    "torchscript": "torch.jit.load",
}
#: what the profiles are for (profiles.PROFILE_NAMES is the list; a profile without a line here is still shown)
PROFILE_PURPOSES: dict[str, str] = {
    "smoke": "seconds, for tests",
    "quick": "a laptop",
    "paper": "official step counts",
    "ogbench-cpu": "OGBench in ~15 CPU-minutes per run (this project's budget)",
}

# --- column names ------------------------------------------------------------------------------------------
# One name per quantity and kind of output: people read DISPLAY names in the terminal and in Markdown/HTML tables;
# files (JSON, CSV) and code use FIELD names. `display_name` maps the second onto the first.
NFE_FIELD = "nfe_per_action"
NFE_COLUMN = "NFE/action"
_DISPLAY_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"nfe_per_action", NFE_COLUMN),
    (r"actions_per_second_b(\d+)", r"actions/s b\1"),
    (r"ms_per_call_b(\d+)", r"ms/call b\1"),
    (r"us_per_action_b(\d+)", r"us/action b\1"),
    (r"speedup_b(\d+)", r"speedup b\1"),
    (r"(\w+)_speedup_b(\d+)", r"\1 speedup b\2"),
)


def display_name(field: str) -> str:
    """The header people read for a file column: 'nfe_per_action' -> 'NFE/action', 'actions_per_second_b256' ->
    'actions/s b256', 'srpo_speedup_b1' -> 'srpo speedup b1'; any other name as it is."""
    for pattern, replacement in _DISPLAY_PATTERNS:
        if re.fullmatch(pattern, field):
            return re.sub(pattern, replacement, field)
    return field


def for_display(row: dict[str, object]) -> dict[str, object]:
    """A row keyed by file names, keyed by display names instead (order kept)."""
    return {display_name(key): value for key, value in row.items()}


# --- counts ------------------------------------------------------------------------------------------------
def plural(n: float, word: str, many: str | None = None) -> str:
    """'1 run', '2 runs', '0 runs', '1,200 episodes', '3 batches'; `many` for irregular words."""
    if many is None:
        if word.endswith(("s", "x", "ch", "sh")):
            many = word + "es"
        elif word.endswith("y") and word[-2:-1] not in ("a", "e", "i", "o", "u"):
            many = word[:-1] + "ies"
        else:
            many = word + "s"
    shown = f"{int(n):,}" if float(n).is_integer() else f"{n:,g}"
    return f"{shown} {word if n == 1 else many}"


# --- suggestions -------------------------------------------------------------------------------------------
def close_names(name: str, choices: Iterable[str], limit: int = 3) -> list[str]:
    """The names of `choices` closest to `name` (difflib's ratio, case ignored), best first; none if none is
    close (ratio below 0.6)."""
    by_lower: dict[str, str] = {}
    for choice in choices:
        by_lower.setdefault(choice.lower(), choice)
    found = difflib.get_close_matches(name.lower(), list(by_lower), n=limit, cutoff=0.6)
    return [by_lower[match] for match in found]


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """"; did you mean 'srpo'?" (or "'a' or 'b'") to append to an error line, or "" when nothing is close."""
    found = close_names(name, choices)
    if not found:
        return ""
    quoted = [f"'{choice}'" for choice in found]
    listed = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]
    return f"; did you mean {listed}?"


def listing(names: Iterable[str]) -> str:
    """'a, b, c' for a help text."""
    return ", ".join(names)


# A sweep run's names (sweeps.py; here so that runner.py can name folders without importing sweeps.py, which
# imports runner.py).
def variant_label(method: str, overrides: Mapping[str, Any]) -> str:
    """`srpo[beta=0.01]`: the method with its overrides, keys sorted (the report's `method_label`)."""
    if not overrides:
        return method
    return f"{method}[{','.join(f'{key}={overrides[key]}' for key in sorted(overrides))}]"


def folder_name(method: str, overrides: Mapping[str, Any]) -> str:
    """A sweep run's method folder: its label, with anything that is not safe in a file name (a path separator in
    a string setting) replaced by '_'."""
    return re.sub(r"[^A-Za-z0-9._=,\[\]+-]", "_", variant_label(method, overrides))
