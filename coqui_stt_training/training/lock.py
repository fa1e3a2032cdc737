"""One training run per checkpoint directory.

Two runs on one directory would each resume from the other's files and write the same names. Training
holds `<dir>/train.lock` while it runs; a second run is refused in one line that names the holder. A
lock left behind by a crash or SIGKILL is recognised (its process is gone, or its pid now belongs to a
process started at another time) and taken over with a warning. Readers never take it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from typing import Any

from ..system import log
from ..system.atomic_files import process_alive
from ..system.errors import UserError


class LockError(UserError):
    pass


LOCK_NAME = "train.lock"


@contextlib.contextmanager
def training_lock(directory: str) -> Iterator[None]:
    """Hold `<directory>/train.lock` while training: a second run on the same directory would resume from
    the first one's files and write the same names. The lock records the holder's host, process and its
    start time; a lock whose process is gone (a crash, SIGKILL) is taken over with a warning. Readers
    (evaluate, export, convert) never take it."""
    path = os.path.join(directory, LOCK_NAME)
    os.makedirs(directory, exist_ok=True)
    mine = {"host": socket.gethostname(), "pid": os.getpid(), "process_start": _process_start(os.getpid()),
            "since": time.strftime("%Y-%m-%d %H:%M:%S")}  # fmt: skip
    for _ in range(3):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            holder = _read_lock(path)
            if holder is not None and not _lock_is_stale(holder):
                raise LockError(
                    f"{directory} is in use by another training run (process {holder.get('pid')} on "
                    f"{holder.get('host')}, since {holder.get('since')}): two runs would overwrite each other's "
                    f"checkpoints. Wait for it to end, or if it is gone, delete {path}"
                ) from None
            if holder is not None:
                log.warn(
                    f"Taking over {path}: its process {holder.get('pid')} on {holder.get('host')} is gone "
                    "(it crashed or was killed)"
                )
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)
            else:
                time.sleep(0.2)  # being written by a run starting just now: look again
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(mine, f)
        break
    else:
        raise LockError(f"{path}: cannot take the training lock (another run keeps taking it)")
    try:
        yield
    finally:
        if _read_lock(path) == mine:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)


def _read_lock(path: str) -> dict[str, Any] | None:
    """The holder a lock file names; None while it is still empty or unreadable (being written)."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            holder = json.load(f)
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def _lock_is_stale(holder: dict[str, Any]) -> bool:
    """Only a lock of this machine can be judged: its process is gone, or the pid now belongs to another
    process (started at another time)."""
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    pid = holder["pid"]
    if not process_alive(pid):
        return True
    started = _process_start(pid)
    return started is not None and holder.get("process_start") not in (None, started)


def _process_start(pid: int) -> int | None:
    """A process's start time in clock ticks since boot (Linux); None where /proc does not say."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None
