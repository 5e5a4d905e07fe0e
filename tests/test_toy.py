"""The toy bandits: data shapes, determinism, supports, reward values and reference scores."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from srpo_bench.data import toy
from srpo_bench.tasks import get_task

NAMES = [f"toy-{short}" for short in toy.TOY_NAMES]


@pytest.mark.parametrize("name", NAMES)
def test_dataset_is_a_one_step_bandit(name: str) -> None:
    data = toy.load_toy(name, size=500, seed=3)
    assert data.name == name and len(data) == 500
    assert data.observations.shape == (500, 2) and data.actions.shape == (500, 2)
    contexts = {tuple(c) for c in toy.CONTEXTS.astype(np.float32).tolist()}
    assert {tuple(o) for o in data.observations.tolist()} <= contexts  # every observation is a bump centre
    np.testing.assert_array_equal(data.next_observations, data.observations)
    assert (data.terminals == 1.0).all() and data.episode_ends.all()
    assert np.abs(data.actions).max() <= 0.9 + 1e-6  # scaled to fit, nothing clipped
    np.testing.assert_allclose(data.rewards, toy.reward(data.observations, data.actions), rtol=1e-5, atol=1e-6)
    assert data.metadata["ref_min_score"] == toy.reference_scores(name)[0]


@pytest.mark.parametrize("name", NAMES)
def test_dataset_is_deterministic_per_seed(name: str) -> None:
    first, again = toy.load_toy(name, size=300, seed=1), toy.load_toy(name, size=300, seed=1)
    np.testing.assert_array_equal(first.actions, again.actions)
    assert first.fingerprint() == again.fingerprint()
    assert not np.array_equal(first.actions, toy.load_toy(name, size=300, seed=2).actions)


def test_datasets_differ_between_shapes() -> None:
    moons, board = toy.load_toy("toy-two-moons", 100), toy.load_toy("toy-checkerboard", 100)
    assert not np.array_equal(moons.actions, board.actions)


def test_unknown_name_and_bad_size_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="unknown toy dataset 'toy-spirals'"):
        toy.load_toy("toy-spirals")
    with pytest.raises(ValueError, match="size must be positive"):
        toy.load_toy("toy-two-moons", size=0)


def test_reward_values_by_hand() -> None:
    # r(c, a) = 1 - |a - c|^2 (rho = 1): 1 at the centre, 0 at distance 1, quadratic in between.
    c = np.array([0.3, -0.6])
    assert toy.reward(c, c) == pytest.approx(1.0)
    assert toy.reward(c, c + [0.6, 0.8]) == pytest.approx(0.0)
    assert toy.reward(c, c + [0.0, 0.5]) == pytest.approx(0.75)
    assert toy.reward(np.zeros((3, 4, 2)), np.zeros((3, 4, 2))).shape == (3, 4)
    assert toy.CONTEXTS.shape == (49, 2) and np.abs(toy.CONTEXTS).max() == pytest.approx(0.9)
    with pytest.raises(ValueError, match="2 components"):
        toy.reward(np.zeros((5, 2)), np.zeros((5, 3)))


@pytest.mark.parametrize("name", NAMES)
def test_behavior_samples_lie_in_the_support(name: str) -> None:
    actions = toy.behavior_samples(name, 5000, np.random.default_rng(0))
    assert toy.in_support(name, actions).mean() >= 0.99
    far = np.array([[0.99, 0.99], [-0.99, 0.99], [-0.675, 0.675]])  # far corners and an empty cell
    assert not toy.in_support(name, far).any()


def test_supports_by_hand() -> None:
    # Checkerboard: cell (0, 0) (bottom left) is filled, its right neighbour is not.
    assert toy.in_support("checkerboard", np.array([[-0.675, -0.675], [-0.225, -0.675]])).tolist() == [True, False]
    # Half of the board's area is filled.
    uniform = np.random.default_rng(0).uniform(-0.9, 0.9, size=(20_000, 2))
    assert toy.in_support("checkerboard", uniform).mean() == pytest.approx(0.5, abs=0.02)
    # Eight Gaussians: the means are in, the centre of the ring is out, 3 std from a mean is the edge.
    means = toy.GAUSSIAN_MEANS
    assert toy.in_support("eight-gaussians", means).all()
    assert not toy.in_support("eight-gaussians", np.zeros(2))
    edge = 3 * toy.GAUSSIAN_STD
    assert toy.in_support("eight-gaussians", means[0] * (1 + 0.99 * edge / np.linalg.norm(means[0])))
    assert not toy.in_support("eight-gaussians", means[0] * (1 + 1.01 * edge / np.linalg.norm(means[0])))
    # Moons: distance to the arcs. The upper arc's centre is sqrt(0.5^2 + 0.25^2) from the lower arc's
    # centre, on the lower arc's side, so its distance is that minus the radius 0.5.
    assert toy.distance_to_moons(toy.MOON_UPPER_CENTRE) == pytest.approx(np.sqrt(0.3125) - 0.5)
    assert toy.distance_to_moons(np.array([-0.25, 0.375])) == pytest.approx(0.0)  # top of the upper arc
    # Beyond the arc's end (-0.75, -0.125) the distance is to that end point.
    assert toy.distance_to_moons(np.array([-0.75, -0.325])) == pytest.approx(0.2)


def test_behavior_distributions() -> None:
    rng = np.random.default_rng(1)
    gaussians = toy.behavior_samples("eight-gaussians", 16_000, rng)
    nearest = np.linalg.norm(gaussians[:, None] - toy.GAUSSIAN_MEANS, axis=-1).argmin(axis=1)
    np.testing.assert_allclose(np.bincount(nearest, minlength=8) / 16_000, 1 / 8, atol=0.015)
    # A 2-D normal truncated at radius 3 std keeps per-axis std 0.9893 std (E|z|^2 = 2 - 9 e^-4.5 / (1 - e^-4.5)).
    offsets = gaussians - toy.GAUSSIAN_MEANS[nearest]
    truncated_var = (2 - 9 * np.exp(-4.5) / (1 - np.exp(-4.5))) / 2
    assert offsets.std() == pytest.approx(toy.GAUSSIAN_STD * np.sqrt(truncated_var), rel=0.03)
    board = toy.behavior_samples("checkerboard", 16_000, rng)
    cells = np.floor((board + 0.9) / 0.45).astype(int)
    counts = np.bincount(cells[:, 0] * 4 + cells[:, 1], minlength=16) / 16_000
    filled = np.array([(i + j) % 2 == 0 for i in range(4) for j in range(4)])
    assert (counts[~filled] == 0).all()
    np.testing.assert_allclose(counts[filled], 1 / 8, atol=0.015)
    moons = toy.behavior_samples("two-moons", 16_000, rng)
    assert toy.distance_to_moons(moons).max() <= 0.15 + 1e-9
    to_upper = np.linalg.norm(moons - toy.MOON_UPPER_CENTRE, axis=1)
    upper = to_upper < np.linalg.norm(moons - toy.MOON_LOWER_CENTRE, axis=1)
    assert upper.mean() == pytest.approx(0.5, abs=0.03)


@pytest.mark.parametrize("name", NAMES)
def test_reference_scores_bracket_the_behavior(name: str) -> None:
    ref_min, ref_max = toy.reference_scores(name)
    rng = np.random.default_rng(2)
    contexts = toy.CONTEXTS[rng.integers(0, 49, 20_000)]
    behavior_mean = toy.reward(contexts, toy.behavior_samples(name, 20_000, rng)).mean()
    assert ref_min < behavior_mean < ref_max - 0.3  # choosing well inside the support matters
    assert ref_max < 1.0  # some bump centres lie outside the support
    best = toy.best_in_support_actions(name, toy.CONTEXTS)
    assert toy.in_support(name, best).all()


def test_reference_scores_by_hand() -> None:
    # A context inside the support is its own best action; one outside is best served by the nearest
    # support point: for the eight Gaussians' centre (0, 0) that is a mode's edge, radius - 3 std away.
    assert np.allclose(toy.best_in_support_actions("checkerboard", [[-0.6, -0.6]]), [[-0.6, -0.6]], atol=0.005)
    gap = toy.GAUSSIAN_RADIUS - 3 * toy.GAUSSIAN_STD
    nearest = toy.best_in_support_actions("eight-gaussians", [[0.0, 0.0]])
    assert np.linalg.norm(nearest) == pytest.approx(gap, abs=0.006)
    # ref_min agrees with a Monte Carlo estimate of the uniform mean reward over the contexts.
    rng = np.random.default_rng(3)
    rewards = toy.reward(toy.CONTEXTS[rng.integers(0, 49, 400_000)], rng.uniform(-1, 1, size=(400_000, 2)))
    assert toy.reference_scores("two-moons")[0] == pytest.approx(rewards.mean(), abs=4 * rewards.std() / 632)


@pytest.mark.parametrize("name", NAMES)
def test_env_step_semantics(name: str) -> None:
    env = toy.ToyBanditEnv(name)
    check_env(env, skip_render_check=True)
    observation, info = env.reset(seed=5)
    assert observation.shape == (2,) and observation.dtype == np.float32
    np.testing.assert_array_equal(env.reset(seed=5)[0], observation)  # the context is seeded
    action = np.array([-0.675, 0.225], dtype=np.float32)
    next_observation, reward, terminated, truncated, info = env.step(action)
    assert reward == pytest.approx(float(toy.reward(observation, action)))
    np.testing.assert_array_equal(next_observation, observation)
    assert (terminated, truncated, info) == (True, False, {})
    assert env.action_space.shape == (2,) and env.observation_space.shape == (2,)
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(3))


def test_task_registry_uses_the_toy_module() -> None:
    task = get_task("toy-checkerboard")
    assert task.reference_scores() == toy.reference_scores("toy-checkerboard")
    assert len(task.load()) == toy.DEFAULT_SIZE
    assert isinstance(task.make_env(), toy.ToyBanditEnv)


def test_plot_writes_a_png(tmp_path) -> None:
    path = toy.plot_toy("eight-gaussians", {"srpo": toy.CONTEXTS * 0.5, "bc": np.zeros((49, 2))},
                        tmp_path / "fig" / "toy.png")
    assert path.exists() and path.read_bytes()[:4] == b"\x89PNG"
