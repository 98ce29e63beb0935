"""How many CPU cores this process may use (standard library only)."""

import math
import os


def usable_cores():
    """CPU cores this process may use: its affinity mask (where the OS has one, e.g. ``taskset``)
    or the CPU count, lowered to a container's CPU quota (cgroup v2 ``cpu.max``) when set."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)
