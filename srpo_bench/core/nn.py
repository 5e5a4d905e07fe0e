"""Networks shared by the methods: MLPs, time embeddings, the LN-ResNet denoiser, the tanh policy.

Sizes default to the official ones (ALGORITHMS.md 1.1, 4.2); every method passes its own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


def mlp(
    input_dim: int,
    hidden_dims: Sequence[int],
    output_dim: int,
    activation: type[nn.Module] = nn.ReLU,
    output_activation: type[nn.Module] | None = None,
    input_layer_norm: bool = False,
    layer_norm_eps: float = 1e-5,
) -> nn.Sequential:
    """Linear layers with `activation` between them; optional LayerNorm on the input (IDQL's V net)."""
    layers: list[nn.Module] = [nn.LayerNorm(input_dim, eps=layer_norm_eps)] if input_layer_norm else []
    widths = [input_dim, *hidden_dims]
    for fan_in, fan_out in zip(widths[:-1], widths[1:], strict=True):
        layers += [nn.Linear(fan_in, fan_out), activation()]
    layers.append(nn.Linear(widths[-1], output_dim))
    if output_activation is not None:
        layers.append(output_activation())
    return nn.Sequential(*layers)


# --- time embeddings ------------------------------------------------------------------------------
class GaussianFourierProjection(nn.Module):
    """[sin(2 pi t W), cos(2 pi t W)] with W ~ N(0, scale^2) frozen (SRPO/SfBC: embed 64, scale 30).

    W is a buffer, so it is saved in checkpoints like the official frozen `nn.Parameter`.
    """

    def __init__(self, embed_dim: int = 64, scale: float = 30.0) -> None:
        super().__init__()
        self.register_buffer("weights", torch.randn(embed_dim // 2) * scale)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        projected = t.reshape(-1, 1) * self.weights[None, :] * (2 * math.pi)
        return torch.cat([torch.sin(projected), torch.cos(projected)], dim=-1)


class LearnableFourierFeatures(nn.Module):
    """IDQL's time features: a learnable kernel W ~ N(0, 0.2^2) of shape [dim/2, 1], [cos(2 pi t W), sin(...)]."""

    def __init__(self, embed_dim: int = 128, init_std: float = 0.2) -> None:
        super().__init__()
        self.kernel = nn.Parameter(torch.randn(embed_dim // 2, 1) * init_std)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        projected = 2 * math.pi * t.reshape(-1, 1) @ self.kernel.T
        return torch.cat([torch.cos(projected), torch.sin(projected)], dim=-1)


class SinusoidalTimeEmbedding(nn.Module):
    """Transformer-style sinusoidal embedding of a (discrete) step index (Diffusion-QL: dim 16)."""

    def __init__(self, embed_dim: int = 16) -> None:
        super().__init__()
        half = embed_dim // 2
        frequencies = torch.exp(torch.arange(half) * -(math.log(10000.0) / (half - 1)))
        self.register_buffer("frequencies", frequencies)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        arguments = t.reshape(-1, 1).float() * self.frequencies[None, :]
        return torch.cat([torch.sin(arguments), torch.cos(arguments)], dim=-1)


# --- the LN-ResNet (SRPO's behavior model, IDQL's score network) -------------------------------------
class LNResidualBlock(nn.Module):
    """x + Linear(act(Linear(LayerNorm(Dropout(x))))) with a 4x wide hidden layer (IDQL's MLPResNetBlock)."""

    def __init__(self, width: int, dropout: float, activation: type[nn.Module], layer_norm_eps: float = 1e-5) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Dropout(dropout),
            nn.LayerNorm(width, eps=layer_norm_eps),
            nn.Linear(width, 4 * width),
            activation(),
            nn.Linear(4 * width, width),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class LNResNet(nn.Module):
    """Linear(in -> width) -> `blocks` LN residual blocks -> act -> Linear(width -> out)."""

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        width: int = 256,
        blocks: int = 3,
        dropout: float = 0.1,
        activation: type[nn.Module] = nn.Mish,
        layer_norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.input = nn.Linear(input_dim, width)
        self.blocks = nn.Sequential(*[LNResidualBlock(width, dropout, activation, layer_norm_eps)
                                      for _ in range(blocks)])
        self.output = nn.Sequential(activation(), nn.Linear(width, output_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.blocks(self.input(x)))


class NoisePredictor(nn.Module):
    """eps(a_t, t, s): time embedding -> conditioning MLP, concatenated with (a_t, s), into an LN-ResNet.

    SRPO (`ScoreNet_IDQL`): Gaussian Fourier (64, scale 30) -> MLP 64-128-128 Mish; LN-ResNet 256 x 3, Mish.
    IDQL (`DDPM` + `MLPResNet`): learnable Fourier (128) -> MLP 128-256-256 swish; LN-ResNet 256 x 3, swish.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        time_embedding: nn.Module,
        time_embed_dim: int,
        cond_dims: Sequence[int] = (128, 128),
        width: int = 256,
        blocks: int = 3,
        dropout: float = 0.1,
        activation: type[nn.Module] = nn.Mish,
        layer_norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.time_embedding = time_embedding
        self.cond = mlp(time_embed_dim, cond_dims[:-1], cond_dims[-1], activation=activation)
        self.resnet = LNResNet(act_dim + obs_dim + cond_dims[-1], act_dim, width, blocks, dropout, activation,
                               layer_norm_eps)

    def forward(self, noisy_actions: torch.Tensor, t: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        cond = self.cond(self.time_embedding(t))
        return self.resnet(torch.cat([noisy_actions, states, cond], dim=-1))


class DeterministicPolicy(nn.Module):
    """a = tanh(MLP(s)) (SRPO's `Dirac_Policy`: 2 x 256 ReLU locomotion, 4 x 256 antmaze)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 256, layers: int = 2) -> None:
        super().__init__()
        self.net = mlp(obs_dim, [hidden] * layers, act_dim, activation=nn.ReLU, output_activation=nn.Tanh)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.net(states)


# --- Flax's initialisation, for methods whose official code is JAX/Flax (IDQL) ---------------------------
FLAX_TRUNCATED_NORMAL_STD = 0.87962566103423978  # std of N(0, 1) truncated to [-2, 2] (jax.nn.initializers)


def lecun_normal_(weight: torch.Tensor) -> None:
    """Flax `nn.Dense` default kernel init: variance 1 / fan_in, truncated normal (jax `lecun_normal`)."""
    std = math.sqrt(1.0 / weight.shape[1]) / FLAX_TRUNCATED_NORMAL_STD
    nn.init.trunc_normal_(weight, mean=0.0, std=std, a=-2.0 * std, b=2.0 * std)


@torch.no_grad()
def flax_initialize(module: nn.Module) -> nn.Module:
    """jaxrl5's initialisation: every Linear xavier-uniform (`default_init` of its MLPs and of MLPResNet's input
    and output Dense), except the Dense layers inside the LN-ResNet blocks, which keep flax's lecun-normal
    default; all biases zero (flax's default)."""
    in_blocks = {id(layer) for block in module.modules() if isinstance(block, LNResidualBlock)
                 for layer in block.modules() if isinstance(layer, nn.Linear)}
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            if id(layer) in in_blocks:
                lecun_normal_(layer.weight)
            else:
                nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
    return module


def polyak_update(target: nn.Module, source: nn.Module, rate: float) -> None:
    """target <- (1 - rate) target + rate source, in place (targets for critics, EMA actors)."""
    with torch.no_grad():
        for t_param, s_param in zip(target.parameters(), source.parameters(), strict=True):
            t_param.lerp_(s_param, rate)
