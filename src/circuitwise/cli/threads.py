"""How many threads torch uses for a command: fewer when other work keeps the cores busy.

torch's CPU kernels split each operation across all of its threads and wait for the slowest.
When another process holds one of the cores, every small operation waits for the scheduler to
give that thread a turn: on a 2-core machine with one core busy, a bundled-model run took 11 min
with 2 threads and about 1 min with 1. So a command measures how busy the CPUs are for a moment
(``/proc/stat``) and gives torch only the idle cores. Work that splits into independent pieces
(the stacks of patched runs) runs on one worker thread per core instead, each with one torch
thread (:mod:`circuitwise.models.parallel`): no worker waits for another, busy machine or not.
``CIRCUITWISE_THREADS=N`` (or ``OMP_NUM_THREADS``) sets both numbers instead.
"""

from __future__ import annotations

import logging
import os
import time

log = logging.getLogger(__name__)


def _cpu_times() -> tuple[int, int] | None:
    """(idle, total) jiffies of all CPUs, or None where /proc/stat is not available."""
    try:
        with open("/proc/stat") as fh:
            fields = [int(v) for v in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    if len(fields) < 5:
        return None
    return fields[3] + fields[4], sum(fields[:8])  # idle + iowait; user … steal


def idle_cores(sample_s: float = 0.2) -> float | None:
    """How many cores were idle over ``sample_s`` seconds (None where it cannot be measured)."""
    a = _cpu_times()
    time.sleep(sample_s)
    b = _cpu_times()
    if a is None or b is None or b[1] <= a[1]:
        return None
    cores = os.cpu_count() or 1
    return cores * (b[0] - a[0]) / (b[1] - a[1])


def choose_threads() -> int | None:
    """Set torch's thread count and the engines' workers for this command; returns the torch
    threads set (None: torch's default)."""
    import torch

    from circuitwise.models import parallel

    default = torch.get_num_threads()  # torch's choice: the cores it may use
    forced = os.environ.get("CIRCUITWISE_THREADS")
    if forced:
        try:
            n = max(1, int(forced))
        except ValueError:
            log.warning("CIRCUITWISE_THREADS=%r is not a number; using torch's default", forced)
            parallel.WORKERS = default
            return None
        torch.set_num_threads(n)
        parallel.WORKERS = n
        return n
    parallel.WORKERS = default  # torch has read OMP_NUM_THREADS, if set, into its default
    if os.environ.get("OMP_NUM_THREADS"):
        return None  # the user's setting
    if default <= 1:
        return None
    free = idle_cores()
    if free is None or free >= default - 0.5:
        return None
    n = max(1, int(free + 0.5))
    torch.set_num_threads(n)
    log.info("using %d of %d torch threads: the other cores are busy", n, default)
    return n


__all__ = ["choose_threads", "idle_cores"]
