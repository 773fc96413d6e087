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
    the initial weights. With ``half_life_kimg`` it is NVlabs' StyleGAN2-ADA schedule
    instead: decay 0.5 ** (batch / half-life in images), the half-life at most ``rampup``
    times the images shown so far when a ramp-up is given. Buffers (StyleGAN's w_avg,
    fixed noise maps) are copied.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, *,
                 half_life_kimg: float | None = None, rampup: float | None = None) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA: decay must be in [0, 1), got {decay}")
        if any(v is not None and v <= 0 for v in (half_life_kimg, rampup)):
            raise ValueError(f"EMA: half_life_kimg and rampup must be > 0, got "
                             f"{half_life_kimg} and {rampup}")
        self.decay, self.updates = decay, 0
        self.half_life_kimg, self.rampup = half_life_kimg, rampup
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self._step: torch.Tensor | None = None  # this update's weight, 1 - decay_t

    @torch.no_grad()
    def update(self, model: nn.Module, batch: int = 1, shown: int = 0) -> None:
        """Moves the average one step towards ``model``'s current weights (after a
        minibatch of ``batch`` images, ``shown`` before it)."""
        self.advance(batch, shown)
        self.follow(model)

    def decay_at(self, batch: int, shown: int) -> float:
        """This update's decay: the warm-up's, or NVlabs' half-life schedule's."""
        if self.half_life_kimg is None:
            return min(self.decay, (1 + self.updates) / (10 + self.updates))
        half_life = self.half_life_kimg * 1000
        if self.rampup is not None:
            half_life = min(half_life, shown * self.rampup)
        return 0.5 ** (batch / max(half_life, 1e-8))

    def advance(self, batch: int = 1, shown: int = 0) -> None:
        """Host half of an update: counts it and sets this update's weight, a device 0-d
        tensor, so that ``follow`` (which a CUDA graph may replay) reads it as data."""
        decay = self.decay_at(batch, shown)
        self.updates += 1
        device = next(self.model.parameters()).device
        if self._step is None or self._step.device != device:
            self._step = torch.zeros((), device=device)
        self._step.fill_(1.0 - decay)

    @torch.no_grad()
    def follow(self, model: nn.Module) -> None:
        """Device half of an update: averages += step * (live - averages), three foreach
        kernels for all the parameters (one a tensor was 54 launches at 1024x1024; a
        foreach lerp takes its weight from the host only), and the buffers copied."""
        averages = list(self.model.parameters())
        lives = [live.detach().to(average.dtype) for average, live in
                 zip(averages, model.parameters(), strict=True)]
        moves = torch._foreach_sub(lives, averages)
        torch._foreach_mul_(moves, self._step)
        torch._foreach_add_(averages, moves)
        buffers, live_buffers = list(self.model.buffers()), list(model.buffers())
        if buffers:
            torch._foreach_copy_(buffers, live_buffers)
