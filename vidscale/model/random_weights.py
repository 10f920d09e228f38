"""Seeded random weights for the full-size architectures (``--model random``, ``wan-random``).

For speed and memory runs without checkpoints: what matters is that activations keep a sane scale
through the layers (no overflow in bf16, realistic kernels), not what the weights mean.
"""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def fill_random(module: nn.Module, generator: torch.Generator) -> None:
    """Fill ``module``'s parameters in place from ``generator``: N(0, 1/fan_in) for matrices and
    kernels (activations keep their scale through the layers), ones for norm scales, zeros for
    biases."""
    for name, param in module.named_parameters():
        if param.ndim >= 2:
            param.normal_(0.0, param[0].numel() ** -0.5, generator=generator)
        else:
            param.fill_(1.0 if name.endswith("weight") else 0.0)
