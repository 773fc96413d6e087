"""Training statistics summed on the device and read in one synchronization a window."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor


class StatisticsWindow:
    """Per-step statistics (0-d tensors) summed where they are, without reading them.

    A step's statistics go in with two calls: ``accumulate`` (device work only: one
    in-place add a statistic into a sum that lives as long as the window object, so a
    CUDA graph that captured it keeps adding into the same memory) and ``count`` (host
    bookkeeping, which a replayed graph cannot do). ``read`` returns each
    statistic's mean over the steps that had it (a lazily regularized penalty is in only
    some) with one device-to-host copy, and starts a new window. The window also knows its
    first and last image counts, for messages.
    """

    def __init__(self) -> None:
        self._sums: dict[str, Tensor] = {}
        self._counts: dict[str, int] = {}
        self.steps, self.first_shown, self.last_shown = 0, 0, 0

    def accumulate(self, stats: dict[str, Tensor]) -> None:
        """Adds the values into the window's sums, on the device (the sum of a new key
        starts at zero)."""
        for key, value in stats.items():
            if key not in self._sums:
                self._sums[key] = torch.zeros((), device=value.device)
            self._sums[key] += value.detach().float()

    def count(self, keys: Iterable[str], shown_before: int, shown_after: int) -> None:
        """Counts one step with the statistics named ``keys``, for the images from
        ``shown_before`` to ``shown_after``."""
        if self.steps == 0:
            self.first_shown = shown_before
        self.steps, self.last_shown = self.steps + 1, shown_after
        for key in keys:
            self._counts[key] = self._counts.get(key, 0) + 1

    def read(self) -> dict[str, float]:
        """The means since the last read ({} for an empty window); zeroes the sums in place
        and starts a new window."""
        counted = [key for key in self._sums if self._counts.get(key)]
        if not counted:
            return {}
        sums = torch.stack([self._sums[key] for key in counted]).tolist()  # one synchronization
        means = {key: total / self._counts[key] for key, total in zip(counted, sums,
                                                                      strict=True)}
        torch._foreach_zero_(list(self._sums.values()))
        self._counts.clear()
        self.steps = 0
        return means


def all_finite(stats: dict[str, float]) -> bool:
    """Whether every value is finite."""
    return all(math.isfinite(v) for v in stats.values())
