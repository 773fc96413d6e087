"""Training statistics summed on the device and read in one synchronization a window."""

from __future__ import annotations

import math

import torch
from torch import Tensor


class StatisticsWindow:
    """Per-step statistics (0-d tensors) summed where they are, without reading them.

    ``add`` costs one in-place add per statistic and never waits for the device;
    ``read`` returns each statistic's mean over the steps that had it (a lazily
    regularized penalty is in only some) with one device-to-host copy, and starts a new
    window. The window also knows its first and last image counts, for messages.
    """

    def __init__(self) -> None:
        self._sums: dict[str, Tensor] = {}
        self._counts: dict[str, int] = {}
        self.steps, self.first_shown, self.last_shown = 0, 0, 0

    def add(self, stats: dict[str, Tensor], shown_before: int, shown_after: int) -> None:
        """One step's statistics, for the images from ``shown_before`` to ``shown_after``."""
        if self.steps == 0:
            self.first_shown = shown_before
        self.steps, self.last_shown = self.steps + 1, shown_after
        for key, value in stats.items():
            value = value.detach().float()
            if key in self._sums:
                self._sums[key] += value
            else:
                self._sums[key] = value.clone()
            self._counts[key] = self._counts.get(key, 0) + 1

    def read(self) -> dict[str, float]:
        """The means since the last read ({} for an empty window); starts a new window."""
        if not self._sums:
            return {}
        sums = torch.stack(list(self._sums.values())).tolist()  # the one synchronization
        means = {key: total / self._counts[key] for key, total in zip(self._sums, sums,
                                                                      strict=True)}
        self._sums.clear()
        self._counts.clear()
        self.steps = 0
        return means


def all_finite(stats: dict[str, float]) -> bool:
    """Whether every value is finite."""
    return all(math.isfinite(v) for v in stats.values())
