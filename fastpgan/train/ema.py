"""The generator's exponential moving average, used for every sample and export."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """A frozen copy of a network whose weights follow it: ema = lerp(w, ema, decay_t).

    Karras et al. 2017, appendix A.1: decay 0.999 for the generator's samples. Early on
    the decay is min(decay, (1 + t) / (10 + t)) after t updates (the warm-up of
    TensorFlow's ExponentialMovingAverage), so a short run's average is not stuck near
    the initial weights. Buffers (StyleGAN's w_avg, fixed noise maps) are copied.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA: decay must be in [0, 1), got {decay}")
        self.decay, self.updates = decay, 0
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Moves the average one step towards ``model``'s current weights."""
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        self.updates += 1
        # one foreach kernel for all the parameters (and one for the buffers), not one a
        # tensor: the EMA of a 1024x1024 generator was 54 launches a step
        averages = list(self.model.parameters())
        lives = [live.detach().to(average.dtype) for average, live in
                 zip(averages, model.parameters(), strict=True)]
        torch._foreach_lerp_(averages, lives, 1.0 - decay)
        buffers, live_buffers = list(self.model.buffers()), list(model.buffers())
        if buffers:
            torch._foreach_copy_(buffers, live_buffers)
