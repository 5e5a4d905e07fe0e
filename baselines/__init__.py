"""Baselines compared with SRPO, one file per method, each on the shared parts in `srpo_bench`."""
