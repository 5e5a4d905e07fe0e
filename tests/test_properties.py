"""Property-based tests (hypothesis) where the inputs are a space, not a few examples: the seed parser, the `--set`
parser and its validation, the aggregates, and dataset validation over randomly broken arrays. A bad input is always
one clear error of the documented kind, never a crash of another kind and never accepted. Example counts are kept
small (a few seconds in all on one core); `deadline=None` because a shared machine's timing varies."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from srpo_bench.cli import MAX_SEED, UsageError, parse_seeds
from srpo_bench.config import ConfigError, field_types, parse_overrides, resolve_config
from srpo_bench.data.dataset import DatasetError, OfflineDataset
from srpo_bench.registry import get_method
from srpo_bench.report import aggregate
from srpo_bench.tasks import get_task

FEW = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Text a shell argument holds: no control characters (an error line quotes the value it refuses, so a newline typed
# into a value would show in the line; no other fault is excluded).
printable = st.characters(blacklist_categories=("Cc", "Cs"))


def one_line(error: Exception) -> str:
    message = str(error)
    assert message.strip() and "\n" not in message.strip(), repr(message)
    return message


# --- --seeds -----------------------------------------------------------------------------------------------
seeds = st.integers(0, MAX_SEED)


@FEW
@given(st.lists(seeds, min_size=1, max_size=8))
def test_a_seed_list_parses_to_its_distinct_seeds_in_order(values: list[int]) -> None:
    assert parse_seeds(",".join(map(str, values))) == list(dict.fromkeys(values))


@FEW
@given(seeds, st.integers(0, 40))
def test_a_seed_range_is_inclusive(low: int, span: int) -> None:
    assume(low + span <= MAX_SEED)
    assert parse_seeds(f"{low}-{low + span}") == list(range(low, low + span + 1))


@FEW
@given(st.text(alphabet="0123456789-, x.+e", max_size=12) | st.text(printable, max_size=8))
def test_any_seed_text_is_valid_seeds_or_one_usage_line(spec: str) -> None:
    try:
        parsed = parse_seeds(spec)
    except UsageError as error:
        assert "--seeds" in one_line(error)
        return
    assert parsed and all(0 <= seed <= MAX_SEED for seed in parsed) and len(set(parsed)) == len(parsed)


def test_a_huge_seed_range_is_one_line_before_it_is_listed() -> None:
    with pytest.raises(UsageError, match="names 2,147,483,648 seeds; at most 10,000"):
        parse_seeds(f"0-{MAX_SEED}")  # listed first, this range would take ~80 GB


# --- --set -------------------------------------------------------------------------------------------------
METHODS = ["srpo", "idql"]
SETTINGS = {name: sorted(field_types(get_method(name).Config)) for name in METHODS}
values = st.text(max_size=12)


@FEW
@given(st.sampled_from(METHODS), st.data(), values)
def test_a_method_setting_keeps_its_value_verbatim(method: str, data: st.DataObject, value: str) -> None:
    """METHOD.KEY=VALUE: the value is everything after the first '=', dots and '=' included."""
    key = data.draw(st.sampled_from(SETTINGS[method]))
    overrides = parse_overrides([f"{method}.{key}={value}"], METHODS)
    assert overrides == {name: ({key: value} if name == method else {}) for name in METHODS}


@FEW
@given(st.text(printable, max_size=20))
def test_any_set_item_parses_or_is_one_config_line(item: str) -> None:
    try:
        overrides = parse_overrides([item], METHODS)
    except ConfigError as error:
        assert "--set" in one_line(error)
        return
    key, value = item.split("=", 1)
    targets = [name for name in METHODS if overrides[name]]
    assert targets and all(value in overrides[name].values() for name in targets)


@FEW
@given(st.sampled_from(METHODS), st.data(),
       st.text(printable, max_size=10) | st.integers(-10**6, 10**6).map(str) | st.floats(allow_nan=True).map(repr))
def test_any_setting_value_resolves_or_is_one_config_line(method: str, data: st.DataObject, raw: str) -> None:
    """Every value `--set` can give any setting: a config whose field is that value parsed, or one ConfigError
    line naming the method (never a TypeError, OverflowError or a config holding a NaN)."""
    key = data.draw(st.sampled_from(SETTINGS[method]))
    try:
        config = resolve_config(get_method(method), get_task("toy-two-moons"), "smoke", {key: raw})
    except ConfigError as error:
        assert method in one_line(error)
        return
    value = getattr(config, key)
    assert not (isinstance(value, float) and not math.isfinite(value))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        assert value == type(value)(raw)
    elif isinstance(value, str):
        assert value == raw
    assert dataclasses.replace(config) == config  # the resolved config passes its own checks again


@FEW
@given(st.sampled_from(METHODS), st.data(),
       st.sampled_from(["nan", "NaN", "inf", "-inf", "Infinity", "1e999", "-1e400"]))
def test_a_non_finite_number_is_refused_for_every_float_setting(method: str, data: st.DataObject, raw: str) -> None:
    floats = [key for key, kind in field_types(get_method(method).Config).items() if kind is float]
    key = data.draw(st.sampled_from(floats))
    with pytest.raises(ConfigError, match=f"{method}.{key}: expected float, got '{raw}'"):
        resolve_config(get_method(method), get_task("toy-two-moons"), "smoke", {key: raw})


# --- aggregates --------------------------------------------------------------------------------------------
scores = st.floats(-50.0, 150.0, allow_nan=False, width=32)


@FEW
@given(st.lists(scores, min_size=1, max_size=12), st.integers(0, 2**16))
def test_a_mean_and_median_interval_contains_its_point(values: list[float], seed: int) -> None:
    for estimate in (aggregate.mean_interval(values, reps=300, seed=seed),
                     aggregate.median_interval(values, reps=300, seed=seed)):
        if len(values) == 1:
            assert estimate.low is None and estimate.high is None
        else:
            assert estimate.low <= estimate.point + 1e-9 and estimate.point <= estimate.high + 1e-9


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hnp.arrays(np.float64, st.tuples(st.integers(2, 6), st.integers(1, 3)), elements=scores),
       st.randoms(use_true_random=False))
def test_aggregates_hold_their_point_and_ignore_the_order_of_runs(matrix: np.ndarray, random) -> None:
    """The stratified-bootstrap aggregates: the mean's interval contains its point, and every point estimate is the
    same whatever order the runs (rows) come in. (A percentile interval of the IQM or median need not contain its
    point: those statistics are biased on small samples, so only the mean's is required.)"""
    order = list(range(len(matrix)))
    random.shuffle(order)
    first = aggregate.interval_estimates({"m": matrix}, reps=200)["m"]
    shuffled = aggregate.interval_estimates({"m": matrix[order]}, reps=200)["m"]
    mean = first["mean"]
    assert mean.low <= mean.point + 1e-9 <= mean.high + 2e-9
    for name in aggregate.METRICS:
        assert shuffled[name].point == pytest.approx(first[name].point, rel=1e-9, abs=1e-9)
    other = matrix[::-1] + 1.0
    assert aggregate.probability_of_improvement(matrix[order], other) == pytest.approx(
        aggregate.probability_of_improvement(matrix, other[::-1]), abs=1e-12)


# --- dataset validation ------------------------------------------------------------------------------------
COLUMNS = ("observations", "actions", "rewards", "next_observations", "terminals", "episode_ends")
FAULTS = ("nan", "inf", "bytes", "strings", "objects", "complex", "short", "long", "ndim", "flag_value",
          "flag_bytes", "outside_box")


def valid_columns(rows: int, obs_dim: int, act_dim: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {"observations": rng.standard_normal((rows, obs_dim)).astype(np.float32),
            "actions": rng.uniform(-1, 1, (rows, act_dim)).astype(np.float32),
            "rewards": rng.standard_normal(rows).astype(np.float32),
            "next_observations": rng.standard_normal((rows, obs_dim)).astype(np.float32),
            "terminals": (rng.random(rows) < 0.2).astype(np.float32),
            "episode_ends": rng.random(rows) < 0.3}


def broken(column: np.ndarray, fault: str, name: str, row: int) -> np.ndarray | None:
    """`column` with one fault at `row`; None where the fault does not apply to this column."""
    flags = name in ("terminals", "episode_ends")
    if fault in ("nan", "inf"):
        if flags or not np.issubdtype(column.dtype, np.floating):
            return None
        copy = column.copy()
        copy.reshape(len(copy), -1)[row, 0] = np.nan if fault == "nan" else -np.inf
        return copy
    if fault == "bytes":
        return np.array([str(x).encode() for x in column.reshape(len(column), -1)[:, 0]])
    if fault == "strings":
        return column.astype(str)
    if fault == "objects":
        return column.astype(object)
    if fault == "complex":
        return column.astype(np.complex64)
    if fault == "short":
        return column[:-1]
    if fault == "long":
        return np.concatenate([column, column[:1]])
    if fault == "ndim":
        return column[:, None] if column.ndim == 1 else column[:, :, None]
    if fault == "flag_value":
        if not flags:
            return None
        copy = column.astype(np.float32)
        copy[row] = 0.5 if row % 2 else 2.0
        return copy
    if fault == "flag_bytes":  # b"0" is a non-empty byte string: `astype(bool)` would make it True
        return np.array([b"1" if x else b"0" for x in column]) if flags else None
    if fault == "outside_box":
        if name != "actions":
            return None
        copy = column.copy()
        copy[row, 0] = 1.5 if row % 2 else -7.0
        return copy
    raise AssertionError(fault)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(2, 12), st.integers(1, 4), st.integers(1, 3), st.sampled_from(COLUMNS), st.sampled_from(FAULTS),
       st.data(), st.integers(0, 2**32 - 1))
def test_a_broken_column_is_one_dataset_error(rows: int, obs_dim: int, act_dim: int, name: str, fault: str,
                                              data: st.DataObject, seed: int) -> None:
    columns = valid_columns(rows, obs_dim, act_dim, np.random.default_rng(seed))
    OfflineDataset("ok", "file.hdf5", **columns)  # the unbroken columns are accepted
    row = data.draw(st.integers(0, rows - 1))
    bad = broken(columns[name], fault, name, row)
    assume(bad is not None)
    columns[name] = bad
    with pytest.raises(DatasetError) as caught:
        OfflineDataset("broken", "file.hdf5", **columns)
    message = one_line(caught.value)
    assert "file.hdf5" in message
    # the error names the broken column, or (a wrong length of observations) the column it disagrees with
    assert name in message or (name == "observations" and fault in ("short", "long"))
