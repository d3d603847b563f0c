"""The run lock: one process trains into a run directory at a time.

A run holds an exclusive `flock` on `DIR/.lock` for its whole life (rank 0 under torchrun). The OS drops the lock
when the process ends, however it ends, so a crash never leaves a stale lock; the file stays, recording the last
holder (PID, host, start time, command line) as JSON. A second `train` into the directory fails at once, naming
the holder. Readers (`eval`, `sample`, `generate`, `pixelwave.load`) never take the lock: they read only
checkpoints whose manifest verifies, which a writer never changes in place.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import socket
import sys
from datetime import datetime
from pathlib import Path

from pixelwave.errors import UserError

LOCK = ".lock"


class RunInUse(UserError):
    """Another process is training into this run directory."""


class RunLock:
    """An exclusive lock on a run directory, held until `release` or the end of the process."""

    def __init__(self, fd: int):
        self._fd = fd

    def record(self) -> None:
        """Write who holds the lock into the lock file (in place: a new file would be a new, unlocked lock)."""
        holder = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": datetime.now().astimezone().isoformat(timespec="seconds"),
                  "command": shlex.join(sys.argv)}
        data = (json.dumps(holder) + "\n").encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)
        os.fsync(self._fd)

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = -1


def acquire(run_dir: str | os.PathLike, create: bool = True) -> RunLock | None:
    """Take `run_dir`'s lock without waiting. create=False: only if the lock file exists (None if not), so a
    folder is not written to before it is known to be a run. RunInUse (one line naming the holder and what to
    do) if another process holds it; nothing in the folder is changed then."""
    run_dir = Path(run_dir)
    path = run_dir / LOCK
    try:
        fd = os.open(path, os.O_RDWR | (os.O_CREAT if create else 0), 0o644)
    except (FileNotFoundError, NotADirectoryError):  # no such directory: making it will say why not
        if create:
            raise
        return None
    except OSError as e:
        raise UserError(f"cannot open the run lock {path}: {e.strerror or e}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RunInUse(f"{run_dir} is in use: {holder(path)} is training into it; wait for it to end or stop "
                       f"it, or train into another --out") from None
    except OSError as e:  # a filesystem without flock
        os.close(fd)
        raise UserError(f"cannot lock {path}: {e.strerror or e}") from None
    return RunLock(fd)


def holder(path: Path) -> str:
    """The process recorded in a lock file, in words."""
    try:
        h = json.loads(path.read_bytes())
        what = f"PID {h['pid']} on {h['host']} (started {h['started']}: {h['command']})"
    except (OSError, ValueError, TypeError, KeyError):  # it took the lock and has not written itself in yet
        return "another process"
    return " ".join(what.split())  # one line whatever the command held
