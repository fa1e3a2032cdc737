"""Work on many files in worker processes, results in input order, with a progress bar."""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

In = TypeVar("In")
Out = TypeVar("Out")


def cpu_count() -> int:
    """The CPUs this process may run on (its affinity: what a cgroup or taskset leaves it)."""
    return len(os.sched_getaffinity(0))


def ordered_map(work: Callable[[In], Out], items: list[In], workers: int, description: str) -> Iterator[Out]:
    """`work(item)` for every item, in order; in `workers` processes (0: every CPU) when there is enough to do.
    `work` must be a module-level function (the workers are spawned: the caller may hold threads)."""
    workers = workers or cpu_count()
    with tqdm(total=len(items), desc=description, unit="file", disable=not items) as bar:
        if workers <= 1 or len(items) < 2 * workers:
            results: Iterable[Out] = map(work, items)
            for result in results:
                bar.update()
                yield result
            return
        with multiprocessing.get_context("spawn").Pool(workers, initializer=_ignore_interrupts) as pool:
            for result in pool.imap(work, items, chunksize=8):
                bar.update()
                yield result


def _ignore_interrupts() -> None:
    """Ctrl-C and a closed terminal reach the whole process group: the main process alone stops, and ends
    its workers (Pool.terminate sends SIGTERM, which keeps its default)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
