"""Writing files so that a crash never leaves a half-written one behind, into folders
checked to be writable before work starts."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

PAUSE_BEFORE_RENAME = "FASTPGAN_TEST_PAUSE_BEFORE_RENAME"
"""Test hook: when this environment variable names a folder, a write whose target's name
is listed in the file ``pause`` there stops after writing and fsyncing its temporary
file, writes ``paused`` (the target's name) there, and waits before renaming, so a test
can kill the process inside the write. Unset, it costs one environment lookup a write."""


class DiskFullError(OSError):
    """No space was left for a file; the message names it, what it needed and what is
    free, and says that nothing already there was touched."""

    def __str__(self) -> str:
        return str(self.strerror)


def atomic_write(target: str | os.PathLike, write: Callable[[Path], None],
                 size: int | None = None) -> Path:
    """Calls write(tmp) on a temporary file beside target, fsyncs it, renames it over
    target and fsyncs the folder, so the rename itself survives a crash.

    ``size``, the bytes the file will take about, only words the error when the disk is
    full: a :class:`DiskFullError`, whatever the writer raised (an OSError, or a
    library's own error saying "No space left on device").
    """
    target = Path(target)
    remove_stale_temporaries(target)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.{os.getpid()}.",
                               suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        if os.environ.get(PAUSE_BEFORE_RENAME):
            _pause_if_asked(Path(os.environ[PAUSE_BEFORE_RENAME]), target.name)
        os.replace(tmp, target)
    except BaseException as exc:
        written = Path(tmp).stat().st_size if Path(tmp).exists() else 0
        Path(tmp).unlink(missing_ok=True)
        if is_disk_full(exc):
            raise disk_full_error(target, written, size) from exc
        raise
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return target


def temporary_folder(target: Path) -> Path:
    """A new hidden folder beside ``target`` to build it in (then renamed over it), named
    for this process so that :func:`remove_stale_temporaries` knows when it is stale."""
    remove_stale_temporaries(target)
    return Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.{os.getpid()}.",
                                 suffix=".tmp"))


def remove_stale_temporaries(target: Path) -> list[Path]:
    """Removes the temporary files and folders of ``target`` (``.NAME.PID.*.tmp``) whose
    writing process is gone (a killed write, a build cut short); returns them. Another
    living process's are left alone."""
    removed = []
    for stale in target.parent.glob(f".{target.name}.*.tmp"):
        pid = stale.name[len(target.name) + 2:].split(".", 1)[0]
        if pid.isdigit() and _alive(int(pid)):
            continue
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)
        removed.append(stale)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's: alive
        return True
    return True


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the disk is full (an OSError's ENOSPC, or a library's error
    quoting the OS's "No space left on device")."""
    text = str(exc)
    return ((isinstance(exc, OSError) and exc.errno == errno.ENOSPC)
            or "No space left on device" in text or "os error 28" in text)


def disk_full_error(target: Path, written: int, size: int | None) -> DiskFullError:
    """The :class:`DiskFullError` for ``target``, after ``written`` bytes of about ``size``."""
    free = shutil.disk_usage(target.parent).free
    needs = f"it needs about {size / 1e6:.1f} MB, " if size else ""
    return DiskFullError(errno.ENOSPC, f"the disk holding {target.parent} is full: writing "
                         f"{target.name} stopped after {written / 1e6:.1f} MB; {needs}"
                         f"{free / 1e6:.1f} MB are free. Nothing was replaced: the files "
                         "already there are intact")


def _pause_if_asked(hook: Path, name: str) -> None:
    if name in (hook / "pause").read_text().split():
        (hook / "paused").write_text(name)
        time.sleep(600)  # killed meanwhile; a test that forgot is not stuck for ever


def writable_folder(path: str | os.PathLike, what: str) -> Path:
    """``path`` as an existing folder (created with its parents) that a file can be
    written in; ValueError naming ``what`` (e.g. "--out"), the path and the reason
    otherwise, so a command fails before it starts work rather than after."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except FileExistsError as exc:
        raise ValueError(f"{what} {path}: a file of that name exists, where a folder is "
                         "needed; choose another path") from exc
    except NotADirectoryError as exc:
        raise ValueError(f"{what} {path}: part of the path is a file, not a folder; choose "
                         "another path") from exc
    except OSError as exc:
        raise ValueError(f"{what} {path}: cannot write there ({exc.strerror or exc}); "
                         "choose a folder you can write to") from exc
    return path
