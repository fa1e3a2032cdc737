"""Writing files so that a crash at any instant leaves the old file or the new one, never half of one.

Every checkpoint, state file, export and .tlog goes through write_atomically: the data goes to
`<path>.tmp-<pid>` beside the target, is flushed to disk, and replaces the target with one rename
(then the directory entry is flushed too). A process killed mid-write leaves only its temporary
file, which remove_stale_temporaries clears once that process is gone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterable

from .errors import ConfigError

TMP_MARK = ".tmp-"  # temporary files are <final name>.tmp-<pid>


def write_atomically(path: str, write: Callable[[str], object], durable: bool = True) -> None:
    """`write(tmp_path)` fills a temporary file beside `path`, which replaces `path` once complete.
    `durable=False` skips the fsyncs, for files that can be recomputed (the feature cache)."""
    tmp = f"{path}{TMP_MARK}{os.getpid()}"
    try:
        write(tmp)
        if durable:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if durable:
            _fsync_directory(os.path.dirname(os.path.abspath(path)))  # makes the rename itself durable
    except OSError as e:  # named by the file the user asked for, not our temporary one
        raise OSError(e.errno, e.strerror or str(e), path) from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def require_writable(directory: str, output: str) -> None:
    """Fail now, not at the end of a run, unless a file can be created in `directory` (made if missing; a
    probe is written and removed). The ConfigError reads `output` (what cannot be written, as the user
    named it: "--summary_dir runs/s: cannot write there"), then the system's reason."""
    probe = os.path.join(directory, f".write-test{TMP_MARK}{os.getpid()}")
    try:
        os.makedirs(directory, exist_ok=True)
        with open(probe, "wb") as f:
            f.write(b"can write\n")
        os.remove(probe)
    except OSError as e:
        raise ConfigError(f"{output} ({e.strerror or e})") from None


def write_file_atomically(path: str, data: bytes | str) -> None:
    """A small file written whole (text as UTF-8), replacing `path` only once complete."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    write_atomically(path, lambda tmp: _write_bytes(tmp, [payload]))


def write_text_once(path: str, text: str) -> None:
    """flags.txt and alphabet.txt: written only if absent, as Coqui does; a user's file is never overwritten."""
    if not os.path.exists(path):
        write_file_atomically(path, text)


def _write_bytes(path: str, chunks: Iterable[bytes]) -> None:
    with open(path, "wb") as f:
        f.writelines(chunks)


def _fsync_directory(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # not every platform lets a directory be opened; the rename is atomic regardless
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_temporaries(directory: str) -> None:
    """Temporary files (and directories: a partial export) of processes that were killed mid-write (SIGKILL
    leaves them behind)."""
    for name in os.listdir(directory):
        _, mark, pid = name.rpartition(TMP_MARK)
        if mark and pid.isdigit() and int(pid) != os.getpid() and not process_alive(int(pid)):
            path = os.path.join(directory, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0 only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    return True


def read_range(path: str, offset: int, size: int) -> bytearray:
    """Bytes offset..offset+size of a file (fewer if it ends first), read straight into a bytearray:
    one copy, and numpy arrays over it are writable, so torch.from_numpy needs no other."""
    data = bytearray(size)
    with open(path, "rb") as f:
        f.seek(offset)
        got = f.readinto(data)
    del data[got:]
    return data


def copy_atomically(source: str, target: str) -> None:
    """Copy a file if it exists (a run state, alphabet.txt, flags.txt, a scorer), renamed into place once complete."""
    if os.path.isfile(source):
        write_atomically(target, lambda tmp: shutil.copyfile(source, tmp))
