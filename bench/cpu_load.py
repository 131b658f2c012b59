"""How busy the machine was during a timed span, from /proc/stat: the benchmarks' noise indicator.

A run is "clean" when processes other than the measured one used less than ~0.1 core: on 2 cores,
one busy neighbour oversubscribes torch's OpenMP threads and slows a run 3-20x (../shared/peers)."""

from __future__ import annotations

import os
import resource
import time


def snapshot(children: bool = False) -> tuple[float, float, float]:
    """(machine busy CPU-seconds, CPU-seconds of this process -- or of its finished children --,
    wall time), taken as the peer harnesses take them."""
    with open("/proc/stat") as f:
        vals = [int(x) for x in f.readline().split()[1:]]
    busy = (sum(vals[:8]) - vals[3] - vals[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait
    ru = resource.getrusage(resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF)
    return busy, ru.ru_utime + ru.ru_stime, time.perf_counter()


def other_cores(a, b) -> float | None:
    """Cores used by other processes during [a, b] (0: the machine was otherwise idle)."""
    wall = b[2] - a[2]
    return round(max(0.0, (b[0] - a[0]) - (b[1] - a[1])) / wall, 3) if wall > 0 else None


def own_cores(a, b) -> float | None:
    """Cores the measured process(es) used during [a, b]."""
    wall = b[2] - a[2]
    return round((b[1] - a[1]) / wall, 3) if wall > 0 else None
