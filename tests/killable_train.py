"""`python tests/killable_train.py N <train flags>`: training that SIGKILLs itself at the N-th file-system
event of checkpoint writing (N = 0: never). Events are the moments just before and just after each
file write, rename, fsync and removal, plus one in the middle of each file write (the file is left
half-written), so that N picks any instant of the write sequence. SIGKILL cannot be caught: nothing
of ours runs after it, exactly as when the machine loses power or the OOM killer strikes."""

import os
import signal
import sys

from coqui_stt_training import train
from coqui_stt_training.system import atomic_files

kill_at, events = int(sys.argv[1]), [0]


def event() -> None:
    events[0] += 1
    if events[0] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)


def around(function):
    def wrapped(*args, **kwargs):
        event()
        result = function(*args, **kwargs)
        event()
        return result

    return wrapped


def writer(function, path_argument: int):
    """Writes the file, then (as one more event) leaves it half-written and dies, if that is the moment."""

    def wrapped(*args, **kwargs):
        path = args[path_argument]
        event()
        function(*args, **kwargs)
        if events[0] + 1 == kill_at:
            with open(path, "rb+") as f:
                f.truncate(os.path.getsize(path) // 2)
        event()

    return wrapped


atomic_files._write_bytes = writer(atomic_files._write_bytes, 0)
for name in ("replace", "remove", "fsync"):
    setattr(os, name, around(getattr(os, name)))

if __name__ == "__main__":
    train.main(sys.argv[2:])
