"""The `toy` suite: the 2-D bandits of SRPO's figure (`SRPO.PNG`, "quadratic Q-functions (stacked)").

A contextual one-step bandit. Each episode draws a context c, one of the 7 x 7 grid of bump centres
spanning [-0.9, 0.9]^2, which is also the observation; the reward of action a is the quadratic bump
    r(c, a) = 1 - |a - c|^2 / rho^2,   rho = 1,
so without regularisation the best action is a = c, and every c has its own Q-function, stacked into
one task as in the paper's figure. Behavior actions come from two moons, eight Gaussians or a
checkerboard and do not depend on c. SRPO's figure then reads directly: with weak regularisation
(large beta) the policy puts each context on its own bump centre; with strong regularisation it pulls
each action into the behavior support, towards the support point nearest c.

Scores: 0 = uniform random actions in [-1, 1]^2, 100 = for every context the best reward inside the
behavior support (`reference_scores`), both averaged over the 49 contexts. A policy that leaves the
support can score above 100; a policy that ignores the context (behavior cloning) scores far below.

Supports (all analytic, all behavior samples lie inside by construction):
- two moons: points within 3 noise std (0.15) of the two half-circle arcs; the noise is a 2-D Gaussian
  truncated at 3 std (rejection on its length), so "support" is exactly where data can fall.
- eight Gaussians: within 3 std (radius 0.245) of one of the eight means, the noise truncated likewise.
- checkerboard: the 8 filled cells of a 4 x 4 board on [-0.9, 0.9]^2.
All shapes are scaled to lie within [-0.9, 0.9]^2, so no action is ever clipped.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from srpo_bench.data.dataset import OfflineDataset

TOY_NAMES = ("two-moons", "eight-gaussians", "checkerboard")
DEFAULT_SIZE = 10_000
TRUNCATION_STDS = 3.0  # behavior noise is truncated at 3 std; the support is that same 3-std tube

# --- behavior geometry ------------------------------------------------------------------------------
# Two moons (sklearn's layout: arcs of radius 1, the lower one shifted by (1, -0.5), noise 0.1),
# centred and scaled by 0.5 so that x spans exactly [-0.9, 0.9] including the 3-std noise band.
MOON_RADIUS = 0.5
MOON_UPPER_CENTRE = np.array([-0.25, -0.125])  # arc over angles [0, pi]
MOON_LOWER_CENTRE = np.array([0.25, 0.125])  # arc over angles [pi, 2 pi]
MOON_NOISE_STD = 0.05
# Eight Gaussians (the usual std / radius ratio 0.5 / 4), scaled so radius + 3 std = 0.9, and turned by
# 22.5 degrees so that each mode sits on a reward bump (as the moons and checkerboard data do).
GAUSSIAN_RADIUS = 0.9 / (1.0 + TRUNCATION_STDS * 0.125)
GAUSSIAN_STD = 0.125 * GAUSSIAN_RADIUS
GAUSSIAN_ANGLES = np.pi / 8 + np.arange(8) * np.pi / 4
GAUSSIAN_MEANS = GAUSSIAN_RADIUS * np.stack([np.cos(GAUSSIAN_ANGLES), np.sin(GAUSSIAN_ANGLES)], axis=1)
# Checkerboard: 4 x 4 cells of side 0.45 on [-0.9, 0.9]^2; cell (i, j) is filled when i + j is even.
BOARD_HALF_WIDTH = 0.9
BOARD_CELLS = 4
BOARD_CELL = 2 * BOARD_HALF_WIDTH / BOARD_CELLS

# --- reward: one quadratic bump per context, centres on a 7 x 7 grid ---------------------------------
GRID_SIDE = 7
BUMP_RADIUS = 1.0  # rho; the bumps are not truncated, so grad_a Q never vanishes
_AXIS = np.linspace(-0.9, 0.9, GRID_SIDE)
CONTEXTS = np.array([[x, y] for y in _AXIS for x in _AXIS])  # [49, 2]: the observations


def canonical_name(name: str) -> str:
    """'toy-two-moons' or 'two-moons' -> 'two-moons'; a ValueError lists the known names."""
    short = name.removeprefix("toy-")
    if short not in TOY_NAMES:
        known = ", ".join(f"toy-{n}" for n in TOY_NAMES)
        raise ValueError(f"unknown toy dataset '{name}'; known: {known}")
    return short


# --- reward ---------------------------------------------------------------------------------------
def reward(contexts: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """r(c, a) = 1 - |a - c|^2 / rho^2 for contexts and actions [..., 2] (broadcast) -> rewards [...]."""
    contexts = np.asarray(contexts, dtype=np.float64)
    actions = np.asarray(actions, dtype=np.float64)
    if actions.shape[-1:] != (2,) or contexts.shape[-1:] != (2,):
        raise ValueError(f"toy contexts and actions need 2 components in the last axis, got {contexts.shape} "
                         f"and {actions.shape}")
    return 1.0 - ((actions - contexts) ** 2).sum(axis=-1) / BUMP_RADIUS**2


# --- behavior distributions -----------------------------------------------------------------------
def _truncated_noise(n: int, std: float, rng: np.random.Generator) -> np.ndarray:
    """2-D N(0, std^2 I) conditioned on |noise| <= 3 std (rejection), so samples stay in the support."""
    kept: list[np.ndarray] = []
    count = 0
    while count < n:
        draw = rng.normal(0.0, std, size=(2 * (n - count) + 16, 2))
        draw = draw[np.linalg.norm(draw, axis=1) <= TRUNCATION_STDS * std]
        kept.append(draw)
        count += len(draw)
    return np.concatenate(kept)[:n]


def _moon_points(n: int, rng: np.random.Generator) -> np.ndarray:
    upper = rng.random(n) < 0.5
    angle = rng.uniform(0.0, np.pi, size=n) + np.where(upper, 0.0, np.pi)
    centre = np.where(upper[:, None], MOON_UPPER_CENTRE, MOON_LOWER_CENTRE)
    on_arc = centre + MOON_RADIUS * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return on_arc + _truncated_noise(n, MOON_NOISE_STD, rng)


def _gaussian_points(n: int, rng: np.random.Generator) -> np.ndarray:
    return GAUSSIAN_MEANS[rng.integers(0, 8, size=n)] + _truncated_noise(n, GAUSSIAN_STD, rng)


def _filled_cells() -> np.ndarray:
    return np.array([(i, j) for i in range(BOARD_CELLS) for j in range(BOARD_CELLS) if (i + j) % 2 == 0])


def _checkerboard_points(n: int, rng: np.random.Generator) -> np.ndarray:
    cells = _filled_cells()[rng.integers(0, BOARD_CELLS**2 // 2, size=n)]
    return -BOARD_HALF_WIDTH + BOARD_CELL * (cells + rng.random((n, 2)))


def behavior_samples(name: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """n behavior actions [n, 2] (float64) drawn with `rng`."""
    sampler = {"two-moons": _moon_points, "eight-gaussians": _gaussian_points,
               "checkerboard": _checkerboard_points}[canonical_name(name)]
    return sampler(int(n), rng)


# --- supports -------------------------------------------------------------------------------------
def _distance_to_arc(points: np.ndarray, centre: np.ndarray, start: float) -> np.ndarray:
    """Distance from points to the half circle of MOON_RADIUS around `centre`, angles [start, start+pi]."""
    offset = points - centre
    angle = np.mod(np.arctan2(offset[..., 1], offset[..., 0]) - start, 2 * np.pi)
    to_circle = np.abs(np.linalg.norm(offset, axis=-1) - MOON_RADIUS)
    ends = centre + MOON_RADIUS * np.array([[np.cos(start), np.sin(start)],
                                            [np.cos(start + np.pi), np.sin(start + np.pi)]])
    to_ends = np.linalg.norm(points[..., None, :] - ends, axis=-1).min(axis=-1)
    return np.where(angle <= np.pi, to_circle, to_ends)


def distance_to_moons(actions: np.ndarray) -> np.ndarray:
    """Distance to the nearer of the two moons' arcs (their noise-free manifold)."""
    actions = np.asarray(actions, dtype=np.float64)
    return np.minimum(_distance_to_arc(actions, MOON_UPPER_CENTRE, 0.0),
                      _distance_to_arc(actions, MOON_LOWER_CENTRE, np.pi))


def in_support(name: str, actions: np.ndarray) -> np.ndarray:
    """Whether each action [..., 2] lies where the behavior distribution has density (see module doc).

    A tolerance of 1e-6 absorbs float32 rounding at the boundary.
    """
    short = canonical_name(name)
    actions = np.asarray(actions, dtype=np.float64)
    if short == "two-moons":
        return distance_to_moons(actions) <= TRUNCATION_STDS * MOON_NOISE_STD + 1e-6
    if short == "eight-gaussians":
        distance = np.linalg.norm(actions[..., None, :] - GAUSSIAN_MEANS, axis=-1).min(axis=-1)
        return distance <= TRUNCATION_STDS * GAUSSIAN_STD + 1e-6
    inside = np.all(np.abs(actions) <= BOARD_HALF_WIDTH + 1e-6, axis=-1)
    cell = np.clip(np.floor((actions + BOARD_HALF_WIDTH) / BOARD_CELL), 0, BOARD_CELLS - 1).astype(int)
    return inside & ((cell[..., 0] + cell[..., 1]) % 2 == 0)


# --- reference scores -----------------------------------------------------------------------------
def _grid(low: np.ndarray, high: np.ndarray, points: int) -> np.ndarray:
    xs = np.linspace(low[0], high[0], points)
    ys = np.linspace(low[1], high[1], points)
    return np.stack(np.meshgrid(xs, ys, indexing="xy"), axis=-1).reshape(-1, 2)


@cache
def uniform_mean_reward() -> float:
    """E_c E_{a~U([-1,1]^2)} r(c, a) in closed form: E|a - c|^2 = |c|^2 + 2/3 (each coordinate has variance 1/3)."""
    return float(np.mean(1.0 - ((CONTEXTS**2).sum(axis=1) + 2.0 / 3.0) / BUMP_RADIUS**2))


@cache
def support_points(name: str) -> np.ndarray:
    """The support on a fine grid (401^2 over [-1, 1]^2, spacing 0.005): nearest-point queries use it."""
    side = np.linspace(-1.0, 1.0, 401)
    grid = np.stack(np.meshgrid(side, side), axis=-1).reshape(-1, 2)
    return grid[in_support(canonical_name(name), grid)]


def best_in_support_actions(name: str, contexts: np.ndarray) -> np.ndarray:
    """For each context, the support point nearest c: it maximises r(c, .) inside the support."""
    points = support_points(name)
    contexts = np.asarray(contexts, dtype=np.float64).reshape(-1, 2)
    nearest = np.array([np.argmin(((points - c) ** 2).sum(axis=1)) for c in contexts])
    return points[nearest]


@cache
def best_in_support(name: str) -> float:
    """Mean over the 49 contexts of the best reward inside the support (to the grid's 0.005 spacing)."""
    return float(np.mean(reward(CONTEXTS, best_in_support_actions(name, CONTEXTS))))


@cache
def reference_scores(name: str) -> tuple[float, float]:
    """(ref_min, ref_max) = (mean reward of uniform random actions, best reward inside the support)."""
    return uniform_mean_reward(), best_in_support(canonical_name(name))


# --- dataset --------------------------------------------------------------------------------------
def load_toy(name: str, size: int = DEFAULT_SIZE, seed: int = 0) -> OfflineDataset:
    """`size` one-step transitions of the named bandit; the same (name, size, seed) gives the same data."""
    short = canonical_name(name)
    if size <= 0:
        raise ValueError(f"toy dataset size must be positive, got {size}")
    rng = np.random.default_rng([seed, TOY_NAMES.index(short)])
    actions = behavior_samples(short, size, rng).astype(np.float32)
    observations = CONTEXTS[rng.integers(0, len(CONTEXTS), size=size)].astype(np.float32)
    ref_min, ref_max = reference_scores(short)
    return OfflineDataset(
        name=f"toy-{short}", source=f"toy:{short}", observations=observations, actions=actions,
        rewards=reward(observations, actions).astype(np.float32), next_observations=observations.copy(),
        terminals=np.ones(size, dtype=np.float32), episode_ends=np.ones(size, dtype=bool),
        metadata={"ref_min_score": ref_min, "ref_max_score": ref_max, "seed": seed, "size": size},
    )


# --- environment ----------------------------------------------------------------------------------
class ToyBanditEnv(gym.Env):
    """One-step contextual bandit: reset -> a context c from the 7 x 7 grid (seeded);
    step(a) -> (c, r(c, a), terminated=True, truncated=False, {})."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, name: str) -> None:
        self.toy_name = canonical_name(name)
        self.observation_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self._context = CONTEXTS[0].astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._context = CONTEXTS[self.np_random.integers(len(CONTEXTS))].astype(np.float32)
        return self._context.copy(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (2,):
            raise ValueError(f"ToyBanditEnv expects an action of shape (2,), got {action.shape}")
        return self._context.copy(), float(reward(self._context, action)), True, False, {}


# --- figure ---------------------------------------------------------------------------------------
def plot_toy(name: str, actions_by_label: dict[str, np.ndarray], path: str | Path,
             behavior_points: int = 2000) -> Path:
    """One panel per policy: behavior samples (grey), the 49 contexts / bump centres (black) and an
    arrow from each context to the policy's action for it (red), as in SRPO's figure.

    `actions_by_label[label]` is [49, 2]: the policy's action for each of `CONTEXTS` in order.
    Uses matplotlib's object API (no pyplot), so it never touches the global backend.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    short = canonical_name(name)
    behavior = behavior_samples(short, behavior_points, np.random.default_rng(0))
    panels = max(1, len(actions_by_label))
    figure = Figure(figsize=(3.2 * panels, 3.4))
    FigureCanvasAgg(figure)
    items = list(actions_by_label.items()) or [("behavior", np.empty((0, 2)))]
    for index, (label, actions) in enumerate(items):
        axes = figure.add_subplot(1, panels, index + 1)
        axes.scatter(behavior[:, 0], behavior[:, 1], s=1, c="0.7", alpha=0.5)
        axes.scatter(CONTEXTS[:, 0], CONTEXTS[:, 1], s=6, c="black")
        actions = np.asarray(actions, dtype=np.float64).reshape(-1, 2)
        if len(actions) == len(CONTEXTS):
            delta = actions - CONTEXTS
            axes.quiver(CONTEXTS[:, 0], CONTEXTS[:, 1], delta[:, 0], delta[:, 1], angles="xy",
                        scale_units="xy", scale=1, color="tab:red", width=0.006)
        axes.scatter(actions[:, 0], actions[:, 1], s=6, c="tab:red")
        axes.set(xlim=(-1, 1), ylim=(-1, 1), title=f"{label}", aspect="equal")
        axes.set_xticks([])
        axes.set_yticks([])
    figure.suptitle(f"toy-{short}: contexts (black) -> policy actions (red); behavior in grey")
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path
