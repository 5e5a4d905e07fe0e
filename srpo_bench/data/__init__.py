"""Offline datasets: D4RL hdf5, Minari, our collected lite suite, OGBench .npz files and the toy bandits."""

from srpo_bench.data.dataset import DatasetError, OfflineDataset

__all__ = ["DatasetError", "OfflineDataset"]
