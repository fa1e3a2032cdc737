"""Stopping cleanly on SIGINT (Ctrl-C), SIGTERM (what a cluster sends before pre-empting a job) and SIGHUP
(a closed terminal or ssh session), in every phase of every tool.

Inside the training loop (StopSignals) a signal only sets a flag: the current step finishes, a checkpoint
is saved and the process exits 0, saying how to resume; a second signal stops at once, without saving.
Everywhere else (the data check, the dummy run, the test phase, evaluation, export, transcription) the
handler that the command line installs raises Stopped, which each phase annotates with what was kept, and
which the command line shows as one line with the shell's status for the signal (130 for SIGINT, 143 for
SIGTERM, 129 for SIGHUP): the work asked for was not done. Stopped is a BaseException, as KeyboardInterrupt
is, so that no `except Exception` on its way (a decoder's "unreadable file") can take it for an error of its
own. Once a stop is under way, further signals are reported and otherwise ignored, so that the clean stop
finishes.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

from . import log

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(Exception):
    """Raised out of the training loop once a stop signal has been honoured."""

    def __init__(self, signal_name: str, saved: str | None):
        super().__init__(signal_name, saved)
        self.signal_name = signal_name
        self.saved = saved  # the checkpoint that holds the run's work so far (None: nothing trained yet)


class Stopped(BaseException):
    """A stop signal outside the training loop. `during` and `kept` are filled in by the phase it
    interrupted (see phase()); `at_once`: a second signal, which stops without saving."""

    def __init__(self, signal_name: str, at_once: bool = False):
        super().__init__(signal_name)
        self.signal_name, self.at_once = signal_name, at_once
        self.exit_status = 128 + signal.Signals[signal_name].value  # the shell's convention
        self.during = ""
        self.kept = ""

    def message(self) -> str:
        head = f"Stopped on {'a second ' if self.at_once else ''}{self.signal_name}"
        return head + (f" {self.during}" if self.during else "") + (f"; {self.kept}" if self.kept else "")

    def report(self) -> None:
        """The one line the user sees: an error for a second signal (work was dropped), else information."""
        (log.error if self.at_once else log.info)(self.message())


_stopping = [False]  # a stop is under way: further signals must not interrupt its cleanup


def stopping() -> bool:
    """Whether a stop signal has been honoured since stop_on_signals() was entered."""
    return _stopping[0]


def _raise_stopped(number: int, frame: FrameType | None) -> None:
    name = signal.Signals(number).name
    if _stopping[0]:
        log.warn(f"Received {name} again: already stopping")
        return
    _stopping[0] = True
    raise Stopped(name)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """The command line's frame: SIGINT, SIGTERM and SIGHUP raise Stopped (instead of a KeyboardInterrupt
    traceback, or death without a word)."""
    previous = {sig: signal.signal(sig, _raise_stopped) for sig in SIGNALS}
    _stopping[0] = False
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def ignore_stop_signals(*_: object) -> None:
    """A worker process's initialiser: Ctrl-C reaches the whole process group, and the main process alone
    decides how to stop, and closes its workers itself."""
    for stop in SIGNALS:
        signal.signal(stop, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)  # blocked since the fork (deferred); pending ones drop


@contextlib.contextmanager
def deferred(held: tuple[signal.Signals, ...] = SIGNALS, block: bool = True) -> Iterator[None]:
    """Hold signals (the stop signals by default) over a few lines that must not be cut in the middle, then deliver
    them to the handlers that were in place. Starting a DataLoader's workers is such a place: interrupted there,
    torch leaves a half-built iterator whose clean-up fails with a traceback of its own. A training step is another,
    for SIGCHLD (`block` False, see child_signals_held)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # handlers run on the main thread only; there is nothing to hold here
        return
    received: list[int] = []
    previous = {sig: signal.signal(sig, lambda number, frame: received.append(number)) for sig in held}
    # Blocked as well: a worker forked here inherits the mask, so a signal sent to the whole process group
    # (torchrun, Slurm, Ctrl-C) cannot kill it between its start and its initialiser, which ignores them.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, held) if block else None
    try:
        yield
    finally:
        if mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # what arrived meanwhile goes to `received` now
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for number in received:
            signal.raise_signal(number)


def child_signals_held() -> contextlib.AbstractContextManager[None]:
    """SIGCHLD's handler held off over a few lines, such as a training step: torch's handler raises when a data
    worker died, and raised in the middle of a step it would leave the dropout generator (or the weights) between
    two steps, so that the checkpoint saved then could not resume exactly. The handler is swapped, the signal not
    blocked: the kernel gives a process's signal to any thread that does not block it, and Python then runs the
    handler in the main thread wherever it is. What arrived meanwhile goes to the handler afterwards."""
    return deferred((signal.SIGCHLD,), block=False)


@contextlib.contextmanager
def phase(during: str, kept: str) -> Iterator[None]:
    """Say what a Stopped interrupted ("while checking the data") and what it left ("nothing was written")."""
    try:
        yield
    except Stopped as stop:
        stop.during, stop.kept = stop.during or during, stop.kept or kept
        raise


class StopSignals:
    """While entered, SIGINT, SIGTERM and SIGHUP only set `received`; the loop checks it at its safe points."""

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, Any] = {}  # what signal.signal returned: a handler, SIG_DFL or None

    def __enter__(self) -> StopSignals:
        for sig in SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
        if self.received:
            _stopping[0] = True  # the loop honours it now: later signals must not cut the save short

    def _handle(self, number: int, frame: FrameType | None) -> None:
        name = signal.Signals(number).name
        if self.received:
            log.warn(f"Received {name} again: stopping now, without saving")
            self.__exit__()
            stop = Stopped(name, at_once=True)
            stop.during, stop.kept = "during training", "stopped at once, without saving; earlier checkpoints are kept"
            raise stop
        self.received = name
        log.info(
            f"Received {name}: finishing the current step, then saving a checkpoint and stopping "
            f"(send {name} again to stop at once, without saving)"
        )
