"""A long-lived worker around an official JAX learner, driven by benchmarks/vs_official.py (not by hand).

    JAX_VENV/bin/python benchmarks/official_jax_worker.py idql PATH/TO/IDQL   # philippe-eecs/IDQL, 7582571 timed
    JAX_VENV/bin/python benchmarks/official_jax_worker.py fql PATH/TO/fql     # seohongpark/fql, 719d044 timed

Run with a separate venv holding JAX (`python3 -m venv JAX_VENV && JAX_VENV/bin/pip install "jax[cpu]" flax optax
ml_collections`; timed here: jax/jaxlib 0.10.2, flax 0.12.8, optax 0.2.8, ml_collections 1.1.0, numpy 2.4.6).
Builds the unmodified official learner with its official configuration at Hopper shapes (obs 11, act 3), random
weights (its own initialisation) and four pre-built random device batches used in rotation (the official loop's
minibatch draw is left out: our side's draw is timed, so this errs in the official's favour). Modules the learner
imports but timing never runs (gym, the other agents' packages, distrax, tqdm) are stand-ins that fail if used.

Protocol: prints {"ready": true} once the learner is built; then for each stdin line "STAGE N" runs N official
steps of that stage, each ended by `jax.block_until_ready` (or N acts, each returning a host numpy array), and
prints {"ms": [per-call milliseconds]};
the first request of each warms it up first (WARMUP_STEPS untimed calls, its jit compilation among them).
  idql  behavior: DDPMIQLLearner.actor_update (DDPM loss, AdamW with cosine decay, EMA), batch 512
        critic:   DDPMIQLLearner.critic_update (update_v then update_q, Polyak target), batch 512
        whole:    DDPMIQLLearner.update (the official loop's step: actor, V and Q updates in one jit), batch 512
        (launcher/examples/train_ddpm_iql_offline.py's rl_config, critic_hyperparam 0.7 for locomotion)
        act1:     DDPMIQLLearner.eval_actions on one state (N = 64 candidates from T = 5 DDPM steps of the EMA
                  score model, min of the target Q heads, argmax), as jaxrl5's `evaluate` calls it: the action
                  comes back as a numpy array
        act256:   one act for 256 states: the official code has none (eval_actions takes one state), so this is
                  one jitted function composed of the official `ddpm_sampler` and `compute_q` (the two functions
                  eval_actions calls) on the 256 x 64 candidates, argmax per state: what a batched official act
                  would be (256 calls of eval_actions take longer)
  fql   joint:    FQLAgent.update (agents/fql.py get_config() with alpha 300, the README's cube-single command;
        only alpha differs across tasks and it does not change the work), batch 256
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
import types

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402

OBS_DIM, ACT_DIM = 11, 3  # Hopper
WARMUP_STEPS = 3  # per stage or act, untimed: includes the jit compilation


class _Box:
    """Stand-in for gym.spaces.Box: what DDPMIQLLearner.create reads (sample(), shape)."""

    def __init__(self, low: float, high: float, shape: tuple[int, ...], seed: int = 0) -> None:
        self.low, self.high, self.shape, self.dtype = low, high, tuple(shape), np.float32
        self._rng = np.random.default_rng(seed)

    def sample(self) -> np.ndarray:
        if np.isfinite(self.low) and np.isfinite(self.high):
            return self._rng.uniform(self.low, self.high, self.shape).astype(np.float32)
        return self._rng.standard_normal(self.shape).astype(np.float32)


def _fail_on_use(name: str) -> types.ModuleType:
    module = types.ModuleType(name)

    def missing(attribute: str) -> object:
        raise AttributeError(f"{name} stand-in: '{attribute}' is not needed for timing")

    module.__getattr__ = missing  # type: ignore[method-assign]
    return module


def package_at(name: str, path: str) -> None:
    """Register `name` as an empty package over its real folder: its __init__ (which imports every other agent
    and their dependencies) is skipped, its modules import as they are."""
    package = types.ModuleType(name)
    package.__path__ = [path]
    sys.modules[name] = package


def idql_stages(repo: str) -> dict[str, object]:
    gym = types.ModuleType("gym")
    spaces, utils, seeding = (types.ModuleType(n) for n in ("gym.spaces", "gym.utils", "gym.utils.seeding"))
    spaces.Space, spaces.Box = object, _Box  # the learner's type annotations and `create` arguments
    seeding.np_random = lambda seed=None: (np.random.default_rng(seed or 0), seed or 0)  # jaxrl5 Dataset.seed
    gym.spaces, gym.utils, utils.seeding = spaces, utils, seeding
    sys.modules.update({"gym": gym, "gym.spaces": spaces, "gym.utils": utils, "gym.utils.seeding": seeding})
    sys.path.insert(0, repo)
    for name in ("jaxrl5.agents", "jaxrl5.agents.ddpm_iql_simple", "jaxrl5.data"):
        package_at(name, os.path.join(repo, *name.split(".")))
    import jax
    import jax.numpy as jnp
    from flax.core import frozen_dict
    from jaxrl5.agents.ddpm_iql_simple.ddpm_iql_learner import DDPMIQLLearner, compute_q
    from jaxrl5.networks import ddpm_sampler

    rl_config = dict(actor_lr=3e-4, critic_lr=3e-4, value_lr=3e-4, T=5, N=64, M=0, actor_dropout_rate=0.1,
                     actor_num_blocks=3, decay_steps=int(3e6), actor_layer_norm=True, value_layer_norm=True,
                     actor_tau=0.001, beta_schedule="vp", critic_hyperparam=0.7)
    agent = DDPMIQLLearner.create(0, _Box(-np.inf, np.inf, (OBS_DIM,)), _Box(-1.0, 1.0, (ACT_DIM,), seed=1),
                                  **rl_config)
    rng = np.random.default_rng(0)

    def batch() -> object:  # the keys and dtypes of jaxrl5's D4RLDataset.sample_jax
        n = 512
        return frozen_dict.freeze(jax.device_put({
            "observations": rng.standard_normal((n, OBS_DIM), dtype=np.float32),
            "actions": rng.uniform(-1 + 1e-5, 1 - 1e-5, (n, ACT_DIM)).astype(np.float32),
            "rewards": rng.standard_normal(n, dtype=np.float32),
            "masks": (rng.random(n) > 0.001).astype(np.float32), "dones": rng.random(n) < 0.001,
            "next_observations": rng.standard_normal((n, OBS_DIM), dtype=np.float32)}))

    states = rng.standard_normal((256, OBS_DIM), dtype=np.float32)  # host arrays, as an environment gives them
    acting = {"agent": agent, "i": 0, "key": jax.random.PRNGKey(1)}

    def act1() -> object:
        action, acting["agent"] = acting["agent"].eval_actions(states[acting["i"] % len(states)])
        acting["i"] += 1
        return action

    @jax.jit
    def batched_act(observations: object, key: object) -> tuple[object, object]:
        candidates = jnp.repeat(observations, agent.N, axis=0)  # state-major, as eval_actions repeats one state
        actions, key = ddpm_sampler(agent.score_model.apply_fn, agent.target_score_model.params, agent.T, key,
                                    agent.act_dim, candidates, agent.alphas, agent.alpha_hats, agent.betas,
                                    agent.ddpm_temperature, agent.M, agent.clip_sampler)
        q = compute_q(agent.target_critic.apply_fn, agent.target_critic.params, candidates, actions)
        best = jnp.argmax(q.reshape(-1, agent.N), axis=1)
        return actions.reshape(-1, agent.N, agent.act_dim)[jnp.arange(observations.shape[0]), best], key

    def act256() -> object:
        actions, acting["key"] = batched_act(jax.device_put(states), acting["key"])
        return np.asarray(actions)

    return {"agent": agent, "batches": [batch() for _ in range(4)],
            "stages": {"behavior": "actor_update", "critic": "critic_update", "whole": "update"},
            "acts": {"act1": act1, "act256": act256}}


def fql_stages(repo: str) -> dict[str, object]:
    distrax = _fail_on_use("distrax")

    class Transformed:  # a base class in utils/networks.py (for the Gaussian baselines); FQL never builds one
        def __init__(self, *args: object, **kwargs: object) -> None:
            raise RuntimeError("distrax stand-in: not needed for timing")

    distrax.Transformed = Transformed
    tqdm = types.ModuleType("tqdm")
    tqdm.trange, tqdm.tqdm = range, (lambda iterable=None, *args, **kwargs: iterable)
    sys.modules.update({"distrax": distrax, "tqdm": tqdm})
    sys.path.insert(0, repo)
    package_at("agents", os.path.join(repo, "agents"))
    import jax
    from agents.fql import FQLAgent, get_config

    config = get_config()
    config["alpha"] = 300.0
    rng = np.random.default_rng(0)

    def fields(n: int) -> dict[str, np.ndarray]:  # an OGBench singletask dataset's keys after envs/env_utils.py
        terminals = (rng.random(n) < 0.001).astype(np.float32)
        return {"observations": rng.standard_normal((n, OBS_DIM), dtype=np.float32),
                "actions": rng.uniform(-1 + 1e-5, 1 - 1e-5, (n, ACT_DIM)).astype(np.float32),
                "terminals": terminals, "rewards": rng.standard_normal(n, dtype=np.float32),
                "masks": 1.0 - terminals, "next_observations": rng.standard_normal((n, OBS_DIM), dtype=np.float32)}

    example = fields(1)
    agent = FQLAgent.create(0, example["observations"], example["actions"], config)
    return {"agent": agent, "batches": [jax.device_put(fields(config["batch_size"])) for _ in range(4)],
            "stages": {"joint": "update"}}


def main() -> None:
    method, repo = sys.argv[1], os.path.abspath(sys.argv[2])
    learner = {"idql": idql_stages, "fql": fql_stages}[method](repo)
    import jax

    state = {"agent": learner["agent"], "i": 0}
    batches = learner["batches"]

    def step(update: str) -> None:
        new_agent, info = getattr(state["agent"], update)(batches[state["i"] % len(batches)])
        jax.block_until_ready((new_agent, info))
        state["agent"], state["i"] = new_agent, state["i"] + 1

    calls = {stage: functools.partial(step, update) for stage, update in learner["stages"].items()}
    calls.update(learner.get("acts", {}))  # each returns its actions as a host numpy array: synchronous
    warm: set[str] = set()
    print(json.dumps({"ready": True, "jax": jax.__version__}), flush=True)
    for line in sys.stdin:
        stage, count = line.split()
        if stage not in warm:  # the first request of a call warms it up (its jit compile included), untimed
            for _ in range(WARMUP_STEPS):
                calls[stage]()
            warm.add(stage)
        times = []
        for _ in range(int(count)):
            started = time.perf_counter()
            calls[stage]()
            times.append((time.perf_counter() - started) * 1e3)
        print(json.dumps({"ms": times}), flush=True)


if __name__ == "__main__":
    main()
