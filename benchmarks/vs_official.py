"""Our training stages against the official code, interleaved on one core, per stage.

    git clone https://github.com/thu-ml/SRPO                                       # b3b916a timed here
    git clone https://github.com/Zhendong-Wang/Diffusion-Policies-for-Offline-RL   # d871f5c
    git clone https://github.com/philippe-eecs/IDQL                                # 7582571 (JAX)
    git clone https://github.com/seohongpark/fql                                   # 719d044 (JAX)
    git clone https://github.com/ChenDRAG/SfBC                                     # d384e9f
    taskset -c 0 python benchmarks/vs_official.py srpo PATH/TO/SRPO [--rounds 10]
    taskset -c 0 python benchmarks/vs_official.py diffusion-ql PATH/TO/Diffusion-Policies-for-Offline-RL
    taskset -c 0 python benchmarks/vs_official.py sfbc PATH/TO/SfBC
    taskset -c 0 python benchmarks/vs_official.py idql PATH/TO/IDQL --python JAX_VENV/bin/python
    taskset -c 0 python benchmarks/vs_official.py fql PATH/TO/fql --python JAX_VENV/bin/python
    taskset -c 0 python benchmarks/vs_official.py idql PATH/TO/IDQL --python JAX_VENV/bin/python --acting

One torch thread, one pinned core: our real stage code (benchmarks/train_steps.py's `train`, paper profile,
training levers on, on the lite Hopper medium-replay data) pauses at chunk boundaries of each stage, and the
official update runs a chunk of the same number of steps there with the official batch sizes and settings;
both sides are timed per step and the ratio is taken per round (this machine's speed drifts by 10-20% between
minutes, so only side-by-side ratios mean anything). The PyTorch officials run in this process on the same
dataset arrays, imported from the given checkout unmodified: the imports they need but never use here (d4rl,
gym, wandb) are stubbed and their hard-coded "cuda" placements go to the CPU while they build their networks.
The JAX officials run in a worker process with their own venv (benchmarks/official_jax_worker.py: how to make
it, and what each official step is), pinned to the same core, alternating with ours chunk by chunk.

What each official step is, per our stage:
  srpo behavior      sample(2048) + SRPO_Behavior.update_behavior (train_behavior.py's loop body); sample is
                     D4RL_dataset.sample redone here (`ShuffledSlices`: the official class loads through d4rl):
                     a slice of the shuffled arrays, reshuffled each epoch
  srpo critic        sample(256) + IQL_Critic.update_q0 (the IQL update of SRPO_IQL.update_iql; its extra
                     deterministic-policy step, "evaluate iql policy part, can be deleted", is left out as our
                     stage has no such step)
  srpo policy        sample(256) + SRPO.update_SRPO_policy (hopper-medium-replay: beta from the official
                     temperature table, 'VDS' weighting, 2-layer policy)
  diffusion-ql joint Diffusion_QL.train(Data_Sampler, iterations=chunk, batch_size=256) with main.py's
                     hopper-medium-replay settings (T=5 'vp', eta 1.0, grad norm 4.0, lr decay over 2000)
  sfbc behavior      one batch of the official DataLoader(Diffusion_buffer, 4096, shuffle=True) + loss_fn on the
                     U-MLP ScoreNet + Adam 1e-4 (train_behavior.py's loop body)
  sfbc critic        one batch of the same loader + the Q regression on the returns column + Adam 1e-3
                     (train_critic.py's loop body; the small 2 x 256 SiLU critic of locomotion)
  (SfBC's returns planning pass is setup on both sides and is not timed; the official loader's per-row Python
  indexing and collation are part of its step, as they are of every official training run)
  idql behavior      DDPMIQLLearner.actor_update, batch 512 (pre-built batches: no minibatch draw)
  idql critic        DDPMIQLLearner.critic_update, batch 512 (idem)
  idql whole         DDPMIQLLearner.update, batch 512 (idem): the official loop's step, actor, V and Q updates
                     in one jit, timed a chunk after each stage chunk, against the sum of our two stages' medians
                     (our stages train one after the other, each drawing its own minibatches)
  fql joint          FQLAgent.update, batch 256 (idem)

`--acting` (IDQL) times acts instead, in rounds: the official act at 1 and 256 states (the worker's act1: the
official `eval_actions`; act256: one jitted act composed of the official sampler and Q, as the official code has
no batched act) against our agent's act in each runtime (eager, compiled, onnx: `srpo-bench speed --runtime`),
on dataset states, an official chunk then ours for each runtime in each round. Our agent is the paper configuration
trained for 20 steps per stage (the official network sizes; timing does not depend on the weights).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable, Iterator

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_steps  # noqa: E402
from official_jax_worker import package_at  # noqa: E402

from srpo_bench.core import stages  # noqa: E402
from srpo_bench.runtimes import prepare  # noqa: E402
from srpo_bench.tasks import get_task  # noqa: E402

TASK = "lite-hopper-medium-replay-v0"
OFFICIAL_TASK = "hopper-medium-replay-v2"
# per (method, stage): the setting that counts its steps, and the steps per chunk (about a second of work)
STAGE_STEPS = {("srpo", "behavior"): "behavior_steps", ("srpo", "critic"): "critic_steps",
               ("srpo", "policy"): "policy_steps", ("diffusion-ql", "joint"): "steps",
               ("idql", "behavior"): "actor_steps", ("idql", "critic"): "critic_steps", ("fql", "joint"): "steps",
               ("sfbc", "behavior"): "behavior_steps", ("sfbc", "critic"): "critic_steps_per_epoch"}
# the officials whose training loop runs our stages' updates as one jitted step: timed as well, a chunk after
# each official stage chunk, against the sum of our stages' per-step times
WHOLE_STEP = {"idql": ("behavior", "critic")}
CHUNKS = {("srpo", "behavior"): 4, ("srpo", "critic"): 60, ("srpo", "policy"): 30, ("diffusion-ql", "joint"): 10,
          ("idql", "behavior"): 8, ("idql", "critic"): 30, ("fql", "joint"): 5, ("sfbc", "behavior"): 3,
          ("sfbc", "critic"): 10}
# the official acts the JAX worker times, per number of states; and the acts per chunk (about a second at one state;
# one act of 256 states takes seconds)
ACTS = {"idql": {1: "act1", 256: "act256"}}
ACT_CALLS = {1: 50, 256: 1}
RUNTIMES = ("eager", "compiled", "onnx")
# settings fixed for the timing on our side, besides the step counts (SfBC: one critic epoch per iteration, and
# the planning pass on 256 states, as in benchmarks/train_steps.py)
FIXED_SETTINGS = {"sfbc": {"critic_epochs_per_iteration": "1", "planning_states": "256"}}
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "official_jax_worker.py")


@contextlib.contextmanager
def cuda_to_cpu() -> Iterator[None]:
    """While the official code builds its networks: `.to("cuda")` (hard-coded in places) goes to the CPU."""
    original = torch.nn.Module.to

    def to(self: torch.nn.Module, *args: object, **kwargs: object) -> torch.nn.Module:
        args = tuple("cpu" if isinstance(a, str) and a.startswith("cuda") else a for a in args)
        return original(self, *args, **kwargs)

    torch.nn.Module.to = to  # type: ignore[method-assign]
    try:
        yield
    finally:
        torch.nn.Module.to = original  # type: ignore[method-assign]


def stub_modules(*names: str) -> None:
    for name in names:
        sys.modules.setdefault(name, types.ModuleType(name))


class ShuffledSlices:
    """SRPO's `D4RL_dataset.sample`: consecutive slices of the shuffled arrays, reshuffled when they run out."""

    def __init__(self, arrays: dict[str, torch.Tensor]) -> None:
        self.arrays, self.length, self.index = arrays, len(arrays["s"]), 0

    def sample(self, batch_size: int) -> dict[str, torch.Tensor]:
        if self.index + batch_size > self.length:
            self.index = 0
        if self.index == 0:
            order = torch.randperm(self.length)
            self.arrays = {key: value[order] for key, value in self.arrays.items()}
        batch = {key: value[self.index:self.index + batch_size] for key, value in self.arrays.items()}
        self.index += batch_size
        return batch


def dataset_arrays() -> dict[str, np.ndarray]:
    data = get_task(TASK).load()
    return {"observations": data.observations, "actions": data.actions, "next_observations": data.next_observations,
            "rewards": data.rewards, "terminals": data.terminals}


def timed(steps: Callable[[int], object]) -> Callable[[int], float]:
    """`steps(n)` runs n official steps; the result runs them and returns the milliseconds per step."""
    def run(n: int) -> float:
        started = time.perf_counter()
        steps(n)
        return (time.perf_counter() - started) / n * 1e3
    return run


def official_srpo(repo: str, python: str | None) -> dict[str, Callable[[int], float]]:
    stub_modules("d4rl", "gym", "wandb")
    sys.path.insert(0, repo)
    from SRPO import SRPO, SRPO_IQL, SRPO_Behavior  # the official modules
    from utils import marginal_prob_std, temperature_coefficients

    data = dataset_arrays()
    obs_dim, act_dim = data["observations"].shape[1], data["actions"].shape[1]
    args = argparse.Namespace(env=OFFICIAL_TASK, device="cpu", actor_blocks=3, q_layer=2, policy_layer=2,
                              n_policy_epochs=100, WT="VDS", regq=0, beta=temperature_coefficients[OFFICIAL_TASK])
    std_fn = functools.partial(marginal_prob_std, device="cpu", beta_1=20.0)
    sampler = ShuffledSlices({"s": torch.from_numpy(data["observations"]).float(),
                              "a": torch.from_numpy(data["actions"]).float(),
                              "r": torch.from_numpy(data["rewards"]).float().reshape(-1, 1),
                              "s_": torch.from_numpy(data["next_observations"]).float(),
                              "d": torch.from_numpy(data["terminals"]).float().reshape(-1, 1)})
    with cuda_to_cpu(), contextlib.redirect_stdout(None):  # IQL_Critic prints its settings
        behavior = SRPO_Behavior(obs_dim + act_dim, act_dim, std_fn, args=args)
        critic = SRPO_IQL(obs_dim + act_dim, act_dim, args=args).q[0]
        policy = SRPO(obs_dim + act_dim, act_dim, std_fn, args=args)

    def run(update: Callable[[dict[str, torch.Tensor]], object], batch_size: int) -> Callable[[int], float]:
        def steps(n: int) -> None:
            for _ in range(n):
                update(sampler.sample(batch_size))
        return timed(steps)

    return {"behavior": run(behavior.update_behavior, 2048), "critic": run(critic.update_q0, 256),
            "policy": run(policy.update_SRPO_policy, 256)}


def official_diffusion_ql(repo: str, python: str | None) -> dict[str, Callable[[int], float]]:
    sys.path.insert(0, repo)
    from agents.ql_diffusion import Diffusion_QL  # the official modules
    from utils.data_sampler import Data_Sampler

    data = dataset_arrays()
    buffer = Data_Sampler(data, "cpu", reward_tune="no")  # main.py's hopper-medium-replay: reward_tune 'no'
    agent = Diffusion_QL(state_dim=buffer.state_dim, action_dim=buffer.action_dim, max_action=1.0, device="cpu",
                         discount=0.99, tau=0.005, max_q_backup=False, beta_schedule="vp", n_timesteps=5, eta=1.0,
                         lr=3e-4, lr_decay=True, lr_maxt=2000, grad_norm=4.0)
    return {"joint": timed(lambda n: agent.train(buffer, iterations=n, batch_size=256))}


def official_sfbc(repo: str, python: str | None) -> dict[str, Callable[[int], float]]:
    stub_modules("d4rl", "gym")
    sys.path.insert(0, repo)
    package_at("dataset", os.path.join(repo, "dataset"))  # its __init__ builds a gym toy environment: skip it
    from dataset.dataset import Diffusion_buffer  # the official modules
    from diffusion_SDE.loss import loss_fn
    from diffusion_SDE.model import ScoreNet
    from diffusion_SDE.schedule import marginal_prob_std
    from torch.utils.data import DataLoader

    data = dataset_arrays()
    states, actions = data["observations"].astype(np.float32), data["actions"].astype(np.float32)
    obs_dim, act_dim = states.shape[1], actions.shape[1]

    def buffer(samples_per_epoch: int) -> object:
        """The official Diffusion_buffer without its d4rl loading: the attributes __getitem__/__len__ read, with
        the lite dataset's states and actions (the returns column is random: its values cost nothing)."""
        rows = Diffusion_buffer.__new__(Diffusion_buffer)
        returns = np.random.default_rng(0).standard_normal((len(states), 1)).astype(np.float32)
        rows.ys, rows.states, rows.len = np.concatenate([returns, actions], axis=-1), states, len(states)
        rows.fake_len = int(np.maximum(np.round(samples_per_epoch / rows.len), 1)) * rows.len
        return rows

    def batches(samples_per_epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        loader = DataLoader(buffer(samples_per_epoch), batch_size=4096, shuffle=True)
        while True:
            yield from loader

    args = argparse.Namespace(device="cpu", critic_type="small")
    std_fn = functools.partial(marginal_prob_std, sigma=40.0, device="cpu")
    model = ScoreNet(input_dim=obs_dim + act_dim, output_dim=act_dim, marginal_prob_std=std_fn, args=args)
    behavior_optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    critic_optimizer = torch.optim.Adam(model.q[0].parameters(), lr=1e-3)
    behavior_batches, critic_batches = batches(4_000_000), batches(1_000_000)  # sample_per_epoch of each script

    def behavior_steps(n: int) -> None:
        for _ in range(n):
            x, condition = next(behavior_batches)
            x = x[:, 1:]
            model.condition = condition
            loss = loss_fn(model, x, std_fn)
            behavior_optimizer.zero_grad()
            loss.backward()
            behavior_optimizer.step()
            model.condition = None

    def critic_steps(n: int) -> None:
        for _ in range(n):
            x, condition = next(critic_batches)
            loss = torch.mean((model.calculateQ(condition, x[:, 1:]) - x[:, :1]) ** 2)
            critic_optimizer.zero_grad()
            loss.backward()
            critic_optimizer.step()
            model.condition = None

    return {"behavior": timed(behavior_steps), "critic": timed(critic_steps)}


def official_jax(method: str) -> Callable[[str, str | None], dict[str, Callable[[int], float]]]:
    def start(repo: str, python: str | None) -> dict[str, Callable[[int], float]]:
        if python is None:
            raise SystemExit(f"{method}: the official code is JAX; pass --python JAX_VENV/bin/python "
                             f"(see benchmarks/official_jax_worker.py)")
        worker = subprocess.Popen([python, WORKER, method, repo], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True)

        def reply() -> dict[str, object]:
            for line in worker.stdout:  # type: ignore[union-attr]
                if line.startswith("{"):
                    return json.loads(line)
            raise SystemExit(f"{method}: the official worker exited (code {worker.wait()})")

        reply()  # ready: the learner is built (each stage or act is warmed up when first asked for)

        def run(stage: str) -> Callable[[int], float]:
            def steps(n: int) -> float:
                worker.stdin.write(f"{stage} {n}\n")  # type: ignore[union-attr]
                worker.stdin.flush()  # type: ignore[union-attr]
                milliseconds = reply()["ms"]
                return statistics.fmean(milliseconds)  # type: ignore[arg-type]
            return steps

        timed = [stage for (m, stage) in STAGE_STEPS if m == method] + (["whole"] if method in WHOLE_STEP else [])
        return {stage: run(stage) for stage in [*timed, *ACTS.get(method, {}).values()]}
    return start


OFFICIALS = {"srpo": official_srpo, "diffusion-ql": official_diffusion_ql, "sfbc": official_sfbc,
             "idql": official_jax("idql"), "fql": official_jax("fql")}


def interleave(method: str, officials: dict[str, Callable[[int], float]], rounds: int, warmup: int
               ) -> dict[str, dict[str, list[float]]]:
    """Per stage: our per-step ms and the official's, chunk by chunk, and the per-round ratio official/ours."""
    results: dict[str, dict[str, list[float]]] = {}
    original = stages.FitContext.steps

    def steps(self: stages.FitContext, stage: str, total: int, agent: object = None) -> Iterator[object]:
        official, chunk = officials.get(stage), CHUNKS.get((method, stage), 0)
        record = results.setdefault(stage, {"official": [], "ours": [], "ratio": []})
        whole = officials.get("whole")
        started = time.perf_counter()
        for index, item in enumerate(original(self, stage, total, agent)):
            if official is not None and index >= warmup and (index - warmup) % chunk == 0:
                ours = (time.perf_counter() - started) / chunk * 1e3
                if index > warmup:
                    record["ours"].append(ours)
                else:
                    official(warmup)  # the official's warm-up steps
                theirs = official(chunk)
                if index > warmup:
                    record["official"].append(theirs)
                    record["ratio"].append(theirs / ours)
                if whole is not None and index > warmup:
                    results.setdefault("whole", {"official": [], "ours": [], "ratio": []})["official"].append(
                        whole(chunk))
                started = time.perf_counter()
            yield item

    stages.FitContext.steps = steps  # type: ignore[method-assign]
    try:
        overrides = {STAGE_STEPS[method, stage]: str(warmup + rounds * chunk + 1)
                     for (m, stage), chunk in CHUNKS.items() if m == method} | FIXED_SETTINGS.get(method, {})
        train_steps.train(TASK, method, 0, levers=True, overrides=overrides)
    finally:
        stages.FitContext.steps = original  # type: ignore[method-assign]
    whole_record = results.get("whole")
    if whole_record is not None and all(results.get(stage, {}).get("ours") for stage in WHOLE_STEP[method]):
        whole_record["ours"] = [sum(statistics.median(results[stage]["ours"]) for stage in WHOLE_STEP[method])]
        whole_record["ratio"] = [statistics.median(whole_record["official"]) / whole_record["ours"][0]]
    return {stage: record for stage, record in results.items() if record["ratio"]}


def interleave_acting(method: str, officials: dict[str, Callable[[int], float]], rounds: int
                      ) -> dict[tuple[int, str], dict[str, list[float]]]:
    """Per (states, runtime): the official act's ms and ours, a chunk each in turn, and the per-round ratio. Ours:
    the paper configuration (official network and sampler sizes) trained for 20 steps per stage."""
    ctx, agent = train_steps.fit_paper(TASK, method, train_steps.step_overrides(method, 20))
    observations = ctx.dataset.observations
    rng = np.random.default_rng(0)
    batches = {size: torch.as_tensor(observations[rng.integers(0, len(observations), size)], dtype=torch.float32)
               for size in ACTS[method]}
    acting = {runtime: prepare(agent, runtime, observations.shape[1], tuple(batches)) for runtime in RUNTIMES}

    def ours(runtime: str, size: int) -> float:
        with torch.inference_mode():
            started = time.perf_counter()
            for _ in range(ACT_CALLS[size]):
                acting[runtime].act(batches[size])
            return (time.perf_counter() - started) / ACT_CALLS[size] * 1e3

    for runtime in RUNTIMES:  # warm-up: first calls (compiles for the compiled runtime, at each size)
        for size in batches:
            ours(runtime, size)
    results: dict[tuple[int, str], dict[str, list[float]]] = {}
    for _ in range(rounds):
        for size, official in ACTS[method].items():
            for runtime in RUNTIMES:  # an official chunk, then ours: each pair side by side
                record = results.setdefault((size, runtime), {"official": [], "ours": [], "ratio": []})
                theirs = officials[official](ACT_CALLS[size])
                mine = ours(runtime, size)
                record["official"].append(theirs)
                record["ours"].append(mine)
                record["ratio"].append(theirs / mine)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("method", choices=sorted(OFFICIALS))
    parser.add_argument("repo", help="a checkout of the official repository")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--python", help="the JAX venv's python, for the JAX officials (idql, fql)")
    parser.add_argument("--acting", action="store_true", help="time acts instead of training steps (idql)")
    args = parser.parse_args()
    if args.acting and args.method not in ACTS:
        parser.error(f"--acting: the official acts are timed for {', '.join(ACTS)} only")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    officials = OFFICIALS[args.method](os.path.abspath(args.repo), args.python)
    print(f"load before: {os.getloadavg()}, affinity: {sorted(os.sched_getaffinity(0))}, "
          f"{time.strftime('%Y-%m-%d %H:%M:%S')}", flush=True)
    if args.acting:
        acting = interleave_acting(args.method, officials, args.rounds)
        print(f"load after: {os.getloadavg()}, {time.strftime('%H:%M:%S')}")
        print(f"{'method':13s} {'states':>6s} {'runtime':9s} {'official ms':>12s} {'ours ms':>9s} "
              f"{'official/ours (median, range)':>30s}")
        for (size, runtime), record in acting.items():
            ratio = record["ratio"]
            print(f"{args.method:13s} {size:6d} {runtime:9s} {statistics.median(record['official']):12.2f} "
                  f"{statistics.median(record['ours']):9.2f} {statistics.median(ratio):11.2f}x "
                  f"({min(ratio):.2f}-{max(ratio):.2f}, {len(ratio)} rounds)")
        return
    results = interleave(args.method, officials, args.rounds, args.warmup)
    print(f"load after: {os.getloadavg()}, {time.strftime('%H:%M:%S')}")
    print(f"{'method':13s} {'stage':9s} {'official ms':>12s} {'ours ms':>8s} {'official/ours (median, range)':>30s}")
    for stage, record in results.items():
        ratio = record["ratio"]
        if stage == "whole":  # one ratio: of the official's median to the sum of our stages' medians
            print(f"{args.method:13s} {stage:9s} {statistics.median(record['official']):12.1f} "
                  f"{record['ours'][0]:8.1f} {ratio[0]:11.2f}x (medians: the official update(), our "
                  f"{' + '.join(WHOLE_STEP[args.method])})")
            continue
        print(f"{args.method:13s} {stage:9s} {statistics.median(record['official']):12.1f} "
              f"{statistics.median(record['ours']):8.1f} {statistics.median(ratio):11.2f}x "
              f"({min(ratio):.2f}-{max(ratio):.2f}, {len(ratio)} rounds)")


if __name__ == "__main__":
    main()
