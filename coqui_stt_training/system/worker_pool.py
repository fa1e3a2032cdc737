"""Work on many files in worker processes, results in input order, with a progress bar."""

from __future__ import annotations

import math
import multiprocessing
import os
import signal
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

In = TypeVar("In")
Out = TypeVar("Out")


def cpu_count(cgroup: str = "/sys/fs/cgroup") -> int:
    """The CPUs this process may use: those its affinity allows (taskset, a cpuset), fewer when its cgroup's
    CPU quota allows fewer (a container given 2 CPUs on a 64-core node). os.cpu_count() knows neither."""
    allowed = len(os.sched_getaffinity(0))
    quota = _cgroup_quota(cgroup)
    return max(1, min(allowed, math.ceil(quota))) if quota else allowed


def _cgroup_quota(cgroup: str) -> float | None:
    """CPUs' worth of time per period the cgroup grants (cgroup v2 cpu.max, else v1 cfs_quota/period)."""
    for quota_file, period_file in (("cpu.max", None), ("cpu/cpu.cfs_quota_us", "cpu/cpu.cfs_period_us")):
        try:
            with open(os.path.join(cgroup, quota_file)) as f:
                fields = f.read().split()
            if period_file:
                with open(os.path.join(cgroup, period_file)) as f:
                    fields.append(f.read().strip())
        except OSError:
            continue
        if len(fields) == 2 and fields[0] not in ("max", "-1"):
            try:
                return int(fields[0]) / int(fields[1])
            except (ValueError, ZeroDivisionError):
                return None
        return None
    return None


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
