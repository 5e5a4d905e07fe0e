"""`srpo-bench collect` (the lite suite) and its SAC behavior-policy learner, at size "small"."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.distributions import Normal, TransformedDistribution
from torch.distributions.transforms import TanhTransform

from srpo_bench.collect import lite as collection
from srpo_bench.collect import rollouts
from srpo_bench.collect.sac import GaussianActor, ReplayBuffer, SACConfig, TwinQ
from srpo_bench.data import d4rl
from srpo_bench.data.dataset import DatasetError
from srpo_bench.data.lite import LITE_TIERS, MAX_EPISODE_STEPS, lite_dir, parse_lite_task
from srpo_bench.progress import Reporter
from srpo_bench.tasks import get_task

TIERS = LITE_TIERS
ROLLOUT_TIERS = ("random", "medium", "expert")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Hopper collected once at size "small", in this process (workers=1)."""
    root = tmp_path_factory.mktemp("srpo-data")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SRPO_BENCH_DATA_DIR", str(root))
        collection.collect_suite(envs=("hopper",), size="small", seed=0, workers=1, reporter=Reporter(quiet=True))
    yield root


@pytest.fixture
def use_root(data_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SRPO_BENCH_DATA_DIR", str(data_root))
    return data_root / "lite"


def _raw(lite: Path, tier: str, env: str = "hopper") -> dict[str, np.ndarray]:
    return d4rl.read_hdf5(lite / f"lite-{env}-{tier}-v0.hdf5")


def _meta(lite: Path, tier: str, env: str = "hopper") -> dict:
    return d4rl.read_metadata(lite / f"lite-{env}-{tier}-v0.hdf5")


def _episode_slices(raw: dict[str, np.ndarray]) -> list[slice]:
    ends = np.flatnonzero(raw["terminals"] | raw["timeouts"])
    starts = np.concatenate([[0], ends[:-1] + 1])
    return [slice(int(s), int(e) + 1) for s, e in zip(starts, ends, strict=True)]


# --- paths and names ---------------------------------------------------------------------------------
def test_lite_dir_follows_the_environment_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SRPO_BENCH_DATA_DIR", str(tmp_path))
    assert lite_dir() == tmp_path / "lite"
    monkeypatch.delenv("SRPO_BENCH_DATA_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert lite_dir() == tmp_path / "home" / ".srpo-bench" / "lite"


def test_parse_lite_task() -> None:
    assert parse_lite_task("lite-hopper-medium-replay-v0") == ("hopper", "medium-replay")
    assert parse_lite_task("lite-halfcheetah-medium-expert-v0") == ("halfcheetah", "medium-expert")
    with pytest.raises(ValueError, match="unknown lite task"):
        parse_lite_task("lite-ant-medium-v0")


def test_bad_arguments_are_clear_value_errors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SRPO_BENCH_DATA_DIR", str(tmp_path))
    with pytest.raises(ValueError, match="unknown lite env"):
        collection.collect_suite(envs=("ant",), size="small")
    with pytest.raises(DatasetError, match="--size: must be one of full, small, got 'huge'"):
        collection.collect_suite(envs=("hopper",), size="huge")
    with pytest.raises(DatasetError, match="--workers: must be at least 1"):
        collection.collect_suite(envs=("hopper",), size="small", workers=0)
    with pytest.raises(DatasetError, match="--seed: must be an integer from 0"):
        collection.collect_suite(envs=("hopper",), size="small", seed=-1)
    with pytest.raises(DatasetError, match="--envs: unknown lite env"):
        collection.collect_suite(envs=(), size="small")
    assert list(tmp_path.iterdir()) == []  # refused before the data folder is made


def test_a_failed_worker_is_one_line_with_its_traceback_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    from srpo_bench.collect.workers import CollectionError

    error = CollectionError("collecting hopper failed: ValueError: boom\n  more", "Traceback (most recent call last):")
    assert str(error) == "collecting hopper failed: ValueError: boom more" and error.details.startswith("Traceback")


def test_missing_file_is_a_one_line_dataset_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SRPO_BENCH_DATA_DIR", str(tmp_path))
    with pytest.raises(DatasetError) as caught:
        get_task("lite-walker2d-medium-v0").load()
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(str(tmp_path / "lite" / "lite-walker2d-medium-v0.hdf5"))
    assert "not collected yet" in message and "srpo-bench collect --suite locomotion-lite" in message


# --- the collected files -----------------------------------------------------------------------------
def test_every_tier_is_written_and_loads_through_the_task_registry(use_root: Path) -> None:
    for tier in TIERS:
        assert (use_root / f"lite-hopper-{tier}-v0.hdf5").is_file()
        task = get_task(f"lite-hopper-{tier}-v0")
        dataset = task.load()
        assert (dataset.obs_dim, dataset.act_dim) == (11, 3)  # Hopper-v5
        assert len(dataset) > 0
        assert np.abs(dataset.actions).max() <= 1.0
        meta = _meta(use_root, tier)
        assert task.reference_scores(dataset) == (meta["ref_min_score"], meta["ref_max_score"])
    for which in ("medium", "expert"):
        assert collection.policy_path("hopper", which).is_file()


def test_files_have_the_d4rl_layout(use_root: Path) -> None:
    for tier in TIERS:
        raw = _raw(use_root, tier)
        assert set(raw) == {"observations", "actions", "rewards", "terminals", "timeouts", "next_observations"}
        assert raw["observations"].dtype == np.float32 and raw["terminals"].dtype == bool
        n = len(raw["observations"])
        assert raw["actions"].shape == (n, 3) and raw["rewards"].shape == (n,)
        assert not (raw["terminals"] & raw["timeouts"]).any()  # D4RL: a timeout is never terminal
        assert raw["terminals"][-1] or raw["timeouts"][-1]  # the file ends an episode
        for episode in _episode_slices(raw):
            # within an episode the next observation is the following row (qlearning_dataset relies on it)
            np.testing.assert_array_equal(raw["next_observations"][episode][:-1],
                                          raw["observations"][episode][1:])
            assert episode.stop - episode.start <= MAX_EPISODE_STEPS


def test_rollout_files_hold_complete_episodes_and_their_stated_returns(use_root: Path) -> None:
    plan = collection.PLANS["small"]
    for tier in ROLLOUT_TIERS + ("medium-expert",):
        raw, meta = _raw(use_root, tier), _meta(use_root, tier)
        slices = _episode_slices(raw)
        for episode in slices:  # a timeout only where the 1000-step limit was hit
            if raw["timeouts"][episode.stop - 1]:
                assert episode.stop - episode.start == MAX_EPISODE_STEPS
        returns = np.array([raw["rewards"][episode].sum(dtype=np.float64) for episode in slices])
        assert meta["episodes"] == len(slices)
        assert meta["transitions"] == len(raw["observations"])
        assert meta["behavior_return_mean"] == pytest.approx(returns.mean(), rel=1e-5)
        assert meta["behavior_return_std"] == pytest.approx(returns.std(), rel=1e-4)
        if tier in ROLLOUT_TIERS:
            assert len(raw["observations"]) >= plan.tier_transitions
            # lockstep envs stop as soon as the budget is met: at most one episode per env beyond it
            assert len(raw["observations"]) < plan.tier_transitions + plan.rollout_envs * MAX_EPISODE_STEPS


def test_medium_expert_is_medium_then_expert(use_root: Path) -> None:
    medium, expert, both = _raw(use_root, "medium"), _raw(use_root, "expert"), _raw(use_root, "medium-expert")
    for key in both:
        np.testing.assert_array_equal(both[key], np.concatenate([medium[key], expert[key]]))


def test_medium_replay_is_the_replay_buffer_up_to_the_medium_snapshot(use_root: Path) -> None:
    raw, meta = _raw(use_root, "medium-replay"), _meta(use_root, "medium-replay")
    sac = collection.PLANS["small"].sac
    assert len(raw["observations"]) == meta["medium_training_steps"] == meta["behavior_training_steps"]
    assert sac.start_steps < meta["medium_training_steps"] <= sac.total_steps
    assert meta["medium_training_steps"] % sac.checkpoint_every == 0
    assert raw["terminals"][-1] or raw["timeouts"][-1]
    # the buffer starts with SAC's warm-up: U(-1, 1) actions, standard deviation 1/sqrt(3)
    warm_up = raw["actions"][: sac.start_steps]
    assert warm_up.std() == pytest.approx(1 / np.sqrt(3), abs=0.02)
    assert warm_up.mean() == pytest.approx(0.0, abs=0.04)


def test_metadata_records_references_and_provenance(use_root: Path) -> None:
    sac = collection.PLANS["small"].sac
    expected_steps = {"random": 0, "expert": sac.total_steps, "medium-expert": sac.total_steps}
    for tier in TIERS:
        meta = _meta(use_root, tier)
        assert meta["tier"] == tier and meta["env_id"] == "Hopper-v5"
        assert (meta["size"], meta["seed"]) == ("small", 0)
        assert meta["ref_max_score"] > meta["ref_min_score"]
        assert meta["ref_episodes"] >= 10
        assert meta["srpo_bench_version"]
        assert meta["expert_training_steps"] == sac.total_steps
        if tier in expected_steps:
            assert meta["behavior_training_steps"] == expected_steps[tier]
    # every file shares the same reference scores
    assert len({(_meta(use_root, t)["ref_min_score"], _meta(use_root, t)["ref_max_score"]) for t in TIERS}) == 1
    # the expert file is the policy that defines ref_max_score: its mean return is on that scale
    expert = _meta(use_root, "expert")
    assert expert["behavior_return_mean"] > expert["ref_min_score"]


# --- cache and determinism ---------------------------------------------------------------------------
def _mtimes(lite: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(lite.rglob("*")) if p.is_file()}


def test_rerun_skips_files_already_collected(use_root: Path) -> None:
    before = _mtimes(use_root)
    assert len(before) == len(TIERS) + 2  # five tiers and two policies
    paths = collection.collect_suite(envs=("hopper",), size="small", seed=0, workers=1, reporter=Reporter(quiet=True))
    assert _mtimes(use_root) == before
    assert sorted(p.name for p in paths) == sorted(f"lite-hopper-{tier}-v0.hdf5" for tier in TIERS)


def test_a_deleted_tier_is_recollected_alone_and_identically(use_root: Path) -> None:
    original = _raw(use_root, "random")
    (use_root / "lite-hopper-random-v0.hdf5").unlink()
    before = _mtimes(use_root)
    collection.collect_suite(envs=("hopper",), size="small", seed=0, workers=1, reporter=Reporter(quiet=True))
    after = _mtimes(use_root)
    assert {name for name in after if after[name] != before.get(name)} == {"lite-hopper-random-v0.hdf5"}
    again = _raw(use_root, "random")
    for key in original:
        np.testing.assert_array_equal(again[key], original[key])


@pytest.mark.slow
def test_same_seed_gives_identical_arrays_in_worker_processes(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two envs in two spawned workers reproduce, bit for bit, hopper collected alone in this process."""
    monkeypatch.setenv("SRPO_BENCH_DATA_DIR", str(tmp_path))
    collection.collect_suite(envs=("walker2d", "hopper"), size="small", seed=0, workers=2,
                          reporter=Reporter(quiet=True))
    for tier in TIERS:
        first, second = _raw(data_root / "lite", tier), _raw(tmp_path / "lite", tier)
        for key in first:
            np.testing.assert_array_equal(second[key], first[key], err_msg=f"{tier}/{key}")
        assert _meta(tmp_path / "lite", tier, "walker2d")["env_id"] == "Walker2d-v5"


# --- rollouts ----------------------------------------------------------------------------------------
def test_roll_out_modes() -> None:
    envs = [rollouts.make_lite_env("hopper") for _ in range(3)]
    policy = rollouts.uniform_policy(3, seed=1)
    one_each = rollouts.roll_out(envs, policy, seed=2)
    assert len(one_each.returns) == 3  # one episode per env
    budget = rollouts.roll_out(envs, policy, seed=2, min_transitions=300)
    assert len(budget) >= 300
    ends = np.flatnonzero(budget.arrays["terminals"] + budget.arrays["timeouts"])
    assert len(ends) == len(budget.returns) and ends[-1] == len(budget) - 1
    for env in envs:
        env.close()


# --- the SAC pieces ----------------------------------------------------------------------------------
def test_squashed_gaussian_log_prob_matches_torch_distributions() -> None:
    torch.manual_seed(0)
    actor = GaussianActor(obs_dim=5, act_dim=3, hidden=16)
    obs = torch.randn(64, 5)
    action, log_prob = actor.sample(obs, torch.Generator().manual_seed(0))
    mean, log_std = actor(obs)
    reference = TransformedDistribution(Normal(mean, log_std.exp()), [TanhTransform()])
    clipped = action.clamp(-1 + 1e-6, 1 - 1e-6)  # TanhTransform's inverse needs |a| < 1
    np.testing.assert_allclose(log_prob.detach(), reference.log_prob(clipped).sum(-1).detach(), rtol=1e-3, atol=1e-3)
    assert action.abs().max() <= 1.0


def test_twin_q_heads_are_two_independent_mlps() -> None:
    torch.manual_seed(0)
    q = TwinQ(in_dim=4, hidden=8)
    obs, action = torch.randn(10, 3), torch.randn(10, 1, requires_grad=True)
    out = q(obs, action)
    x = torch.cat([obs, action], dim=-1)
    for head in range(2):
        h = x
        for layer in range(3):
            h = h @ q.weights[layer][head] + q.biases[layer][head]
            h = torch.relu(h) if layer < 2 else h
        np.testing.assert_allclose(out[head].detach(), h.squeeze(-1).detach(), rtol=1e-5, atol=1e-6)
    q(obs, action, frozen=True).sum().backward()
    assert action.grad is not None and action.grad.abs().sum() > 0
    assert all(p.grad is None for p in q.parameters())  # the actor's loss never trains the critic


def test_replay_prefix_ends_with_a_timeout_unless_terminal() -> None:
    buffer = ReplayBuffer(capacity=5, obs_dim=1, act_dim=1)
    for step in range(5):
        buffer.add(np.array([step]), np.array([0.0]), 1.0, np.array([step + 1]), terminated=step == 1,
                   truncated=False)
    assert buffer.prefix(4)["timeouts"].tolist() == [0, 0, 0, 1]  # cut mid-episode: a timeout
    assert buffer.prefix(2)["timeouts"].tolist() == [0, 0]  # ends on a termination: nothing added
    assert buffer.prefix(2)["terminals"].tolist() == [0, 1]
    assert buffer.arrays["timeouts"][3] == 0  # prefix copies; the buffer itself is untouched


def test_collection_key_depends_on_size_and_seed() -> None:
    keys = {collection.collection_key(size, seed) for size in ("small", "full") for seed in (0, 1)}
    assert len(keys) == 4  # (that a key does not change from run to run is test_collection_key_is_pinned's)


def test_collection_key_is_pinned() -> None:
    """Caches written by earlier versions stay current: these are the keys data/collect.py (before the split
    into data/lite.py and collect/) gave. A plan change that alters them must bump `_FORMAT` deliberately."""
    assert collection.collection_key("small", 0) == "3f7482f46ec9"
    assert collection.collection_key("full", 0) == "da3a79164c49"


def test_sac_config_rejects_impossible_schedules() -> None:
    with pytest.raises(ValueError, match="update_every"):
        SACConfig(update_every=0)
    with pytest.raises(ValueError, match="start_steps"):
        SACConfig(total_steps=100, start_steps=100)
