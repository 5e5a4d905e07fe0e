"""Making datasets offline (`srpo-bench collect`): the generators behind suites that cannot be downloaded.

`lite.py` is the locomotion-lite collection (plan, per-env orchestration, `collect_suite`); `sac.py` trains its
behavior policies, `rollouts.py` turns policies into D4RL-layout episodes, `workers.py` runs envs in parallel
processes; `ogbench.py` makes OGBench's manipulation play datasets with OGBench's own oracles. Runs never import
this package: they read the files through `srpo_bench.data.lite` and `srpo_bench.data.ogbench`.
"""
