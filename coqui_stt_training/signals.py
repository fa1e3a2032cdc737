"""Stopping a training run cleanly on SIGINT (Ctrl-C) or SIGTERM (what a cluster sends before pre-empting
a job): the current step finishes, a checkpoint is saved and the process exits 0. A second signal
stops at once, without saving."""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any

from . import log


class Interrupted(Exception):
    """Raised out of the training loop once a stop signal has been honoured."""

    def __init__(self, signal_name: str, saved: str | None):
        super().__init__(signal_name, saved)
        self.signal_name = signal_name
        self.saved = saved  # the checkpoint that holds the run's work so far (None: nothing trained yet)


class StopSignals:
    """While entered, SIGINT and SIGTERM only set `received`; the loop checks it at its safe points."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, Any] = {}  # what signal.signal returned: a handler, SIG_DFL or None

    def __enter__(self) -> StopSignals:
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, number: int, frame: FrameType | None) -> None:
        name = signal.Signals(number).name
        if self.received:
            log.warn(f"Received {name} again: stopping now, without saving")
            self.__exit__()
            signal.raise_signal(number)
            return
        self.received = name
        log.info(
            f"Received {name}: finishing the current step, then saving a checkpoint and stopping "
            f"(send {name} again to stop at once, without saving)"
        )
