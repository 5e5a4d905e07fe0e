"""Run a policy exported by `srpo-bench export --format onnx` with nothing but onnxruntime and numpy.

    python run_policy.py policy.onnx                       # acts on one all-zero observation, prints the action
    python run_policy.py policy.onnx observations.npy      # [B, obs_dim] float32 -> prints [B, act_dim]
    python run_policy.py policy.onnx observations.npy noise.npz actions.npy   # given noise, actions saved

This file imports neither torch nor srpo_bench: copy it next to the .onnx file onto the robot. The model's
inputs are `observations` [B, obs_dim] float32 and, for a stochastic policy, `noise_0..` (the sampler's random
draws, drawn here with numpy as the metadata says: kind normal/uniform/exponential, rows = B x rows_per_state);
its output is `actions` [B, act_dim] in the action box. The metadata key `srpo_bench` (JSON) holds the
observation and action specs and the provenance (method, task, seed, config, stage keys, commits).
"""

from __future__ import annotations

import json
import sys

import numpy as np
import onnxruntime as ort


class Policy:
    """An exported policy: `policy(observations)` -> actions; `policy.spec` is the exported metadata."""

    def __init__(self, path: str, seed: int = 0, threads: int = 1) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.spec = json.loads(self.session.get_modelmeta().custom_metadata_map["srpo_bench"])
        self.rng = np.random.default_rng(seed)

    def noise(self, batch: int) -> dict[str, np.ndarray]:
        """One act's random draws for `batch` observations, as the metadata describes them."""
        draws = {}
        for item in self.spec["noise"]:
            shape = (batch * item["rows_per_state"], *item["shape"][1:])
            if item["kind"] == "normal":
                draws[item["name"]] = self.rng.standard_normal(shape, dtype=np.float32)
            elif item["kind"] == "uniform":
                draws[item["name"]] = self.rng.random(shape, dtype=np.float32)
            else:
                draws[item["name"]] = self.rng.standard_exponential(shape, dtype=np.float32)
        return draws

    def __call__(self, observations: np.ndarray, noise: dict[str, np.ndarray] | None = None) -> np.ndarray:
        observations = np.ascontiguousarray(observations, dtype=np.float32).reshape(-1, self.spec["observation"]["dim"])
        inputs = {"observations": observations, **(noise if noise is not None else self.noise(len(observations)))}
        return self.session.run(["actions"], inputs)[0]


def main(argv: list[str]) -> None:
    if not 1 <= len(argv) <= 4:
        sys.exit("usage: run_policy.py POLICY.onnx [OBSERVATIONS.npy [NOISE.npz [ACTIONS.npy]]]")
    policy = Policy(argv[0])
    spec = policy.spec
    observations = np.load(argv[1]) if len(argv) > 1 else np.zeros((1, spec["observation"]["dim"]), np.float32)
    noise = dict(np.load(argv[2])) if len(argv) > 2 else None
    actions = policy(observations, noise)
    if len(argv) > 3:
        np.save(argv[3], actions)
    print(f"{spec['method']} on {spec['task']} (seed {spec['seed']}): {len(actions)} action(s) of dim "
          f"{actions.shape[1]}")
    print(np.array2string(actions, precision=5))


if __name__ == "__main__":
    main(sys.argv[1:])
