"""Stopping a run cleanly when a scheduler or a person asks.

Cluster schedulers (SLURM, Kubernetes) stop a job with SIGTERM and a grace period, and a
person with Ctrl-C (SIGINT). :class:`StopSignals` catches the first of either and says at
once that it did; the run finishes the step it is in, writes a checkpoint atomically, says
so in one line and ends with :data:`EXIT_STOPPED`. A second signal ends the process at
once, as the signal's default would (the checkpoints on disk are whole: every write is
atomic).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from types import FrameType, TracebackType

EXIT_STOPPED = 3
"""fastpgan-train's exit status after a signal stopped it with its checkpoint written (2 is
bad input, 1 a failure, 0 done)."""

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class TrainingStoppedError(RuntimeError):
    """A signal stopped the run; the message names the checkpoint it wrote."""


class StopSignals:
    """While entered (in the main thread), SIGTERM and SIGINT set :attr:`signum` instead of
    ending the process, and ``say`` is given a line saying so; a second one ends it at
    once. Elsewhere it catches nothing."""

    def __init__(self, say: Callable[[str], None] | None = None) -> None:
        self.signum: int | None = None
        self._say = say
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._caught) for s in SIGNALS}
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous = {}

    @property
    def name(self) -> str:
        """The caught signal's name, e.g. "SIGTERM"."""
        return signal.Signals(self.signum).name if self.signum is not None else ""

    def _caught(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:  # the second: end now, as the signal's default does
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.signum = signum
        if self._say is not None:
            self._say(f"{self.name}: finishing this step and writing a checkpoint (a second "
                      "signal stops at once)")
