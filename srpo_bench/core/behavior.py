"""The VP-SDE diffusion behavior model of SRPO (thu-ml/SRPO `ScoreNet_IDQL`, `SRPO_Behavior`), as a
shared stage: SRPO regularises its policy with it, and SfBC can select from it (`behavior_source="shared"`).

    t ~ U(1e-3, 1), z ~ N(0, I), a_t = alpha_t a + sigma_t z
    L(psi) = E[ || eps_psi(a_t, t, s) - z ||^2 ]   (sum over action dims, mean over the batch)
    eps_psi: Gaussian Fourier (64, scale 30) -> MLP 64-128-128 Mish; [a_t, s, cond] -> LN-ResNet 256 x 3, Mish
    AdamW 3e-4 (torch default weight decay 0.01), batch 2048, 2M steps, dropout 0.1 on while training.
"""

from __future__ import annotations

from dataclasses import dataclass

from srpo_bench.core.diffusion import VPSDE, vpsde_denoising_loss
from srpo_bench.core.nn import GaussianFourierProjection, Mish, NoisePredictor
from srpo_bench.core.optim import adamw
from srpo_bench.core.stages import FitContext, StageConfig, train_mode
from srpo_bench.data.sampler import EpochSampler


@dataclass(frozen=True)
class VPSDEBehaviorStage(StageConfig):
    steps: int
    batch_size: int
    lr: float
    width: int = 256
    blocks: int = 3
    dropout: float = 0.1


def vpsde_behavior_model(obs_dim: int, act_dim: int, config: VPSDEBehaviorStage) -> NoisePredictor:
    return NoisePredictor(
        obs_dim, act_dim, GaussianFourierProjection(64, 30.0), 64, cond_dims=(128, 128),
        width=config.width, blocks=config.blocks, dropout=config.dropout, activation=Mish,
    )


def fit_vpsde_behavior(ctx: FitContext, stage: str = "behavior") -> NoisePredictor:
    """Train (or load) the declared VP-SDE behavior stage; returns eps_psi in eval mode (dropout off)."""
    config: VPSDEBehaviorStage = ctx.config(stage)
    tensors = ctx.dataset.tensors(ctx.device)
    sde = VPSDE()

    def train(model: NoisePredictor) -> None:
        optimizer = adamw(model.parameters(), lr=config.lr)  # torch default weight decay 0.01
        sampler = EpochSampler(tensors, config.batch_size, seed=ctx.seed)
        train_mode(model)  # dropout on while training, as the official code
        loss_of = ctx.captured(vpsde_denoising_loss)
        for step, _bar in ctx.steps(stage, config.steps):
            batch = next(sampler)
            loss = loss_of(model, batch["actions"], batch["observations"], sde)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if ctx.log_due(step, config.steps):
                ctx.log(stage, step, loss=loss)

    return ctx.fit(stage, lambda: vpsde_behavior_model(ctx.dataset.obs_dim, ctx.dataset.act_dim, config)
                   .to(ctx.device), train)
