"""srpo-bench: SRPO against diffusion-based offline RL baselines, scored and timed by one harness."""

__version__ = "0.1.0"
