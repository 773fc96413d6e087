"""The progressive schedule (Karras et al. 2017, section 3 and appendix A.1): 4x4 first,
then for each new resolution a fade-in phase (alpha rising linearly from 0 to 1) and a
stabilization phase, each measured in real images shown, with a minibatch per resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

# Minibatch per resolution. "paper": appendix A.1 (16 up to 128^2, then 14, 6, 3).
# "official": the official code's single-GPU preset, 12,000 kimg in all to 1024^2.
BATCH_SCHEDULES = {
    "paper": {4: 16, 8: 16, 16: 16, 32: 16, 64: 16, 128: 16, 256: 14, 512: 6, 1024: 3},
    "official": {4: 128, 8: 128, 16: 128, 32: 64, 64: 32, 128: 16, 256: 8, 512: 4, 1024: 4},
}


@dataclass(frozen=True)
class Phase:
    """One phase: images [start, start + length) are shown at ``resolution``."""

    index: int
    resolution: int
    fading: bool
    start: int
    length: int
    batch: int

    @property
    def end(self) -> int:
        """The image count at which the phase ends."""
        return self.start + self.length

    @property
    def name(self) -> str:
        """e.g. "16x16 fade-in"."""
        return f"{self.resolution}x{self.resolution} {'fade-in' if self.fading else 'stable'}"

    def alpha(self, shown: int) -> float:
        """The newest block's weight after ``shown`` images in all: rising in a fade-in."""
        if not self.fading:
            return 1.0
        return min(max((shown - self.start) / self.length, 0.0), 1.0)


def batch_for(schedule: str | int | dict, resolution: int) -> int:
    """The minibatch at a resolution: a named schedule, a fixed size, or a dict.

    "auto" is the paper's minibatch, which the trainer splits into micro-batches that fit.
    """
    if isinstance(schedule, int):
        return schedule
    if schedule == "auto":
        schedule = "paper"
    table = BATCH_SCHEDULES[schedule] if isinstance(schedule, str) else schedule
    return table[resolution]


def build_phases(resolution: int, fade_kimg: float, stable_kimg: float,
                 batch: str | int | dict = "paper", start_resolution: int = 4,
                 total_kimg: float | None = None) -> list[Phase]:
    """Every phase from ``start_resolution`` (stable only) up to ``resolution``.

    With ``total_kimg`` the last stabilization is lengthened (never shortened) so the run
    shows that many images in all, as the official code's total_kimg does (12,000 kimg
    to 1024^2 with 600 + 600 per resolution).
    """
    if isinstance(batch, str) and batch not in (*BATCH_SCHEDULES, "auto"):
        raise ValueError(f"batch schedule must be one of {(*BATCH_SCHEDULES, 'auto')} or a "
                         f"number, got {batch!r}")
    phases: list[Phase] = []
    shown, res = 0, start_resolution
    while res <= resolution:
        kinds = [False] if res == start_resolution else [True, False]
        for fading in kinds:
            length = round((fade_kimg if fading else stable_kimg) * 1000)
            if length > 0:
                phases.append(Phase(len(phases), res, fading, shown, length,
                                    batch_for(batch, res)))
                shown += length
        res *= 2
    if total_kimg is not None and phases and total_kimg * 1000 > shown:
        last = phases[-1]
        phases[-1] = Phase(last.index, last.resolution, last.fading, last.start,
                           last.length + round(total_kimg * 1000) - shown, last.batch)
    return phases


def phase_at(phases: list[Phase], shown: int) -> Phase | None:
    """The phase in progress after ``shown`` images, or None when training is over."""
    for phase in phases:
        if shown < phase.end:
            return phase
    return None


def describe_plan(phases: list[Phase]) -> str:
    """The phases one per line, "16x16 fade-in: 1.5 kimg at batch 16", then the total."""
    lines = [f"{p.name}: {p.length / 1000:g} kimg at batch {p.batch}" for p in phases]
    return "\n".join([*lines, f"{phases[-1].end / 1000:g} kimg in all" if phases else "empty"])
