"""Coqui-style log lines: one letter of level, a space, the message ("I Loading best validating ...")."""

import contextlib
import sys

DEBUG, INFO, WARN, ERROR = 0, 1, 2, 3
_level = INFO


def set_level(level: int) -> None:
    global _level
    _level = level


def _emit(level: int, prefix: str, message: str) -> None:
    if level >= _level:
        stream = sys.stderr if level >= WARN else sys.stdout
        with contextlib.suppress(OSError):  # the terminal is gone (SIGHUP): the run must still reach its save
            print(f"{prefix} {message}", file=stream, flush=True)


def debug(message: str) -> None:
    _emit(DEBUG, "D", message)


def info(message: str) -> None:
    _emit(INFO, "I", message)


def warn(message: str) -> None:
    _emit(WARN, "W", message)


def error(message: str) -> None:
    _emit(ERROR, "E", message)


_warned: set[str] = set()


def warn_once(message: str) -> None:
    """A warning about a file or setting that several steps meet (an alphabet read for training and again
    for testing): said once per process."""
    if message not in _warned:
        _warned.add(message)
        warn(message)
