"""The memory this process may still use: what the machine has available, or less where its cgroup (a container,
a Slurm job) limits it. /proc/meminfo's MemAvailable alone knows nothing of a container's limit."""

from __future__ import annotations

import os


def available_memory(cgroup: str = "/sys/fs/cgroup", meminfo: str = "/proc/meminfo") -> int | None:
    """Bytes this process may still allocate (None where nothing says: not Linux)."""
    candidates = [m for m in (_mem_available(meminfo), _cgroup_headroom(cgroup)) if m is not None]
    return min(candidates) if candidates else None


def _mem_available(meminfo: str) -> int | None:
    try:
        with open(meminfo) as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_headroom(cgroup: str) -> int | None:
    """The cgroup's limit less its usage (v2 memory.max and memory.current, else v1's limit and usage)."""
    for limit_file, usage_file in (("memory.max", "memory.current"),
                                   ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):  # fmt: skip
        try:
            with open(os.path.join(cgroup, limit_file)) as f:
                limit = f.read().strip()
            with open(os.path.join(cgroup, usage_file)) as f:
                usage = int(f.read().strip())
        except (OSError, ValueError):
            continue
        if limit == "max" or not limit.isdigit() or int(limit) >= 1 << 60:  # v1 says "no limit" with a huge number
            return None
        return max(0, int(limit) - usage)
    return None
