"""Runs a training command and kills it with SIGKILL once it has written a checkpoint (and
then ``seconds`` more), the way a crash would: the GPU call's kill-and-resume check.

Usage: python3 bench/kill_after_checkpoint.py RUN_FOLDER SECONDS -- COMMAND...

It waits for the state it needs, a checkpoint on disk, never for a time alone, so a slow
machine makes it slower, not wrong. Exits 0 after the kill, or with the command's own
status if the command ended first (a finished run leaves nothing to kill).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    """Runs argv's command; see the module docstring."""
    folder, seconds, separator, *command = argv
    if separator != "--" or not command:
        raise SystemExit(__doc__)
    checkpoints = Path(folder) / "checkpoints"
    process = subprocess.Popen(command, start_new_session=True)
    while not any(checkpoints.glob("checkpoint-*")):
        if process.poll() is not None:
            return process.returncode
        time.sleep(0.1)
    deadline = time.monotonic() + float(seconds)
    while time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.1)
    if process.poll() is not None:
        return process.returncode
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    print(f"[killed after its first checkpoint and {float(seconds):g} s more]", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
