"""Report tables: fit time counts what the stages cost to train, not how long loading them took."""

from __future__ import annotations

from srpo_bench.report.tables import training_seconds


def test_resumed_and_shared_stages_count_their_recorded_training_time() -> None:
    run = {"seconds": {"fit": 0.01},
           "stages": [{"stage": "behavior", "origin": "shared", "seconds": 120.0},
                      {"stage": "critic", "origin": "resumed", "seconds": 60.0},
                      {"stage": "policy", "origin": "trained", "seconds": 30.0}]}
    assert training_seconds(run) == 210.0


def test_runs_without_a_stage_log_fall_back_to_the_fit_wall_time() -> None:
    assert training_seconds({"seconds": {"fit": 42.0}}) == 42.0
    assert training_seconds({}) is None
